"""`skinray demo`: the main job end to end on embedded defaults, on one machine.

Synthesises a dataset, trains on a local Ray, and writes before/after samples and the loss
curve into one output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from skinray import degrade, images, synth, viz
from skinray.config import Config
from skinray.data import split_of
from skinray.predict import Enhancer
from skinray.train import fit

# Small enough for a laptop CPU in a few minutes; everything else is the project default.
DEMO_OVERRIDES = {
    "data.image_size": 96,
    "train.epochs": 12,
    "train.workers": 2,
    "train.name": "demo",
}
DEMO_IMAGES, DEMO_IMAGE_PX = 200, 128


def run_demo(out: str, count: int = DEMO_IMAGES, overrides: dict | None = None) -> dict:
    out_dir = Path(out).resolve()
    data_dir = out_dir / "data"
    existing = sorted(data_dir.glob("*.jpg")) if data_dir.is_dir() else []
    if len(existing) != count:
        print(f"[skinray] synthesising {count} skin photos into {data_dir}", flush=True)
        synth.write_dataset(str(data_dir), count, size=DEMO_IMAGE_PX, seed=0)
    cfg = Config().replace({**DEMO_OVERRIDES, "data.source": str(data_dir),
                            "train.storage": str(out_dir / "runs"), **(overrides or {})})
    summary = fit(cfg)

    enhancer = Enhancer.from_checkpoint(summary.best_uri, device="cpu")
    viz.loss_curve(summary.history, out_dir / "loss_curve.png")
    rows = []
    val_files = [p for p in sorted(data_dir.glob("*.jpg"))
                 if split_of(p.name, cfg.data.val_fraction, cfg.data.seed) == "val"][:6]
    for path in val_files:
        clean = images.resize_square(images.decode(path.read_bytes()), cfg.data.image_size)
        drawn = degrade.sample(degrade.key_rng(cfg.data.seed, path.name), cfg.degrade)
        degraded = (degrade.apply(clean.astype(np.float32) / 255.0, drawn) * 255 + 0.5).astype(np.uint8)
        rows.append([clean, degraded, enhancer.enhance(degraded)])
    viz.grid(rows, ["clean", "degraded", "enhanced"], out_dir / "samples.png")

    m = summary.best_metrics
    result = {
        "model": summary.best_uri,
        "val_psnr_degraded": m["val_psnr_input"], "val_psnr_enhanced": m["val_psnr"],
        "val_ssim_degraded": m["val_ssim_input"], "val_ssim_enhanced": m["val_ssim"],
        "best_epoch": m["epoch"] + 1, "output": str(out_dir),
    }
    (out_dir / "demo_summary.json").write_text(json.dumps(result, indent=2))
    print(f"\n[skinray] validation PSNR: degraded {m['val_psnr_input']:.2f} dB -> enhanced {m['val_psnr']:.2f} dB")
    print(f"[skinray] validation SSIM: degraded {m['val_ssim_input']:.4f} -> enhanced {m['val_ssim']:.4f}")
    print(f"[skinray] best model (epoch {m['epoch'] + 1}): {summary.best_uri}")
    print(f"[skinray] samples, loss curve and summary in: {out_dir}")
    return result
