"""The archive job on one GPU, and what 1 million 12 MP photos would cost (issue 14).

    python benchmarks/gpu_archive.py [--photos 12] [--width 4000 --height 3000] [--json PATH] [--quick]

Runs without Ray (the device machines have no Ray): the in-process archive job
(``archive.run(..., execution="local")``, the same stages as a Ray GPU job's actor and tasks) on
``--photos`` synthetic phone JPEGs with ``gpu=True``, then each stage of one photo on its own:
read + decode and encode (CPU, one thread each, as in a Ray CPU task) and the model on the GPU
(the Enhancer at the job's precision, 512 px tiles and 2048 px tiles). From those it projects the
images/s of one GPU worker of ``cluster/aws.yaml`` (g5.2xlarge: 1 GPU, 8 vCPUs) as the slower of
its GPU (this GPU's model time, scaled by ``--gpu-scale`` for a slower card) and its CPUs
(decode + encode per photo, spread over the vCPUs), and the hours and instance-hours for
1,000,000 photos on ``--workers`` such nodes. ``--quick``: small photos on the CPU, to test it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def timed(fn, runs: int) -> float:
    """Median seconds of ``runs`` calls (after one warm-up)."""
    fn()
    found = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        found.append(time.perf_counter() - t)
    return statistics.median(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--vcpus", type=int, default=8, help="vCPUs of the projected GPU worker (g5.2xlarge: 8)")
    parser.add_argument("--workers", type=int, default=8, help="GPU workers (cluster/aws.yaml max_workers: 8)")
    parser.add_argument("--gpu-scale", type=float, default=1.0,
                        help="the projected GPU's model time / this GPU's (e.g. 4 for a card 4x slower)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="small photos, CPU allowed (a test of the script)")
    args = parser.parse_args()
    if args.quick:
        args.photos, args.width, args.height = 2, 640, 480

    import numpy as np
    import torch
    from one_photo import make_photo

    from skinray import archive, checkpoint, images
    from skinray.config import EnhanceConfig
    from skinray.predict import Enhancer

    gpu = torch.cuda.is_available()
    if not gpu and not args.quick:
        sys.exit("no CUDA device: run with --quick to test the script on a CPU")
    device = "cuda" if gpu else "cpu"
    name = torch.cuda.get_device_name() if gpu else "CPU"
    mp = args.width * args.height / 1e6
    figures: dict[str, object] = {"device": name, "torch": torch.__version__, "photo_mp": mp, "photos": args.photos}

    def say(key: str, value, text: str) -> None:
        figures[key] = value
        print(text, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))

    print(f"device: {name}; {args.photos} photos of {args.width}x{args.height} ({mp:.1f} MP)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        make_photo(src / "p0000.jpg", args.width, args.height)
        for i in range(1, args.photos):
            (src / f"p{i:04d}.jpg").write_bytes((src / "p0000.jpg").read_bytes())
        cfg = EnhanceConfig(model=args.model, input=str(src), output=str(out), format="jpeg", gpu=gpu)
        started = time.perf_counter()
        summary = archive.run(cfg, execution="local")
        wall = time.perf_counter() - started
        say("job_s", wall, f"in-process archive job (model load included): {wall:.1f} s, {summary.line()}")
        say("job_images_per_s", args.photos / wall, f"  {args.photos / wall:.2f} images/s, "
            f"{args.photos * mp / wall:.1f} MP/s on one GPU, one CPU thread decoding and encoding")

        data = (src / "p0000.jpg").read_bytes()
        decoded = images.decode_photo(data)
        torch.set_num_threads(1)
        seconds = timed(lambda: images.decode_photo(data), 3)
        say("decode_s", seconds, f"read + decode, one CPU thread: {seconds:.3f} s")
        rgb = decoded.rgb
        jpeg_s, png_s = timed(lambda: archive.encode_for("x.jpg", rgb, 95), 3), timed(lambda: archive.encode_for(
            "x.png", rgb, 95), 1)
        figures["encode_png_s"] = png_s
        say("encode_jpeg_s", jpeg_s, f"encode, one CPU thread: JPEG q95 {jpeg_s:.3f} s, PNG {png_s:.3f} s")
        loaded = checkpoint.load(args.model)
        for tile in (512, 2048):
            enhancer = Enhancer(loaded, device, tile=tile)

            def model_pass() -> None:
                enhancer.enhance(rgb)
                if gpu:
                    torch.cuda.synchronize()

            seconds = timed(model_pass, 3)
            say(f"model_s_tile{tile}", seconds, f"model ({enhancer.precision} on {device}), tiles of {tile}: "
                f"{seconds:.3f} s, {mp / seconds:.1f} MP/s")
        diff = np.abs(Enhancer(loaded, device, tile=512).enhance(rgb).astype(np.int16)
                      - Enhancer(loaded, device, tile=2048).enhance(rgb))
        say("tiles_max_diff", int(diff.max()), f"512 vs 2048 px tiles: largest difference {int(diff.max())} grey "
            f"levels, {float((diff > 0).mean()):.2e} of values differ")

    model_s = min(figures["model_s_tile512"], figures["model_s_tile2048"]) * args.gpu_scale
    cpu_s = figures["decode_s"] + figures["encode_jpeg_s"]
    per_node = min(1 / model_s, args.vcpus / cpu_s)
    bound = "GPU" if 1 / model_s < args.vcpus / cpu_s else "CPU (decode + encode)"
    hours = 1e6 / (per_node * args.workers) / 3600
    say("projection", {"node_images_per_s": per_node, "bound_by": bound, "hours": hours,
                       "instance_hours": hours * args.workers, "vcpus": args.vcpus, "workers": args.workers,
                       "gpu_scale": args.gpu_scale},
        f"projection, 1,000,000 photos of {mp:.0f} MP to JPEG on {args.workers} nodes of 1 GPU + {args.vcpus} vCPUs "
        f"(GPU time x{args.gpu_scale:g}): {per_node:.2f} images/s per node, bound by the {bound}; "
        f"{hours:.1f} h wall, {hours * args.workers:.0f} instance-hours")


if __name__ == "__main__":
    main()
