"""Archive enhancement job entrypoint for `ray job submit`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/enhance.py --model s3://bucket/runs/poster s3://bucket/photos s3://bucket/enhanced

Takes exactly the arguments of `skinray enhance`, plus the endpoint's path policy when the
endpoint submits the job (``POST /v1/batch``): ``--batch-roots URI`` (repeatable) confines input
and output to those roots and ``--batch-writable-roots URI`` names where ``--overwrite`` may
replace outputs, checked again here, where the job runs (:mod:`skinray.paths`). The job writes
its progress to ``OUTPUT/_skinray/progress.json`` as it goes, and its report there at the end.
"""

import functools
import sys

from skinray.cli import main


def split_roots(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(the `skinray enhance` arguments, --batch-roots, --batch-writable-roots)."""
    rest, roots, writable = [], [], []
    args = iter(argv)
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag in ("--batch-roots", "--batch-writable-roots"):
            value = value if eq else next(args, "")
            (roots if flag == "--batch-roots" else writable).append(value)
        else:
            rest.append(arg)
    return rest, roots, writable


if __name__ == "__main__":
    argv, roots, writable = split_roots(sys.argv[1:])
    if roots or writable:
        from skinray import archive, paths

        policy = paths.Roots(tuple(roots), tuple(writable))
        paths.check_roots_config(policy)
        archive.run = functools.partial(archive.run, roots=policy)  # every path checked against them
    sys.exit(main(["enhance", *argv]))
