"""Training job entrypoint for `ray job submit`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py --config jobs/configs/smoke.yaml [--set train.epochs=3]

Takes exactly the flags of `skinray train` and the same config files.
"""

import sys

from skinray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
