"""Does enhancement help diagnosis? ``skinray evaluate --task-model RUN``: the downstream models
(:mod:`skinray.downstream`) scored on one split's photos, each photo seen several ways:

* ``clean``: the photo as it is;
* ``re-lit (v3 light)``: a real-world light (a ``subset="colour"`` draw of the default v3
  degradations, light and exposure only) from the stream ``downstream-cast:v3:<key>`` of
  ``--seed``, which training never draws from;
* ``re-lit (strong v3 light)``: the same, stronger (:data:`STRONG_LIGHT`: 2000-20000 K, tint
  0.12), for when the first costs less than the interval;
* ``re-lit (poster jitter)``: the poster's colour jitter (:data:`skinray.config.POSTER_DEGRADE`,
  its blur left out), stream ``downstream-cast:poster:<key>``;

and each of these as it is and corrected by every method: Shades of Gray with a skin prior
(its reference from up to 50 photos of the train split) and every ``--model`` (e.g. ``bundled``).
So the rows are re-lit, re-lit then enhanced, clean then enhanced.

Per row: attributes, balanced accuracy (threshold 0.5 on the sigmoid; the classifier is trained
with balanced class weights) and ROC AUC per attribute and their mean; segmentation, the mean
per-photo Dice and IoU (threshold 0.5). Intervals: 95% percentile bootstrap over the scored
photos (``--bootstrap`` resamples, the same resamples for every row, so differences are
paired): each figure's interval, its difference from ``clean``'s, and for enhanced re-lit rows
the recovered fraction (enhanced - re-lit) / (clean - re-lit) of what re-lighting cost.

Writes DIR/downstream.json, DIR/downstream.md and DIR/downstream.png (each row's figure with its interval).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import rankdata

from skinray import baselines, checkpoint, degrade, harm, images, ingest, storage
from skinray.config import POSTER_DEGRADE, DegradeConfig
from skinray.downstream import dice_iou
from skinray.errors import SkinrayError
from skinray.ground_truth import ATTRIBUTES

STRONG_LIGHT = DegradeConfig(kelvin_min=2000.0, kelvin_max=20000.0, tint=0.12)
CONDITIONS = {  # name -> the degradations a re-lit photo draws from (None: the photo as it is)
    "clean": None,
    "re-lit (v3 light)": ("v3", DegradeConfig()),
    "re-lit (strong v3 light)": ("v3-strong", STRONG_LIGHT),
    "re-lit (poster jitter)": ("poster", POSTER_DEGRADE),
}
AS_IS = "as is"
SKIN_PRIOR = "shades_of_gray (skin prior)"
REFERENCE_PHOTOS = 50
HEADLINE = {"attributes": "balanced_accuracy", "segmentation": "dice"}


@dataclasses.dataclass
class Photos:
    """The scored photos at ``size`` (N, S, S, 3) uint8, their keys, masks (N, S, S) bool (None
    without), attribute labels (N, 5) float (NaN unknown) and the skin prior's reference."""

    keys: list[str]
    images: np.ndarray
    masks: np.ndarray | None
    labels: np.ndarray
    skin: baselines.SkinReference | None


# ----------------------------------------------------------------------------- inputs


def relit(img: np.ndarray, key: str, seed: int, stream: str, cfg: DegradeConfig) -> np.ndarray:
    """The photo under a held-out light: a ``subset="colour"`` draw of ``cfg`` from
    ``key_rng(seed, "downstream-cast:<stream>:<key>")``, its colour faults only (no blur, noise
    or JPEG), uint8."""
    drawn = degrade.sample(degrade.key_rng(seed, f"downstream-cast:{stream}:{key}"), cfg, subset="colour", image=img)
    return degrade.apply_uint8(img, dataclasses.replace(drawn, scale=1.0, noise=0.0, jpeg_quality=0))


def _rows(data_uri: str, cfg, s3, masks: str | None, attributes: str | None) -> list[dict]:
    if data_uri.endswith(".parquet"):
        return ingest.read_manifest(data_uri, s3).table.to_pylist()
    return ingest.build_manifest(data_uri, cfg.data.val_fraction, cfg.data.seed, s3, masks=masks,
                                 attributes=attributes, test_fraction=cfg.data.test_fraction,
                                 split_by=cfg.data.split_by).table.to_pylist()


def load_photos(data_uri: str, cfg, split: str, size: int, limit: int, s3, masks: str | None = None,
                attributes: str | None = None, need_masks: bool = False) -> Photos:
    """The first ``limit`` photos (by key) of ``split`` (as the manifest, or ``cfg``, splits),
    those with a mask when ``need_masks``."""
    everything = _rows(data_uri, cfg, s3, masks, attributes)
    rows = sorted((r for r in everything if (split == "all" or r["split"] == split)
                   and (r.get("mask_uri") or not need_masks)), key=lambda r: r["key"])[:limit]
    if not rows:
        raise SkinrayError(f"{data_uri}: no {split!r} photos{' with a lesion mask' if need_masks else ''} to "
                           f"evaluate on (masks: --masks DIR or beside the photos; --split all takes every photo)")
    imgs = np.stack([images.resize_square(images.decode(storage.read_bytes(r["uri"], s3)), size) for r in rows])
    found = np.stack([harm.read_mask(r["mask_uri"], size, s3) for r in rows]) if need_masks else None
    labels = np.array([[np.nan if r.get(a) is None else float(r[a]) for a in ATTRIBUTES] for r in rows], np.float32)
    train = sorted((r for r in everything if r["split"] == "train"), key=lambda r: r["key"])[:REFERENCE_PHOTOS]
    reference = [images.resize_square(images.decode(storage.read_bytes(r["uri"], s3)), size) for r in train]
    try:
        skin = baselines.skin_reference(reference or list(imgs[:REFERENCE_PHOTOS]))
    except ValueError:
        skin = None
    return Photos([r["key"] for r in rows], imgs, found, labels, skin)


def methods(enhancers: list[tuple[str, object]], skin: baselines.SkinReference | None
            ) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The photo as it is, Shades of Gray with a skin prior (when a reference exists), each enhancer."""
    found: dict[str, Callable[[np.ndarray], np.ndarray]] = {AS_IS: lambda img: img}
    if skin is not None:
        found[SKIN_PRIOR] = lambda img: baselines.shades_of_gray_skin(img, skin)
    found.update((label, enhancer.enhance) for label, enhancer in enhancers)
    return found


@torch.no_grad()
def predict(model: torch.nn.Module, task: str, photos: np.ndarray, batch: int = 32) -> np.ndarray:
    """Attributes: probabilities (N, 5); segmentation: lesion masks (N, S, S) bool."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(photos), batch):
        x = torch.from_numpy(photos[start:start + batch]).to(device).permute(0, 3, 1, 2).float() / 255.0
        logits = model(x).float()
        out.append((torch.sigmoid(logits) if task == "attributes" else logits[:, 0] > 0).cpu().numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------- statistics


def balanced_accuracy(probs: np.ndarray, truth: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Over the last axis: (TPR + TNR) / 2 at threshold 0.5; NaN without positives or negatives."""
    said, pos, neg = probs >= 0.5, truth & known, ~truth & known
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = (said & pos).sum(-1) / pos.sum(-1)
        tnr = (~said & neg).sum(-1) / neg.sum(-1)
    return 0.5 * (tpr + tnr)


def auc(probs: np.ndarray, truth: np.ndarray, known: np.ndarray) -> np.ndarray:
    """ROC AUC over the last axis (Mann-Whitney, ties averaged); NaN without both classes."""
    scores = np.where(known, probs, np.inf)  # unknown rows ranked last, then left out
    ranks = rankdata(scores, axis=-1)
    pos, neg = (truth & known).sum(-1), (~truth & known).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(truth & known, ranks, 0).sum(-1) - pos * (pos + 1) / 2) / (pos * neg)


def interval(samples: np.ndarray, value: float) -> dict[str, float | None]:
    """{value, lo, hi}: the figure and the 95% percentile interval of its bootstrap ``samples``."""
    ok = samples[~np.isnan(samples)]
    lo, hi = np.percentile(ok, [2.5, 97.5]) if len(ok) else (None, None)
    return {"value": _number(value), "lo": _number(lo), "hi": _number(hi)}


def _number(x) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def _figures(task: str, pred: np.ndarray, photos: Photos, idx: np.ndarray) -> dict[str, np.ndarray]:
    """name -> (1 + B,) the figure on all photos, then on each resample ``idx`` (B, N)."""
    every = np.vstack([np.arange(len(pred))[None], idx])  # (1 + B, N)
    if task == "segmentation":
        dice, iou = dice_iou(pred, photos.masks)
        return {"dice": dice[every].mean(-1), "iou": iou[every].mean(-1)}
    out = {}
    for j, name in enumerate(ATTRIBUTES):
        probs, labels = pred[:, j][every], photos.labels[:, j][every]
        known = ~np.isnan(labels)
        truth = labels > 0.5
        out[f"balanced_accuracy_{name}"] = balanced_accuracy(probs, truth, known)
        out[f"auc_{name}"] = auc(probs, truth, known)
    with warnings.catch_warnings():  # an attribute absent from a resample: NaN, left out of the mean
        warnings.simplefilter("ignore", RuntimeWarning)
        out["balanced_accuracy"] = np.nanmean([out[f"balanced_accuracy_{n}"] for n in ATTRIBUTES], axis=0)
        out["auc"] = np.nanmean([out[f"auc_{n}"] for n in ATTRIBUTES], axis=0)
    return out


def _row(figures: dict[str, np.ndarray], clean: dict[str, np.ndarray], relit: dict[str, np.ndarray] | None,
         headline: str) -> dict:
    """Each figure with its interval and its difference from clean's; for an enhanced re-lit row,
    the recovered fraction of the headline figure."""
    row = {name: interval(v[1:], v[0]) for name, v in figures.items()}
    row["delta_vs_clean"] = {name: interval(v[1:] - clean[name][1:], v[0] - clean[name][0])
                             for name, v in figures.items()}
    if relit is not None:
        with np.errstate(all="ignore"):
            cost = clean[headline] - relit[headline]
            frac = (figures[headline] - relit[headline]) / np.where(cost == 0, np.nan, cost)
        row["recovered"] = interval(frac[1:], frac[0])
    return row


# ----------------------------------------------------------------------------- the run


def score_task(model, task: str, photos: Photos, inputs: dict[str, dict[str, np.ndarray]],
               bootstrap: int, seed: int) -> list[dict]:
    """One row per (condition, method): its figures with intervals (see the module docstring)."""
    idx = np.random.default_rng(seed).integers(0, len(photos.keys), (bootstrap, len(photos.keys)))
    figures = {name: {m: _figures(task, predict(model, task, imgs), photos, idx) for m, imgs in by_method.items()}
               for name, by_method in inputs.items()}
    clean, headline, rows = figures["clean"][AS_IS], HEADLINE[task], []
    for condition, by_method in figures.items():
        for method, figs in by_method.items():
            relit_figs = by_method[AS_IS] if condition != "clean" and method != AS_IS else None
            rows.append({"condition": condition, "method": method,
                         "name": condition if method == AS_IS else f"{condition} -> {method}",
                         **_row(figs, clean, relit_figs, headline)})
    return rows


def make_inputs(photos: Photos, fns: dict[str, Callable], seed: int) -> tuple[dict, dict[str, float]]:
    """{condition: {method: photos (N, S, S, 3)}} and each method's ms per photo."""
    inputs, seconds = {}, dict.fromkeys(fns, 0.0)
    for condition, drawn in CONDITIONS.items():
        base = photos.images if drawn is None else np.stack(
            [relit(img, key, seed, *drawn) for key, img in zip(photos.keys, photos.images)])
        inputs[condition] = {}
        for method, fn in fns.items():
            started = time.perf_counter()
            inputs[condition][method] = np.stack([fn(img) for img in base])
            seconds[method] += time.perf_counter() - started
    n = len(photos.keys) * len(CONDITIONS)
    return inputs, {m: 1000.0 * s / n for m, s in seconds.items()}


def _load_task_models(uris: list[str], s3, device: str) -> list[tuple[str, str, object]]:
    loaded = []
    for uri in uris:
        found = checkpoint.load(uri, device=device, s3=s3)
        if not found.config.model.task:
            raise SkinrayError(f"--task-model {uri}: an enhancer, not a downstream model; train one with "
                               f"`skinray train --set model.task=attributes` (or segmentation)")
        loaded.append((found.config.model.task, uri, found))
    return loaded


def run(task_models: list[str], enhancers: list[str], data_uri: str, out: str, *, size: int = 128,
        limit: int = 1000, split: str = "test", seed: int = 1234, bootstrap: int = 1000,
        s3: storage.S3Options | None = None, masks: str | None = None, attributes: str | None = None,
        device: str = "cpu", precision: str = "auto") -> dict:
    """Score each downstream model on every (condition, method) row; write the report. Returns
    the metrics (also DIR/downstream.json)."""
    from skinray.evaluate import load_models

    if bootstrap < 10 or size < 16 or limit < 2:
        raise SkinrayError(f"evaluate: need --bootstrap >= 10, --size >= 16 and --limit >= 2, got "
                           f"{bootstrap}, {size} and {limit}")
    tasks = _load_task_models(task_models, s3, device)
    cfg = tasks[0][2].config
    photos = load_photos(data_uri, cfg, split, size, limit, s3, masks, attributes,
                         need_masks=any(t == "segmentation" for t, _, _ in tasks))
    loaded = [(label, enhancer) for label, _, enhancer in load_models(enhancers, s3, device, precision)]
    print(f"[skinray] downstream: {len(tasks)} task models on {len(photos.keys)} {split} photos at {size}x{size}, "
          f"{len(CONDITIONS)} conditions x {len(loaded) + 1 + (photos.skin is not None)} methods, "
          f"{bootstrap} bootstrap resamples", flush=True)
    inputs, ms = make_inputs(photos, methods(loaded, photos.skin), seed)
    metrics = {"data": data_uri, "split": split, "photos": len(photos.keys), "size": size, "seed": seed,
               "bootstrap": bootstrap, "enhancers": dict(zip([label for label, _ in loaded], enhancers)),
               "ms_per_photo": ms, "tasks": {}}
    for task, uri, found in tasks:
        if found.config.data.image_size != size:
            print(f"[skinray] note: {uri} was trained at {found.config.data.image_size} px, scored at {size}")
        metrics["tasks"][task] = {"model": uri, "trained_size": found.config.data.image_size,
                                  "rows": score_task(found.model, task, photos, inputs, bootstrap, seed)}
    return write_report(metrics, Path(out))


# ----------------------------------------------------------------------------- the report


def _cell(ci: dict | None, digits: int = 3, signed: bool = False) -> str:
    if not ci or ci.get("value") is None:
        return "n/a"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    if ci["lo"] is None:
        return fmt.format(ci["value"])
    return f"{fmt.format(ci['value'])} [{fmt.format(ci['lo'])}, {fmt.format(ci['hi'])}]"


def table_lines(task: str, rows: list[dict]) -> list[str]:
    """A Markdown table: one row per (condition, method)."""
    headline = HEADLINE[task]
    cols = ["dice", "iou"] if task == "segmentation" else ["balanced_accuracy", "auc"] + [
        f"balanced_accuracy_{n}" for n in ATTRIBUTES]
    head = ["row", *cols, f"{headline} - clean", "recovered"]
    lines = ["| " + " | ".join(h.replace("balanced_accuracy", "bal. acc.") for h in head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], *[_cell(r[c]) for c in cols], _cell(r["delta_vs_clean"][headline], signed=True),
                 _cell(r.get("recovered"), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def goal_lines(task: str, rows: list[dict]) -> list[str]:
    """The issue's goals, judged: re-lighting costs more than the interval; each enhancer recovers
    at least half of that cost; on clean photos it costs at most 0.01."""
    headline, out = HEADLINE[task], []
    by_name = {r["name"]: r for r in rows}
    for condition in [c for c in CONDITIONS if c != "clean"]:
        cost = by_name[condition]["delta_vs_clean"][headline]
        measurable = cost["hi"] is not None and cost["hi"] < 0
        out.append(f"- {condition} costs {_cell(cost, signed=True)} {headline}: "
                   + ("measurable" if measurable else "within the bootstrap interval (not measurable)"))
        for r in rows:
            if r["condition"] == condition and r["method"] != AS_IS and measurable:
                rec = r["recovered"]
                ok = rec["value"] is not None and rec["value"] >= 0.5
                out.append(f"  - {r['method']} recovers {_cell(rec, 2)} of it: "
                           f"{'met' if ok else 'not met'} (goal >= 0.5)")
    for r in rows:
        if r["condition"] == "clean" and r["method"] != AS_IS:
            delta = r["delta_vs_clean"][headline]
            ok = delta["value"] is not None and delta["value"] >= -0.01
            out.append(f"- clean -> {r['method']}: {_cell(delta, signed=True)} {headline}: "
                       f"{'met' if ok else 'not met'} (goal: costs at most 0.01)")
    return out


def plot(metrics: dict, path: Path) -> Path:
    """Each task's headline figure per row with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(metrics["tasks"].items())
    n_rows = max(len(t["rows"]) for _, t in tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 0.32 * n_rows + 1.2), dpi=100, squeeze=False)
    for ax, (task, found) in zip(axes[0], tasks):
        rows, key = found["rows"], HEADLINE[task]
        values = [r[key]["value"] if r[key]["value"] is not None else np.nan for r in rows]
        lo = [v - (r[key]["lo"] if r[key]["lo"] is not None else v) for v, r in zip(values, rows)]
        hi = [(r[key]["hi"] if r[key]["hi"] is not None else v) - v for v, r in zip(values, rows)]
        y = np.arange(len(rows))[::-1]
        ax.errorbar(values, y, xerr=[lo, hi], fmt="o", capsize=3)
        ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
        ax.axvline(rows[0][key]["value"] or 0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(f"{key.replace('_', ' ')} (95% bootstrap interval)")
        ax.set_title(f"{task}: {found['model']}", fontsize=8)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(metrics: dict, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics["figure"] = str(plot(metrics, out_dir / "downstream.png"))
    lines = ["# Downstream tasks: does enhancement help diagnosis?", "",
             f"{metrics['photos']} {metrics['split']} photos of {metrics['data']} at {metrics['size']} px; "
             f"intervals: 95% percentile bootstrap over photos ({metrics['bootstrap']} resamples, paired across rows); "
             f"re-lit under held-out draws (seed {metrics['seed']}). "
             f"`recovered`: (enhanced - re-lit) / (clean - re-lit).",
             "", "![each row's figure with its interval](downstream.png)", ""]
    for task, found in metrics["tasks"].items():
        lines += [f"## {task} ({found['model']}, trained at {found['trained_size']} px)", "",
                  *table_lines(task, found["rows"]), "", "Goals:", "", *goal_lines(task, found["rows"]), ""]
    speed = ", ".join(f"{m} {v:.1f}" for m, v in metrics["ms_per_photo"].items())
    lines += [f"ms per photo of each method: {speed}", ""]
    (out_dir / "downstream.md").write_text("\n".join(lines))
    (out_dir / "downstream.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def printed_lines(metrics: dict) -> list[str]:
    """The CLI's lines: each task's rows, headline figure with its interval and the recovered fraction."""
    out = []
    for task, found in metrics["tasks"].items():
        key = HEADLINE[task]
        for r in found["rows"]:
            rec = f"  recovered {_cell(r['recovered'], 2)}" if "recovered" in r else ""
            out.append(f"[skinray] {task:<12} {r['name']:<60} {key} {_cell(r[key])}"
                       f"  vs clean {_cell(r['delta_vs_clean'][key], signed=True)}{rec}")
    return out
