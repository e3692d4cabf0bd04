"""What enhancing adds to a photo's codecs: CPU seconds per photo of decode -> enhance -> encode
against decode -> encode alone (Pillow, JPEG quality 95), on one thread, in the same run.

    .venv/bin/python benchmarks/codec_cost.py [--model bundled] [--photos 4] [--width 4000 --height 3000]
        [--kelvin 3000]

The photos are synthetic phone JPEGs (skin texture upscaled, quality 92); ``--kelvin K`` re-lights
them first by a black-body light of K kelvin (degrade.relight), so that a model that leaves good
photos alone has a cast to correct (it then pays for its tables, not only its thumbnail). The two pipelines
alternate photo by photo, so the shared machine's noise hits both alike; the figure is the ratio
of their median CPU seconds (issue 20's goal: at most 1.5 on 12 MP JPEGs).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import write_result  # noqa: E402


def _photos(count: int, width: int, height: int, kelvin: float | None = None) -> list[bytes]:
    import numpy as np
    from PIL import Image

    from skinray import synth

    out = []
    for i in range(count):
        small = synth.skin_image(seed=3, index=i, size=512)
        if kelvin:
            from skinray import degrade

            lit = degrade.relight(small.astype(np.float32) / 255, kelvin)
            small = (np.clip(lit, 0, 1) * 255 + 0.5).astype(np.uint8)
        big = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        noisy = np.clip(np.asarray(big, np.int16) + np.random.default_rng(i).integers(-3, 4, (height, width, 3)),
                        0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--kelvin", type=float, default=None, help="re-light the photos by this black-body light first")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    from skinray import images
    from skinray.predict import Enhancer

    torch.set_num_threads(1)
    enhancer = Enhancer.from_checkpoint(args.model, device="cpu", threads=1)
    photos = _photos(args.photos, args.width, args.height, args.kelvin)
    enhancer.enhance(images.decode(photos[0]))  # warm-up: first-call allocations
    codecs, full = [], []
    for data in photos:
        started = time.process_time()
        images.encode(images.decode(data), "jpeg", 95)
        codecs.append(time.process_time() - started)
        started = time.process_time()
        images.encode(enhancer.enhance(images.decode(data)), "jpeg", 95)
        full.append(time.process_time() - started)
    first = images.decode(photos[0])
    changed = not np.array_equal(enhancer.enhance(first), first)
    result = {"model_id": enhancer.model_id, "megapixels": args.width * args.height / 1e6,
              "first_photo_changed": changed,
              "decode_encode_cpu_s": statistics.median(codecs), "with_enhance_cpu_s": statistics.median(full)}
    result["ratio"] = result["with_enhance_cpu_s"] / result["decode_encode_cpu_s"]
    print(f"{result['megapixels']:.0f} MP JPEG, one thread, median of {len(photos)}: decode+encode "
          f"{result['decode_encode_cpu_s']:.3f} CPU-s, decode+enhance+encode {result['with_enhance_cpu_s']:.3f} "
          f"CPU-s: ratio {result['ratio']:.2f} ({enhancer.model_id}; the model "
          f"{'changed' if changed else 'left alone'} the first photo)")
    print(f"result: {write_result('codec_cost', result, params=vars(args), also=args.json)}")


if __name__ == "__main__":
    main()
