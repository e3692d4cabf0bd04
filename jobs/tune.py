"""Hyperparameter search job entrypoint for `ray job submit`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/tune.py --data s3://bucket/photos --storage s3://bucket/runs --trials 16 --gpu

Takes exactly the arguments of `skinray tune`.
"""

import sys

from skinray.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
