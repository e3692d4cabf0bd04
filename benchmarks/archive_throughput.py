"""Archive enhancement throughput and memory, against a plain loop and against the machine's
compute limit, in one run, for each model named.

    .venv/bin/python benchmarks/archive_throughput.py [--models bundled poster] [--whole 1500]
        [--count 2000] [--memory-small 200] [--size 256] [--repeats 1]
        [--json outputs/benchmarks/archive_throughput.json]   # figures also go to benchmarks/results/

For each model (``bundled``: the shipped lut model; ``poster``: an untrained poster network, the
same compute as a trained one):

1. Whole processes (``--whole`` synthetic 256 px JPEGs -> PNG, start-up included), run in turn
   ``--repeats`` times: (A) ``skinray enhance IN OUT --format png`` as a user types it (auto:
   Ray for this many files); (B1) a plain single-process loop: PIL decode -> the model (torch's
   default threads) -> PNG at Pillow's default settings; (B2) the same loop writing PNG the way
   skinray does (compress level 1, sRGB profile). Prints wall seconds and A/B1, A/B2 (> 1: the
   job is faster).
2. The Ray job with Ray started (``--count`` images, JPEG -> PNG): (a) images/s, against (c) the
   compute limit: cores / the per-image CPU seconds of decode + model + encode, each measured in
   isolation on one thread (the thread count of a 1-CPU actor) -> a/c; and against the job's
   whole CPU stage (read, decode, model, encode, write) run on one batch in this process; Ray
   Data's per-operator stats of that run; peak resident memory of the driver and all Ray processes (from /proc every
   0.2 s), against a run of ``--memory-small`` images.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import write_result  # noqa: E402


def make_inputs(folder: Path, count: int, size: int) -> None:
    from skinray import images, synth

    base = [images.encode(synth.skin_image(0, i, size), "jpeg", 92) for i in range(min(count, 20))]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):  # reuse a few distinct photos: the work per image is the same
        (folder / f"img_{i:05d}.jpg").write_bytes(base[i % len(base)])


def plain_loop(model: str, src: Path, dst: Path, png: str) -> None:
    """What a user would write first: one process, torch's default threads, file after file."""
    import io

    from PIL import Image

    from skinray import images
    from skinray.predict import Enhancer

    enhancer = Enhancer.from_checkpoint(model, device="cpu")
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.jpg")):
        out = enhancer.enhance(images.decode(path.read_bytes()))
        if png == "skinray":
            data = images.encode(out, "png")
        else:
            buffer = io.BytesIO()
            Image.fromarray(out).save(buffer, format="PNG")
            data = buffer.getvalue()
        (dst / (path.stem + ".png")).write_bytes(data)


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def whole_processes(model: str, src: Path, out: Path, repeats: int) -> dict:
    commands = {
        "A skinray enhance": [str(ROOT / ".venv/bin/skinray"), "enhance", str(src), str(out / "a"), "--format",
                              "png", "--overwrite", "--model", model],
        "B1 loop, Pillow PNG": [PYTHON, __file__, "--plain-loop", model, str(src), str(out / "b1"), "default"],
        "B2 loop, skinray PNG": [PYTHON, __file__, "--plain-loop", model, str(src), str(out / "b2"), "skinray"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):  # in turn, so drifting machine load hits all alike
        for name, cmd in commands.items():
            seconds[name].append(timed(cmd))
    a = seconds["A skinray enhance"]
    ratios = {f"A/{k.split()[0]}": [b / x for b, x in zip(v, a)] for k, v in seconds.items() if k[0] == "B"}
    return {"seconds": seconds, "speed_ratios": ratios}


def compute_limit(model: str, src: Path) -> tuple[float, dict[str, float]]:
    import torch

    from skinray import archive, images
    from skinray.predict import Enhancer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    enhancer = Enhancer.from_checkpoint(model, device="cpu")
    data = sorted(src.glob("*.jpg"))[0].read_bytes()
    rgb = images.decode(data)
    enhanced = enhancer.enhance(rgb)
    parts = {}
    for name, fn in (("decode", lambda: images.decode_photo(data)), ("model", lambda: enhancer.enhance(rgb)),
                     ("encode", lambda: archive.encode_for("x.png", enhanced, 95))):
        start, n = time.process_time(), 0
        while time.process_time() - start < 1.0 or n < 3:
            fn()
            n += 1
        parts[name] = (time.process_time() - start) / n
    parts["whole stage"] = _stage_seconds_per_image(model, src)
    torch.set_num_threads(threads)
    return (os.cpu_count() or 1) / sum(v for k, v in parts.items() if k != "whole stage"), parts


def _stage_seconds_per_image(model: str, src: Path, count: int = 64) -> float:
    """CPU seconds per image of the job's own CPU stage (read, decode, model, encode, write,
    with the job's path-safe file opens) on one batch in this process, one thread, no Ray."""
    from skinray import archive
    from skinray.config import EnhanceConfig

    with tempfile.TemporaryDirectory() as out:
        cfg = EnhanceConfig(model=model, input=str(src), output=out, format="png")
        todo, _ = archive.plan(cfg, None)
        stage = archive.CpuStage(cfg, None, threads=1)
        stage(archive._numpy_batch(todo[:2]))  # warm
        rows = todo[2:2 + count]
        start = time.process_time()
        stage(archive._numpy_batch(rows))
        return (time.process_time() - start) / len(rows)


def _rss_of_ray_and_self() -> int:
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if int(proc.name) == os.getpid() or b"ray" in cmd:
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    return total


def peak_memory_during(fn):
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_of_ray_and_self())
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result = fn()
    done.set()
    thread.join()
    return result, peak[0]


def ray_job(model: str, src: Path, out: Path):
    from skinray import archive
    from skinray.config import EnhanceConfig

    cfg = EnhanceConfig(model=model, input=str(src), output=str(out), format="png", overwrite=True)
    return archive.run(cfg, execution="ray")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bundled", "poster"])
    parser.add_argument("--whole", type=int, default=1500, help="images for the whole-process comparison (0: skip)")
    parser.add_argument("--count", type=int, default=2000, help="images for a/c and peak memory (0: skip)")
    parser.add_argument("--memory-small", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--plain-loop", nargs=4, metavar=("MODEL", "IN", "OUT", "PNG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        model, src, dst, png = args.plain_loop
        plain_loop(model, Path(src), Path(dst), png)
        return

    import torch

    from skinray import checkpoint
    from skinray.config import POSTER_MODEL, Config
    from skinray.model import build_model
    from skinray.runtime import init_ray

    results: dict = {"cores": os.cpu_count(), "size": args.size, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.models:
            model = name
            if name == "poster":  # untrained: the same compute as a trained poster network
                torch.manual_seed(0)
                cfg = Config(model=POSTER_MODEL)
                model = str(checkpoint.save(root / "poster", build_model(cfg.model), cfg, {"epoch": 0}))
            found: dict = {}
            results["models"][name] = found
            if args.whole:
                src = root / f"whole_{args.whole}"
                if not src.exists():
                    make_inputs(src, args.whole, args.size)
                found["whole"] = whole_processes(model, src, root / f"whole_out_{name}", args.repeats)
                s, r = found["whole"]["seconds"], found["whole"]["speed_ratios"]
                print(f"[{name}] {args.whole} x {args.size}px JPEG -> PNG, whole process, s (runs): "
                      + "; ".join(f"{k} " + ", ".join(f"{x:.1f}" for x in v) for k, v in s.items())
                      + " -> speed " + "; ".join(f"{k} " + ", ".join(f"{x:.2f}" for x in v) for k, v in r.items()),
                      flush=True)
            if args.count:
                init_ray()
                src = root / f"count_{args.count}"
                if not src.exists():
                    make_inputs(src, args.count, args.size)
                summary, peak = peak_memory_during(lambda: ray_job(model, src, root / f"count_out_{name}"))
                a = summary.counts["ok"] / summary.seconds
                c, parts = compute_limit(model, src)
                small = root / f"small_{args.memory_small}"
                if not small.exists():
                    make_inputs(small, args.memory_small, args.size)
                _, small_peak = peak_memory_during(lambda: ray_job(model, small, root / f"small_out_{name}"))
                c_stage = (os.cpu_count() or 1) / parts["whole stage"]
                found["ray_job"] = {
                    "images": args.count, "seconds": summary.seconds, "a_images_per_s": a,
                    "c_images_per_s": c, "a_over_c": a / c, "c_stage_images_per_s": c_stage,
                    "a_over_c_stage": a / c_stage, "per_image_cpu_s_one_thread": parts,
                    "peak_rss_mib": peak / 2**20, "small_images": args.memory_small,
                    "small_peak_rss_mib": small_peak / 2**20, "peak_ratio": peak / max(small_peak, 1),
                    "ray_data_stats": summary.stats}
                print(f"[{name}] Ray job, {args.count} x {args.size}px JPEG -> PNG, Ray started: (a) {a:.2f} img/s, "
                      f"(c) compute limit {c:.2f} img/s [per image, 1 thread: "
                      + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items())
                      + f"] -> a/c {a / c:.2f}; against the whole stage in one process (read to write, "
                      f"{parts['whole stage'] * 1000:.1f} ms per image: {c_stage:.2f} img/s) {a / c_stage:.2f}; "
                      f"peak RSS {peak / 2**20:.0f} MiB vs {small_peak / 2**20:.0f} MiB at "
                      f"{args.memory_small} images ({peak / max(small_peak, 1):.2f}x)", flush=True)
                print(f"[{name}] Ray Data stats of the {args.count}-image run:\n{summary.stats}", flush=True)
    write_result('archive_throughput', results, params=vars(args), also=args.json)


if __name__ == "__main__":
    main()
