"""The endpoint's archive jobs as Ray Jobs: the entrypoint it submits, and the roots it carries."""

import importlib.util
import shlex
from pathlib import Path

from skinray import paths
from skinray.config import EnhanceConfig

ROOT = Path(__file__).resolve().parent.parent


def _enhance_job():
    spec = importlib.util.spec_from_file_location("enhance_job", ROOT / "jobs" / "enhance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entrypoint_is_jobs_enhance_with_the_options_and_the_roots():
    from skinray.archive_jobs import job_entrypoint

    cfg = EnhanceConfig(model="/m/best", input="/data/in put", output="s3://b/out", format="png", overwrite=True,
                        workers=2)
    command = shlex.split(job_entrypoint(cfg, paths.Roots(("/data", "s3://b/"), ("s3://b/",)), "http://s3:9000"))
    assert command[1] == str(ROOT / "jobs" / "enhance.py")
    args, roots, writable = _enhance_job().split_roots(command[2:])
    assert roots == ["/data", "s3://b/"] and writable == ["s3://b/"]
    assert "/data/in put" in args and "s3://b/out" in args and "--batch-roots" not in args
    for option in ("enhance.format=png", "enhance.overwrite=True", "enhance.workers=2"):
        assert option in args
    assert args[args.index("--s3-endpoint") + 1] == "http://s3:9000"


def test_split_roots_takes_both_spellings():
    rest, roots, writable = _enhance_job().split_roots(
        ["--batch-roots=/a", "in", "--batch-writable-roots", "/a/w", "out", "--overwrite"])
    assert rest == ["in", "out", "--overwrite"] and roots == ["/a"] and writable == ["/a/w"]
