"""`skinray demo`: the main job end to end on embedded defaults, on one machine.

Synthesises a dataset, trains on a local Ray, and writes before/after samples and the loss
curve into one output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from skinray import archive, degrade, evaluate, images, storage, synth, viz
from skinray.config import Config, EnhanceConfig
from skinray.ingest import split_of
from skinray.predict import Enhancer
from skinray.train import fit

# Small enough for a laptop CPU in a few minutes: the default recipe (the `lut` model: a colour
# lookup predicted from the whole image; per-image PSNR loss, cosine
# learning rate) on 64 px crops, fine-tuned from the bundled model (`make model`), as one would
# adapt it to one's own archive. The poster's recipe is jobs/configs/poster.yaml.
DEMO_OVERRIDES = {
    "data.image_size": 64,
    "train.init": "bundled",
    "train.lr": 0.0005,
    "train.epochs": 10,
    "train.batch_size": 8,  # per worker: a global batch of 16, the poster's
    "train.workers": 2,
    "train.name": "demo",
}
DEMO_IMAGES, DEMO_IMAGE_PX = 400, 96
DEMO_SEED = 3  # other photos than the bundled model's (seed 0) and its held-out set (seed 7)


def run_demo(out: str, count: int = DEMO_IMAGES, overrides: dict | None = None) -> dict:
    out_dir = Path(out).resolve()
    data_dir = out_dir / "data"
    existing = sorted(data_dir.glob("*.jpg")) if data_dir.is_dir() else []
    if len(existing) != count:
        print(f"[skinray] synthesising {count} skin photos into {data_dir}", flush=True)
        synth.write_dataset(str(data_dir), count, size=DEMO_IMAGE_PX, seed=DEMO_SEED)
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
        drawn = degrade.sample(degrade.key_rng(cfg.data.seed, path.name), cfg.degrade, image=clean)
        degraded = degrade.apply_uint8(clean, drawn)
        rows.append([clean, degraded, enhancer.enhance(degraded)])
    viz.grid(rows, ["clean", "degraded", "enhanced"], out_dir / "samples.png")

    photos, enhanced = out_dir / "photos", out_dir / "enhanced"
    _write_poor_photos(photos, cfg, count=12, size=2 * DEMO_IMAGE_PX)
    job = archive.run(EnhanceConfig(model=summary.best_uri, input=str(photos), output=str(enhanced),
                                      overwrite=True))

    compared = [summary.best_uri] + ([cfg.train.init] if cfg.train.init else [])  # fine-tuned vs start
    report = evaluate.run(compared, str(data_dir), str(out_dir / "evaluation"), size=DEMO_IMAGE_PX,
                          limit=60, photos=str(photos))
    m = summary.best_metrics
    result = {
        "model": summary.best_uri,
        "val_psnr_degraded": m["val_psnr_input"], "val_psnr_enhanced": m["val_psnr"],
        "val_ssim_degraded": m["val_ssim_input"], "val_ssim_enhanced": m["val_ssim"],
        "best_epoch": m["epoch"] + 1, "output": str(out_dir), "enhanced_folder": str(enhanced),
        "evaluation": report["summary"], "report": str(out_dir / "evaluation" / "report.md"),
    }
    (out_dir / "demo_summary.json").write_text(json.dumps(result, indent=2))
    print("\n[skinray] validation PSNR, degraded -> enhanced: " + ", ".join(
        f"{subset} {m[f'val_psnr_input_{subset}']:.2f} -> {m[f'val_psnr_{subset}']:.2f} dB"
        for subset in ("colour", "camera", "clean")))
    print(f"[skinray] validation SSIM: degraded {m['val_ssim_input']:.4f} -> enhanced {m['val_ssim']:.4f}")
    print(f"[skinray] best model (epoch {m['epoch'] + 1}): {summary.best_uri}")
    print(f"[skinray] archive job: {job.line()}")
    print(f"[skinray] poorly lit photos {photos} enhanced into: {enhanced}")
    print(f"[skinray] samples, loss curve and summary in: {out_dir}")
    print(f"[skinray] evaluation against classical colour correction: {result['report']}")
    return result


def _write_poor_photos(folder: Path, cfg: Config, count: int, size: int) -> None:
    """Held-out synthetic photos (another seed), every one with a colour fault (the colour
    jitter, maybe a cast or exposure error) and camera faults as drawn: the kind of photo
    patients send."""
    mix = Config().degrade
    for i in range(count):
        good = synth.skin_image(seed=1, index=i, size=size)
        drawn = degrade.sample(degrade.key_rng(cfg.data.seed, f"photo-{i}"), mix, subset="colour", image=good)
        poor = degrade.apply_uint8(good, drawn)
        storage.write_bytes(str(folder / f"photo_{i:02d}.jpg"), images.encode(poor, "jpeg", 92))
