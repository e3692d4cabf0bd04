"""Archive enhancement throughput and memory: the Ray Data job against a plain loop and
against the machine's compute limit, in one run.

    .venv/bin/python benchmarks/batch_throughput.py [--sizes 256 1024] [--count 200]
        [--large-count 20] [--memory-counts 200 2000] [--memory-size 256] [--format jpeg]

(a) the Ray Data job (`skinray.batch.run`), Ray already started;
(b) a plain single-process loop doing the same work: read, decode, enhance, encode, write;
(c) the compute limit: CPU cores / per-image CPU-seconds of decode + model + encode, each
    measured in isolation on one thread.
Prints images/s and a/b, a/c per size; then the peak resident memory of the driver and all Ray
processes (sampled from /proc every 0.2 s) while the job runs on the two memory counts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import torch

from skinray import batch, checkpoint, images, synth
from skinray.config import POSTER_MODEL as POSTER, Config, EnhanceConfig
from skinray.model import build_model
from skinray.predict import Enhancer
from skinray.runtime import init_ray


def make_inputs(folder: Path, count: int, size: int) -> None:
    base = [images.encode(synth.skin_image(0, i, size), "jpeg", 92) for i in range(min(count, 20))]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):  # reuse a few distinct photos: the work per image is the same
        (folder / f"img_{i:05d}.jpg").write_bytes(base[i % len(base)])


def plain_loop(model: str, src: Path, dst: Path, fmt: str) -> float:
    enhancer = Enhancer.from_checkpoint(model, device="cpu")
    files = sorted(src.glob("*.jpg"))
    started = time.perf_counter()
    for path in files:
        out = enhancer.enhance(images.decode(path.read_bytes()))
        (dst / path.name).parent.mkdir(parents=True, exist_ok=True)
        (dst / path.name).write_bytes(batch.encode_for(batch.output_key(path.name, fmt), out, 95))
    return len(files) / (time.perf_counter() - started)


def compute_limit(model: str, src: Path, fmt: str) -> tuple[float, dict[str, float]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    enhancer = Enhancer.from_checkpoint(model, device="cpu")
    data = sorted(src.glob("*.jpg"))[0].read_bytes()
    rgb = images.decode(data)
    enhanced = enhancer.enhance(rgb)
    parts = {}
    for name, fn in (("decode", lambda: images.decode(data)), ("model", lambda: enhancer.enhance(rgb)),
                     ("encode", lambda: batch.encode_for(batch.output_key("x.jpg", fmt), enhanced, 95))):
        start, n = time.process_time(), 0
        while time.process_time() - start < 1.0 or n < 3:
            fn()
            n += 1
        parts[name] = (time.process_time() - start) / n
    torch.set_num_threads(threads)
    return (os.cpu_count() or 1) / sum(parts.values()), parts


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


def peak_memory_during(fn) -> tuple[float, int]:
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_of_ray_and_self())
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - started
    done.set()
    thread.join()
    return elapsed, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--count", type=int, default=200, help="images per size up to 512 px")
    parser.add_argument("--large-count", type=int, default=20, help="images per size above 512 px")
    parser.add_argument("--memory-counts", type=int, nargs=2, default=[200, 2000])
    parser.add_argument("--memory-size", type=int, default=256)
    parser.add_argument("--format", default="jpeg", choices=["jpeg", "png", "same"])
    parser.add_argument("--workers", type=int, default=2, help="model actors of the Ray job")
    args = parser.parse_args()
    init_ray()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        cfg = Config(model=POSTER)  # the figures in the README were measured with the poster network
        model = str(checkpoint.save(root / "model", build_model(cfg.model), cfg, {"epoch": 0}))
        for size in args.sizes:
            count = args.count if size <= 512 else args.large_count
            src = root / f"in_{size}"
            make_inputs(src, count, size)
            cfg = EnhanceConfig(model=model, input=str(src), output=str(root / f"ray_{size}"), format=args.format,
                                workers=args.workers, overwrite=True)
            summary = batch.run(cfg)
            a = summary.counts["ok"] / summary.seconds
            b = plain_loop(model, src, root / f"plain_{size}", args.format)
            c, parts = compute_limit(model, src, args.format)
            print(f"{size}px x {count}: (a) Ray job {a:.2f} img/s, (b) plain loop {b:.2f} img/s, "
                  f"(c) compute limit {c:.2f} img/s [per image, 1 thread: "
                  + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items())
                  + f"] -> a/b {a / b:.2f}, a/c {a / c:.2f}", flush=True)
        peaks = []
        for count in args.memory_counts:
            src = root / f"mem_{count}"
            make_inputs(src, count, args.memory_size)
            cfg = EnhanceConfig(model=model, input=str(src), output=str(root / f"memout_{count}"),
                                format=args.format, workers=args.workers, overwrite=True)
            elapsed, peak = peak_memory_during(lambda: batch.run(cfg))
            peaks.append(peak)
            print(f"memory: {count} images at {args.memory_size}px: peak RSS (driver + Ray processes) "
                  f"{peak / 2**20:.0f} MiB, {elapsed:.1f}s", flush=True)
        print(f"peak memory ratio {args.memory_counts[1]} / {args.memory_counts[0]} images: "
              f"{peaks[1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()
