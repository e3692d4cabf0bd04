"""GPU check, one run of at most a few minutes: inference precision and speed of the bundled model
through the real Enhancer, and training steps in bf16 + channels_last against fp32.

    python benchmarks/gpu_check.py [--json outputs/benchmarks/gpu_check.json]   # on a GPU machine
    python benchmarks/gpu_check.py --quick --json /tmp/gpu_check.json            # small sizes, any CPU

Inference, for each precision (fp32, bf16, fp16) of ``skinray.predict.Enhancer`` on the bundled
model (``skinray/models/default``): the largest difference from fp32 in grey levels over
synthetic skin photos (goal <= 1) and the share of values that differ; images/s and megapixels/s
on batches of 256x256 photos; seconds and megapixels/s for one 12-MP photo (4000x3000, tiled).
On CUDA the fp32 reference is computed with TF32 off (true float32); the "fp32" row is skinray's
fp32 as it runs by default (PyTorch lets cuDNN convolutions use TF32). Training: images/s of
training steps in fp32 and in bf16 autocast + channels_last, as ``skinray train`` runs them.

Needs torch, numpy, pillow and skinray's own modules; no Ray and no data. Every figure is printed
as soon as it exists and the JSON (``--json``) is rewritten after each; a mode that fails is
reported with its error and the others go on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from skinray import checkpoint, degrade  # noqa: E402
from skinray.config import DegradeConfig, ModelConfig, TrainConfig  # noqa: E402
from skinray.errors import ConfigError  # noqa: E402
from skinray.losses import make_loss  # noqa: E402
from skinray.model import build_model, channels_last  # noqa: E402
from skinray.predict import Enhancer  # noqa: E402
from skinray.synth import skin_image  # noqa: E402

PRECISIONS = ("fp32", "bf16", "fp16")


class Report:
    """Prints each figure as it comes and keeps the JSON file up to date."""

    def __init__(self, path: str | None, header: dict):
        self.path, self.data = path, {**header, "inference": {}, "training": {}, "errors": {}}
        self.save()

    def put(self, section: str, mode: str, key: str, value, line: str | None = None) -> None:
        self.data[section].setdefault(mode, {})[key] = value
        if line:
            print(line, flush=True)
        self.save()

    def error(self, where: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        self.data["errors"][where] = message
        if isinstance(exc, ConfigError):  # refused by skinray's rules (fp16 on a CPU): not a crash
            print(f"  {where}: refused: {message}", flush=True)
        else:
            print(f"  {where}: FAILED {message}", flush=True)
            traceback.print_exc(limit=3, file=sys.stderr)
        self.save()

    def save(self) -> None:
        if self.path:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_text(json.dumps(self.data, indent=2))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def photos(size: int, count: int) -> list[np.ndarray]:
    """Synthetic skin photos, each degraded (colour cast, blur, noise...) as a user's photo is."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        clean = skin_image(0, i, size).astype(np.float32) / 255.0
        out.append((degrade.apply(clean, degrade.sample(rng, DegradeConfig())) * 255 + 0.5).astype(np.uint8))
    return out


def big_photo(height: int, width: int) -> np.ndarray:
    """A phone-sized photo: a synthetic skin photo upscaled, plus sensor-like noise."""
    base = skin_image(0, 99, max(height, width) // 4)
    image = np.kron(base, np.ones((4, 4, 1), np.uint8))[:height, :width]
    noise = np.random.default_rng(1).integers(-6, 7, image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def inference(args, device: torch.device, report: Report) -> None:
    loaded = checkpoint.load("bundled")
    small = photos(args.size, args.batch)
    big = big_photo(*args.photo)
    mp_small, mp_big = args.size * args.size / 1e6, big.shape[0] * big.shape[1] / 1e6
    print(f"inference: bundled model {loaded.model_id} ({loaded.config.model.arch}); batches of {args.batch} "
          f"{args.size}x{args.size} photos, x{args.steps}; one {big.shape[1]}x{big.shape[0]} photo "
          f"(tile {args.tile}), median of {args.repeats}", flush=True)
    reference = {}
    try:  # true float32: TF32 off
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        ref = Enhancer(loaded, device, tile=args.tile, precision="fp32")
        reference = {"small": ref.enhance_batch(small), "big": ref.enhance(big)}
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    except Exception as exc:  # noqa: BLE001 - report and go on
        report.error("inference/reference", exc)
    for precision in PRECISIONS:
        try:
            enhancer = Enhancer(loaded, device, tile=args.tile, precision=precision)
            outputs = {"small": enhancer.enhance_batch(small), "big": enhancer.enhance(big)}
            if reference:
                diffs = [np.abs(a.astype(np.int16) - b) for a, b in zip(outputs["small"] + [outputs["big"]],
                                                                        reference["small"] + [reference["big"]])]
                worst = int(max(d.max() for d in diffs))
                share = float(sum((d > 0).sum() for d in diffs) / sum(d.size for d in diffs))
                report.put("inference", precision, "max_diff_grey_levels", worst)
                report.put("inference", precision, "share_of_values_differing", share,
                           f"  {precision:>5}: largest difference from fp32 {worst} grey level(s) "
                           f"({share:.2e} of values differ){'' if worst <= 1 else '  ABOVE THE GOAL OF 1'}")
            seconds = timed(lambda: [enhancer.enhance_batch(small) for _ in range(args.steps)], args.repeats, device)
            ips = args.steps * args.batch / seconds
            report.put("inference", precision, "batch_images_per_s", ips)
            report.put("inference", precision, "batch_megapixels_per_s", ips * mp_small,
                       f"  {precision:>5}: {args.size}x{args.size} batches: {ips:9.1f} images/s "
                       f"{ips * mp_small:8.1f} MP/s")
            seconds = timed(lambda: enhancer.enhance(big), args.repeats, device)
            report.put("inference", precision, "photo_seconds", seconds)
            report.put("inference", precision, "photo_megapixels_per_s", mp_big / seconds,
                       f"  {precision:>5}: {mp_big:.1f}-MP photo: {seconds:7.3f} s {mp_big / seconds:8.1f} MP/s")
        except Exception as exc:  # noqa: BLE001 - report and go on
            report.error(f"inference/{precision}", exc)
    rows = report.data["inference"]
    for precision in PRECISIONS[1:]:
        base, fast = rows.get("fp32", {}), rows.get(precision, {})
        for key in ("batch_images_per_s", "photo_megapixels_per_s"):
            if key in base and key in fast:
                report.put("inference", precision, f"speedup_{key}", fast[key] / base[key])
        if "speedup_batch_images_per_s" in fast and "speedup_photo_megapixels_per_s" in fast:
            print(f"  speed-up {precision} / fp32: {fast['speedup_batch_images_per_s']:.2f}x on "
                  f"{args.size} px batches, "
                  f"{fast['speedup_photo_megapixels_per_s']:.2f}x on the {mp_big:.1f}-MP photo", flush=True)


def training(args, device: torch.device, report: Report) -> None:
    cfg = ModelConfig(arch=args.arch)
    print(f"training: {args.arch} model, batches of {args.batch} {args.size}x{args.size} pairs, {args.train_steps} "
          f"steps, loss {TrainConfig.loss}", flush=True)
    clean = np.stack([skin_image(0, i, args.size) for i in range(args.batch)]).astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    noisy = np.stack([degrade.apply(img, degrade.sample(rng, DegradeConfig())) for img in clean])
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous().to(device)  # noqa: E731
    loss_fn = make_loss(TrainConfig.loss)
    for mode in ("fp32", "bf16+channels_last"):
        try:
            fast = mode != "fp32"
            torch.manual_seed(0)
            model = build_model(cfg).to(device)
            x, y = to(noisy), to(clean)
            if fast and device.type == "cuda":
                model = channels_last(model)  # as skinray train does
                x, y = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
            opt = torch.optim.Adam(model.parameters(), lr=0.002)

            def step():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                    pred = model(x)
                loss = loss_fn(pred.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            model.train()
            seconds = timed(lambda: [step() for _ in range(args.train_steps)], 1, device)
            ips = args.train_steps * args.batch / seconds
            report.put("training", mode, "images_per_s", ips, f"  {mode:>18}: {ips:9.1f} training images/s")
        except Exception as exc:  # noqa: BLE001
            report.error(f"training/{mode}", exc)
    rows = report.data["training"]
    if "images_per_s" in rows.get("fp32", {}) and "images_per_s" in rows.get("bf16+channels_last", {}):
        ratio = rows["bf16+channels_last"]["images_per_s"] / rows["fp32"]["images_per_s"]
        report.put("training", "bf16+channels_last", "speedup", ratio,
                   f"  speed-up bf16+channels_last / fp32: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a CPU check of this script)")
    parser.add_argument("--json", help="also write the figures here as JSON")
    parser.add_argument("--size", type=int, help="photo side for batches (default 256; quick 64)")
    parser.add_argument("--batch", type=int, help="photos per batch (default 16; quick 4)")
    parser.add_argument("--steps", type=int, help="inference batches per timing (default 20; quick 2)")
    parser.add_argument("--train-steps", type=int, help="training steps per timing (default 30; quick 2)")
    parser.add_argument("--repeats", type=int, help="timings per figure, median (default 3; quick 1)")
    parser.add_argument("--photo", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="the large photo (default 3000 4000; quick 600 800)")
    parser.add_argument("--tile", type=int, default=512, help="Enhancer tile size (default 512, skinray's)")
    parser.add_argument("--arch", default="lut", help="model trained in the training check (default lut)")
    args = parser.parse_args()
    defaults = dict(size=64, batch=4, steps=2, train_steps=2, repeats=1, photo=[600, 800]) if args.quick else \
        dict(size=256, batch=16, steps=20, train_steps=30, repeats=3, photo=[3000, 4000])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (no GPU found)"
    header = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
              "bf16_supported": bool(device.type == "cuda" and torch.cuda.is_bf16_supported()),
              "args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"device: {name}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads", flush=True)
    report = Report(args.json, header)
    started = time.perf_counter()
    for part in (inference, training):
        try:
            part(args, device, report)
        except Exception as exc:  # noqa: BLE001
            report.error(part.__name__, exc)
    report.data["seconds"] = time.perf_counter() - started
    report.save()
    print(f"done in {report.data['seconds']:.0f} s{'; JSON: ' + args.json if args.json else ''}"
          f"{'; errors: ' + ', '.join(report.data['errors']) if report.data['errors'] else ''}", flush=True)


if __name__ == "__main__":
    main()
