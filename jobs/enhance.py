"""Archive enhancement job entrypoint for `ray job submit`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/enhance.py --model s3://bucket/runs/poster s3://bucket/photos s3://bucket/enhanced

Takes exactly the arguments of `skinray enhance`.
"""

import sys

from skinray.cli import main

if __name__ == "__main__":
    sys.exit(main(["enhance", *sys.argv[1:]]))
