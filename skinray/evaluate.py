"""`skinray evaluate`: the models against classical colour correction on a held-out set.

    skinray evaluate --model RUN [--model RUN2 ...] --data DATA [--out DIR] [--size 256]
        [--limit 100] [--photos FOLDER]

Held-out set: the validation split of DATA as the (first) model's config defines it (never
trained on), or every image with ``--split all``; each image resized to ``--size`` and degraded
once with a draw that is a pure function of (``--seed``, key), so every run and every method sees
the same inputs. Methods: the degraded input itself, Gray World, Shades of Gray (p = 6), CLAHE on
lightness, Shades of Gray towards the training photos' mean colour instead of grey (with the
val split), and each model. Metrics: PSNR, SSIM, MS-SSIM (when the size allows), mean CIEDE2000,
and milliseconds per image. "Do no harm": every method is also run on the clean images, and
the output is compared with its own input. ``--photos``: a folder without ground truth,
enhanced by the first model, with no-reference statistics before and after.

Writes DIR/metrics.json, DIR/report.md and PNG figures (loss curves, a validation grid, a
before/after grid).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from skinray import baselines, colour, data, degrade, images, storage, viz
from skinray.config import Config
from skinray.errors import SkinrayError
from skinray.metrics import psnr, ssim_per_image

MS_SSIM_MIN_SIDE = 161  # pytorch_msssim's 5 scales with an 11-pixel window need a side > 160
CLASSICAL = ("gray_world", "shades_of_gray", "clahe")


@dataclass
class Method:
    name: str
    kind: str  # input | classical | model
    fn: Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 -> same
    short: str = ""  # column label in the figures

    def __post_init__(self) -> None:
        self.short = self.short or self.name


def load_split(data_uri: str, cfg: Config, size: int, limit: int, split: str,
               s3: storage.S3Options | None) -> list[tuple[str, np.ndarray]]:
    """(key, clean uint8 image at size x size) of one split ("val", "train" or "all"), by key."""
    manifest = data.load_or_build_manifest(cfg.replace({"data.source": data_uri}), s3)
    rows = [r for r in manifest.table.to_pylist() if split == "all" or r["split"] == split]
    rows = sorted(rows, key=lambda r: r["key"])[:limit]
    return [(r["key"], images.resize_square(images.decode(storage.read_bytes(r["uri"], s3)), size)) for r in rows]


def score(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """PSNR (dB, capped at 100), SSIM, MS-SSIM (None when too small), mean CIEDE2000."""
    from pytorch_msssim import ms_ssim

    x = torch.tensor(out).permute(2, 0, 1)[None].float() / 255.0
    y = torch.tensor(ref).permute(2, 0, 1)[None].float() / 255.0
    result = {"psnr": float(psnr(x, y).clamp(max=100)), "ssim": float(ssim_per_image(x, y)),
              "ms_ssim": None, "ciede2000": colour.mean_ciede2000(out, ref)}
    if min(out.shape[:2]) >= MS_SSIM_MIN_SIDE:
        result["ms_ssim"] = float(ms_ssim(x, y, data_range=1.0))
    return result


def _mean(rows: list[dict[str, float]]) -> dict[str, float | None]:
    keys = rows[0].keys()
    return {k: (float(np.mean([r[k] for r in rows])) if rows[0][k] is not None else None) for k in keys}


def methods_for(models: list[str], s3: storage.S3Options | None) -> tuple[list[Method], list]:
    from skinray.predict import Enhancer

    found = [Method("degraded input", "input", lambda img: img)]
    found += [Method(name, "classical", baselines.BASELINES[name], short)
              for name, short in zip(CLASSICAL, ("gray world", "SoG", "CLAHE"))]
    enhancers = []
    for uri in models:
        enhancer = Enhancer.from_checkpoint(uri, device="cpu", s3=s3)
        cfg = enhancer.loaded.config
        label = f"model {cfg.model.arch} ({cfg.train.name})"
        if any(m.name == label for m in found):
            label = f"{label} [{uri}]"
        found.append(Method(label, "model", enhancer.enhance, cfg.model.arch))
        enhancers.append((label, uri, enhancer))
    return found, enhancers


def run(models: list[str], data_uri: str, out: str, size: int = 256, limit: int = 100, split: str = "val",
        seed: int = 1234, photos: str | None = None, s3: storage.S3Options | None = None) -> dict:
    if not models:
        raise SkinrayError("evaluate: give at least one --model")
    if size < 16 or limit < 1:
        raise SkinrayError(f"evaluate: need --size >= 16 and --limit >= 1, got {size} and {limit}")
    if split not in ("val", "all"):
        raise SkinrayError(f"evaluate: --split must be val or all, got {split!r}")
    methods, enhancers = methods_for(models, s3)
    first_cfg = enhancers[0][2].loaded.config
    samples = load_split(data_uri, first_cfg, size, limit, split, s3)
    if not samples:
        raise SkinrayError(f"{data_uri}: no {split!r} images to evaluate on (val_fraction "
                           f"{first_cfg.data.val_fraction}, seed {first_cfg.data.seed}); try --split all")
    train_photos = load_split(data_uri, first_cfg, size, 50, "train", s3) if split == "val" else []
    if train_photos:  # Shades of Gray towards the training photos' own colour, not towards grey
        reference = baselines.reference_illuminant(img for _, img in train_photos)
        methods.insert(4, Method("shades_of_gray (skin reference)", "classical",
                                 lambda img: baselines.shades_of_gray(img, 6.0, target=reference), "SoG skin"))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    degrade_cfg = Config().degrade  # the poster's degradations, fixed for every model compared
    print(f"[skinray] evaluating {len(methods)} methods on {len(samples)} held-out images at {size}x{size}",
          flush=True)

    restored = {m.name: [] for m in methods}
    untouched = {m.name: [] for m in methods}
    seconds = {m.name: 0.0 for m in methods}
    grid_rows = []
    for i, (key, clean) in enumerate(samples):
        degraded = degrade.apply_uint8(clean, degrade.sample(degrade.key_rng(seed, key), degrade_cfg))
        row = [clean, degraded]
        for m in methods:
            started = time.perf_counter()
            fixed = m.fn(degraded)
            seconds[m.name] += time.perf_counter() - started
            restored[m.name].append(score(fixed, clean))
            untouched[m.name].append(score(m.fn(clean), clean))
            if m.kind != "input":
                row.append(fixed)
        if i < 6:
            grid_rows.append(row)
        if (i + 1) % 20 == 0 and i + 1 < len(samples):
            print(f"[skinray] evaluated {i + 1}/{len(samples)} images", flush=True)

    table = {m.name: {"kind": m.kind, **_mean(restored[m.name]), "ms_per_image": 1000 * seconds[m.name] / len(samples)}
             for m in methods}
    harm = {m.name: {k: v for k, v in _mean(untouched[m.name]).items() if k in ("psnr", "ciede2000")}
            for m in methods}
    figures = {"validation_grid": str(viz.grid(
        grid_rows, ["clean", "degraded"] + [m.short for m in methods if m.kind != "input"],
        out_dir / "validation_grid.png"))}
    for j, (label, uri, enhancer) in enumerate(enhancers):
        history = enhancer.loaded.history
        if history:
            figures[f"loss_curve_{j}"] = str(viz.loss_curve(history, out_dir / f"loss_curve_{j}.png", title=label))

    photo_stats = None
    if photos:
        photo_stats, figures["photos_grid"] = _photos(photos, enhancers[0][2], out_dir, s3)

    metrics = {"data": data_uri, "split": split, "images": len(samples), "size": size, "seed": seed,
               "models": {label: uri for label, uri, _ in enhancers}, "restoration": table,
               "do_no_harm": harm, "photos": photo_stats, "figures": figures}
    metrics["summary"] = _summary(table, harm)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "report.md").write_text(_report(metrics))
    return metrics


def _photos(uri: str, enhancer, out_dir: Path, s3, limit: int = 8) -> tuple[dict, str]:
    """Before/after of photos without ground truth, with no-reference statistics."""
    entries = [e for e in storage.list_files(uri, s3) if images.is_image_key(e.key)]
    if not entries:
        raise SkinrayError(f"{uri}: no photos (.jpg/.png/...) found for --photos")
    stats = {"before": [], "after": []}
    rows = []
    for entry in sorted(entries, key=lambda e: e.key)[:limit]:
        before = images.decode(storage.read_bytes(entry.uri, s3))
        after = enhancer.enhance(before)
        for name, img in (("before", before), ("after", after)):
            stats[name].append({"brightness": colour.mean_brightness(img), "contrast": colour.contrast(img),
                                "colourfulness": colour.colourfulness(img)})
        rows.append([images.resize_square(before, 160), images.resize_square(after, 160)])
    summary = {name: {k: float(np.mean([s[k] for s in values])) for k in values[0]} for name, values in stats.items()}
    summary["count"] = len(rows)
    path = viz.grid(rows, ["before", "after"], out_dir / "photos_before_after.png")
    return summary, str(path)


def _summary(table: dict, harm: dict) -> dict:
    degraded = table["degraded input"]["psnr"]
    best_classical = max((n for n in table if table[n]["kind"] == "classical"), key=lambda n: table[n]["psnr"])
    models = {n: {"gain_over_degraded_db": table[n]["psnr"] - degraded,
                  "gain_over_best_classical_db": table[n]["psnr"] - table[best_classical]["psnr"],
                  "unchanged_photo_psnr_db": harm[n]["psnr"], "unchanged_photo_ciede2000": harm[n]["ciede2000"]}
              for n in table if table[n]["kind"] == "model"}
    return {"best_classical": best_classical, "models": models}


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _report(m: dict) -> str:
    lines = [
        "# skinray evaluation", "",
        f"{m['images']} held-out images ({m['split']} split of `{m['data']}`) at {m['size']}x{m['size']} px, "
        f"degraded once each with the poster's degradations (seed {m['seed']}: colour jitter on 60%, "
        "down-up blur on all).", "",
        "## Restoration (output vs clean original)", "",
        "| method | PSNR dB | SSIM | MS-SSIM | CIEDE2000 | ms/image |", "|---|---|---|---|---|---|",
    ]
    for name, row in m["restoration"].items():
        lines.append(f"| {name} | {_fmt(row['psnr'], 2)} | {_fmt(row['ssim'], 4)} | {_fmt(row['ms_ssim'], 4)} | "
                     f"{_fmt(row['ciede2000'], 2)} | {_fmt(row['ms_per_image'], 1)} |")
    lines += ["", "## Do no harm (clean photos in, output vs its own input)", "",
              "A photo that needs no correction should come back unchanged: high PSNR, CIEDE2000 below ~2 "
              "(a just-noticeable difference).", "",
              "| method | PSNR dB | CIEDE2000 |", "|---|---|---|"]
    for name, row in m["do_no_harm"].items():
        if m["restoration"][name]["kind"] != "input":
            lines.append(f"| {name} | {_fmt(row['psnr'], 2)} | {_fmt(row['ciede2000'], 2)} |")
    s = m["summary"]
    lines += ["", "## Summary", "", f"Best classical method on PSNR: {s['best_classical']}.", ""]
    for name, g in s["models"].items():
        lines.append(f"- {name}: {g['gain_over_degraded_db']:+.2f} dB over the degraded input, "
                     f"{g['gain_over_best_classical_db']:+.2f} dB over {s['best_classical']}; on unchanged photos "
                     f"{g['unchanged_photo_psnr_db']:.2f} dB, CIEDE2000 {g['unchanged_photo_ciede2000']:.2f}.")
    lines += ["", "## Figures", ""]
    for key, path in m["figures"].items():
        lines.append(f"![{key}]({Path(path).name})")
        lines.append("")
    if m["photos"]:
        p = m["photos"]
        lines += ["## Photos without ground truth (first model)", "",
                  f"{p['count']} photos; mean no-reference statistics:", "",
                  "| | brightness (L*) | contrast (std L*) | colourfulness |", "|---|---|---|---|"]
        for name in ("before", "after"):
            lines.append(f"| {name} | {p[name]['brightness']:.1f} | {p[name]['contrast']:.1f} | "
                         f"{p[name]['colourfulness']:.1f} |")
    return "\n".join(lines) + "\n"
