"""Photo triage against known truth (issue 22, item 4): held-out photos, real or synthetic, each
seen clean and degraded by drawn faults (the v3 light: a black-body illuminant and tint, an
exposure error; plus down-up blur, noise and JPEG), assessed through the model's one Enhancer.

Figures:
- ROC AUC of retake for "unusable" (truth: down-up blur factor >= 2.5, or >= 5% of the clean
  photo's skin clipped in the degraded one): the score is the largest measurement over its
  threshold (blur_factor, clipped_high, clipped_low, noise), so AUC does not hang on one cut; also
  the verdict's own true/false positive rates;
- the light error in mired: absolute (estimate against the drawn light) and relative (the
  estimate's shift from the clean photo's estimate against the drawn shift), median and p90, on
  the usable photos with a cast;
- the exposure error in EV: |ev applied + ev drawn| on the usable photos with an exposure error;
- the share of the clean photos judged good, and good or corrected with change < 1 CIEDE2000;
- the cost: assessing against enhancing, ms per photo, one thread.

    .venv/bin/python benchmarks/assess_validation.py /work/isic/data512/test --limit 200
    .venv/bin/python benchmarks/assess_validation.py --synthetic 100 --size 256
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_result  # noqa: E402

from skinray import assess, baselines, degrade, synth  # noqa: E402
from skinray.config import AssessConfig  # noqa: E402

BLURS = (1.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)  # drawn uniformly from these


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def draw(rng: np.random.Generator) -> dict:
    """One photo's faults: light uniform in mired (2500-10000 K), tint +-0.03, exposure +-1.5 EV
    on half, blur from BLURS, noise sigma 0-0.05 on a third, JPEG 20-90 on a third."""
    mired = rng.uniform(1e6 / 10000, 1e6 / 2500)
    return {"kelvin": 1e6 / mired, "tint": float(rng.uniform(-0.03, 0.03)),
            "ev": float(rng.uniform(-1.5, 1.5)) if rng.random() < 0.5 else 0.0,
            "blur": float(rng.choice(BLURS)), "noise": float(rng.uniform(0, 0.05)) if rng.random() < 1 / 3 else 0.0,
            "jpeg": int(rng.integers(20, 91)) if rng.random() < 1 / 3 else 0}


def degraded(clean: np.ndarray, d: dict, seed: int) -> np.ndarray:
    img = degrade.relight(clean.astype(np.float32) / 255.0, d["kelvin"], d["tint"], d["ev"])
    img = degrade.down_up(img, d["blur"])
    if d["noise"]:
        img = degrade.add_noise(img, d["noise"], seed)
    if d["jpeg"]:
        img = degrade.jpeg(img, d["jpeg"])
    return _u8(img)


def clipped_share(clean: np.ndarray, photo: np.ndarray) -> float:
    """Share of the clean photo's skin clipped (two channels >= 254, or all <= 3) in ``photo`` and not in it."""
    skin = baselines.skin_pixels(clean)
    if not skin.any():
        return 0.0

    def clip(a):
        return (np.sort(a, axis=-1)[..., 1] >= 254) | (a.max(axis=-1) <= 3)
    return float((clip(photo) & ~clip(clean) & skin).sum() / skin.sum())


def retake_score(a: assess.Assessment, cfg: AssessConfig) -> float:
    if "too-small" in a.reasons:
        return float("inf")
    return max(a.blur_factor / cfg.blur_factor, a.clipped_high / cfg.clipped, a.clipped_low / cfg.clipped,
               a.noise / cfg.noise)


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mann-Whitney U: the chance that an unusable photo scores above a usable one (ties half)."""
    pos, neg = scores[truth], scores[~truth]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def photos(args) -> list[tuple[str, np.ndarray]]:
    if args.synthetic:
        return [(f"synth-{i}", synth.skin_image(1234, i, args.size or 256)) for i in range(args.synthetic)]
    files = sorted(f for f in glob.glob(os.path.join(args.folder, "**", "*"), recursive=True)
                   if f.lower().endswith((".jpg", ".jpeg", ".png")) and "segmentation" not in f)[:args.limit]
    out = []
    for f in files:
        img = Image.open(f).convert("RGB")
        if args.size:
            img.thumbnail((args.size, args.size), Image.Resampling.LANCZOS)
        out.append((os.path.basename(f), np.asarray(img)))
    return out


def _timed(fn, *a):
    started = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - started


def evaluate(enhancer, items, cfg: AssessConfig, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rec = {k: [] for k in ("score", "unusable", "retake", "mired_abs", "mired_rel", "ev_err", "clean_verdict",
                           "clean_change", "t_enhance", "t_assess")}
    for i, (_, clean) in enumerate(items):
        (out,), t_enh = _timed(enhancer.enhance_batch, [clean])
        (fix,) = enhancer.corrections([clean])
        a_clean, t_ass = _timed(assess.assess, clean, out, fix, cfg)
        rec["t_enhance"].append(t_enh)
        rec["t_assess"].append(t_ass)
        rec["clean_verdict"].append(a_clean.verdict)
        rec["clean_change"].append(a_clean.change_mean)
        d = draw(rng)
        photo = degraded(clean, d, seed * 100000 + i)
        (_, [a]) = assess.assess_batch(enhancer, [photo], cfg)
        unusable = d["blur"] >= 2.5 or clipped_share(clean, photo) >= 0.05
        rec["score"].append(retake_score(a, cfg))
        rec["unusable"].append(unusable)
        rec["retake"].append(a.verdict == "retake")
        if not unusable:
            drawn = 1e6 / d["kelvin"]
            rec["mired_abs"].append(abs(1e6 / a.kelvin - drawn))
            rec["mired_rel"].append(abs((1e6 / a.kelvin - 1e6 / a_clean.kelvin) - (drawn - 1e6 / 6500)))
            if d["ev"]:
                rec["ev_err"].append(abs(a.ev + d["ev"]))
    return rec


def figures(rec: dict) -> dict:
    score, truth, retake = (np.array(rec[k]) for k in ("score", "unusable", "retake"))
    verdicts, change = np.array(rec["clean_verdict"]), np.array(rec["clean_change"])

    def q(name, p):
        return float(np.percentile(rec[name], p)) if rec[name] else float("nan")
    return {"photos": len(score), "unusable": int(truth.sum()), "retake_auc": roc_auc(score, truth),
            "retake_tpr": float(retake[truth].mean()) if truth.any() else float("nan"),
            "retake_fpr": float(retake[~truth].mean()) if (~truth).any() else float("nan"),
            "light_mired_abs_median": q("mired_abs", 50), "light_mired_abs_p90": q("mired_abs", 90),
            "light_mired_rel_median": q("mired_rel", 50), "light_mired_rel_p90": q("mired_rel", 90),
            "exposure_ev_median": q("ev_err", 50), "exposure_ev_p90": q("ev_err", 90),
            "clean_good": float((verdicts == "good").mean()),
            "clean_good_or_small_change": float(((verdicts == "good")
                                                 | ((verdicts == "corrected") & (change < 1))).mean()),
            "clean_retake": float((verdicts == "retake").mean()),
            "enhance_ms": 1000 * float(np.median(rec["t_enhance"])),
            "assess_ms": 1000 * float(np.median(rec["t_assess"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", help="held-out good photos (e.g. /work/isic/data512/test)")
    parser.add_argument("--synthetic", type=int, default=0, help="use this many synthetic photos instead")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--size", type=int, default=0, help="longer side to scale photos to (0: as they are)")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.folder and not args.synthetic:
        parser.error("give a FOLDER of good photos or --synthetic N")
    import torch

    from skinray.predict import Enhancer

    torch.set_num_threads(1)
    enhancer = Enhancer.from_checkpoint(args.model, "cpu")
    items = photos(args)
    result = figures(evaluate(enhancer, items, AssessConfig(), args.seed))
    for name, value in result.items():
        print(f"{name:28s} {value:.4g}" if isinstance(value, float) else f"{name:28s} {value}")
    write_result("assess_validation", result, params={**vars(args), "model_id": enhancer.model_id})


if __name__ == "__main__":
    main()
