"""Evaluation job entrypoint for `ray job submit`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/evaluate.py --model s3://bucket/runs/demo --data s3://bucket/photos --out /shared/eval

Takes exactly the arguments of `skinray evaluate` (the report is written where --out points,
on the node that runs the job's driver).
"""

import sys

from skinray.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
