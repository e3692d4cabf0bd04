"""`skinray evaluate`: the models against classical colour correction and two oracles, per subset.

    skinray evaluate --model RUN [--model RUN2 ...] --data DATA [--out DIR] [--size 256]
        [--limit 100] [--split val|test|train|all] [--masks DIR] [--seed 1234]
        [--degrade default|poster] [--photos FOLDER]

Held-out set: the validation split of DATA as the (first) model's config defines it (never
trained on), another split (``test``: a manifest's, or a ``test/`` folder's), or every image with
``--split all``; each image resized to ``--size``. Each image is
evaluated three times, once per subset, with a draw that is a pure function of (``--seed``,
subset, key), so every run, method and model sees the same inputs:

* ``colour``: colour faults (the jitter always; white balance and exposure as drawn) and camera
  faults as drawn;
* ``camera``: no colour fault, the down-up blur always, JPEG and noise as drawn;
* ``clean``: the clean photo itself ("do no harm": the output is compared with its own input).

The degradations are :class:`DegradeConfig`'s defaults (``--degrade default``) or the poster's
(``--degrade poster``, :data:`POSTER_DEGRADE`). Methods: the degraded input itself, Gray World,
Shades of Gray (p = 6), CLAHE on lightness, Shades of Gray towards the training photos' mean
colour (with the val split), and each model. Oracles, fitted per image with the clean photo
known (bounds, not methods: never timed, never "best classical"): the least-squares 3x4 colour
transform and the least-squares 3-D lookup table (17^3, trilinear, applied with
:func:`skinray.lut.apply_lut`). Metrics: PSNR, SSIM, MS-SSIM (when the size allows), mean
CIEDE2000, ms per image; per subset, overall (mean of the subsets), and each model's recovered
fraction = (model - degraded) / (oracle - degraded) in PSNR dB. ``--photos``: a folder without
ground truth, enhanced by the first model, with no-reference statistics before and after.

Real photos (:mod:`skinray.harm`): each image is also scored as a good photo as it is (harm:
CIEDE2000, ITA shift, lesion-to-skin contrast where a mask ``<id>_segmentation.png`` is found
beside it or in ``--masks``) and re-lit by a real-world cast (the v3 light, a draw never trained
on), per ITA band, with Shades of Gray with a skin prior and a von Kries oracle among the rows.
The skin references (Shades of Gray towards the skin reference, and with the skin prior) come
from up to 50 photos of the train split, or of the scored photos themselves when there is none.

Writes DIR/metrics.json, DIR/report.md and PNG figures (loss curves, a validation grid, a
before/after grid, a contact sheet of the worst photos per model).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch

from skinray import baselines, colour, degrade, harm, images, ingest, lut, storage, viz
from skinray.config import POSTER_DEGRADE, Config, DegradeConfig
from skinray.errors import SkinrayError
from skinray.metrics import psnr, ssim_per_image
from skinray.predict import one_torch_thread

MS_SSIM_MIN_SIDE = 161  # pytorch_msssim's 5 scales with an 11-pixel window need a side > 160
CLASSICAL = ("gray_world", "shades_of_gray", "clahe")
METRICS = ("psnr", "ssim", "ms_ssim", "ciede2000")
SUBSETS = degrade.SUBSETS  # ("colour", "camera", "clean")
SUBSET_TITLES = {"colour": "Colour faults (jitter always; white balance, exposure and camera faults as drawn)",
                 "camera": "Camera faults only (down-up blur always; JPEG and noise as drawn)",
                 "clean": "Clean photos (input = the clean photo)"}
DEGRADE_PRESETS = {"default": DegradeConfig(), "poster": POSTER_DEGRADE}
ORACLE_3X4 = "oracle: 3x4 colour transform"
ORACLE_LUT = "oracle: 3-D LUT 17^3"
ORACLES = (ORACLE_3X4, ORACLE_LUT)
SKIN_PRIOR = "shades_of_gray (skin prior)"
SPLITS = ("val", "test", "train", "all")
REFERENCE_PHOTOS = 50  # at most this many photos define the skin references
LUT_SIZE = 17
LUT_RIDGE = 1e-3  # pull of each lattice node towards the 3x4 table, in units of (pixel weight)^2
ORACLE_FITS = {ORACLE_3X4: "least squares of clean on [degraded, 1], clipped to [0, 1]",
               ORACLE_LUT: f"least squares over the trilinear weights of a {LUT_SIZE}^3 table, ridge {LUT_RIDGE} "
                           "towards the 3x4 table, applied with skinray.lut.apply_lut, clipped to [0, 1]"}
RECOVERY_MIN_DB = 0.5  # a recovered fraction needs an oracle gain of at least this much
GRID_IMAGES = 2  # validation grid: the first images, each as colour / camera / clean input


@dataclass
class Method:
    name: str
    kind: str  # input | classical | model
    fn: Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 -> same
    short: str = ""  # column label in the figures

    def __post_init__(self) -> None:
        self.short = self.short or self.name


@dataclass
class Scores:
    """Per-image scores by subset and row name (methods and oracles), seconds per method."""

    rows: dict[str, dict[str, list[dict]]]
    seconds: dict[str, float]
    fallbacks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ORACLES, 0))  # see oracle_outputs
    grid: list[list[np.ndarray]] = field(default_factory=list)
    real: list[dict] = field(default_factory=list)  # per photo: harm.record (good photos, real-world casts)


@dataclass
class HeldOut:
    """The photos to score (key, uint8 at size x size), their lesion masks (bool, or None) by key,
    and the references of the skin-reference and skin-prior baselines (None without photos)."""

    samples: list[tuple[str, np.ndarray]]
    masks: dict[str, np.ndarray | None]
    reference: np.ndarray | None = None  # baselines.reference_illuminant
    skin: baselines.SkinReference | None = None
    source: str = ""  # where the references come from, in words


def manifest_rows(data_uri: str, cfg: Config, s3: storage.S3Options | None, masks: str | None = None) -> list[dict]:
    """The manifest's rows, split as ``cfg`` (the first model's config) splits; a folder's manifest
    is built with its lesion masks (``masks``: a folder of them; they are also looked for beside
    the photos, :mod:`skinray.ground_truth`)."""
    cfg = cfg.replace({"data.source": data_uri})
    if data_uri.endswith(".parquet"):
        return ingest.read_manifest(data_uri, s3).table.to_pylist()
    return ingest.build_manifest(data_uri, cfg.data.val_fraction, cfg.data.seed, s3, masks=masks,
                                 test_fraction=cfg.data.test_fraction, split_by=cfg.data.split_by).table.to_pylist()


def split_rows(rows: list[dict], split: str, limit: int) -> list[dict]:
    """The rows of one split ("train", "val", "test" or "all"), by key, at most ``limit``."""
    return sorted((r for r in rows if split == "all" or r["split"] == split), key=lambda r: r["key"])[:limit]


def _image(row: dict, size: int, s3: storage.S3Options | None) -> np.ndarray:
    return images.resize_square(images.decode(storage.read_bytes(row["uri"], s3)), size)


def load_split(data_uri: str, cfg: Config, size: int, limit: int, split: str,
               s3: storage.S3Options | None) -> list[tuple[str, np.ndarray]]:
    """(key, clean uint8 image at size x size) of one split ("train", "val", "test" or "all"), by key."""
    return [(r["key"], _image(r, size, s3)) for r in split_rows(manifest_rows(data_uri, cfg, s3), split, limit)]




def score(out: np.ndarray, ref: np.ndarray, ref_lab: np.ndarray | None = None) -> dict[str, float]:
    """PSNR (dB, capped at 100), SSIM, MS-SSIM (None when too small), mean CIEDE2000.
    ``ref_lab``: ``colour.srgb_to_lab(ref)`` when the caller already has it."""
    from pytorch_msssim import ms_ssim

    big = min(out.shape[:2]) >= MS_SSIM_MIN_SIDE
    if np.array_equal(out, ref):  # what every metric gives for identical images, without the arithmetic
        return {"psnr": 100.0, "ssim": 1.0, "ms_ssim": 1.0 if big else None, "ciede2000": 0.0}
    x = torch.tensor(out).permute(2, 0, 1)[None].float() / 255.0
    y = torch.tensor(ref).permute(2, 0, 1)[None].float() / 255.0
    ref_lab = colour.srgb_to_lab(ref) if ref_lab is None else ref_lab
    with one_torch_thread():  # on busy cores small convolutions run faster so
        result = {"psnr": float(psnr(x, y).clamp(max=100)), "ssim": float(ssim_per_image(x, y)), "ms_ssim": None,
                  "ciede2000": float(np.mean(colour.ciede2000(colour.srgb_to_lab(out), ref_lab)))}
        if big:
            result["ms_ssim"] = float(ms_ssim(x, y, data_range=1.0))
    return result


def _mean(rows: list[dict]) -> dict[str, float | None]:
    return {k: (None if rows[0][k] is None else float(np.mean([r[k] for r in rows]))) for k in METRICS}


# ----------------------------------------------------------------------------- oracles


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (values outside are clipped) -> uint8, rounded."""
    return np.clip(np.asarray(img, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _with_one(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)


def fit_affine(degraded: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The least-squares 3x4 colour transform (as a (4, 3) matrix A, colours in [0, 1]):
    clean ~ [degraded, 1] @ A over all pixels, solved by the normal equations."""
    x = _with_one(degraded.reshape(-1, 3) / 255.0)
    y = clean.reshape(-1, 3) / 255.0
    return np.linalg.lstsq(x.T @ x, x.T @ y, rcond=None)[0]


def apply_affine(degraded: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``[degraded, 1] @ affine``, clipped to [0, 1], as uint8."""
    return to_uint8(_with_one(degraded.reshape(-1, 3) / 255.0) @ affine).reshape(degraded.shape)


_CORNERS = np.array([(b, g, r) for b in (0, 1) for g in (0, 1) for r in (0, 1)])  # cube corners, [b, g, r]


def lattice_colours(size: int) -> np.ndarray:
    """(size^3, 3) RGB of the lattice points in the flat order of a table's [b, g, r] axes."""
    axis = np.linspace(0.0, 1.0, size)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)


def lattice_weights(rgb: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear interpolation of colours ``rgb`` (P, 3) in [0, 1] on a size^3 lattice, as
    :func:`skinray.lut.apply_lut` does it: flat node indices (P, 8) into a table flattened from
    its [b, g, r] axes, and their weights (P, 8), which sum to 1 per colour."""
    pos = np.clip(rgb, 0.0, 1.0) * (size - 1)
    low = np.clip(np.floor(pos), 0, size - 2).astype(np.int64)
    frac = pos - low
    base = (low[:, 2] * size + low[:, 1]) * size + low[:, 0]
    offsets = (_CORNERS[:, 0] * size + _CORNERS[:, 1]) * size + _CORNERS[:, 2]
    sides = np.stack([1.0 - frac, frac])  # (2, P, 3): weight of the low / high side of each axis
    weights = sides[_CORNERS[:, 0], :, 2] * sides[_CORNERS[:, 1], :, 1] * sides[_CORNERS[:, 2], :, 0]
    return base[:, None] + offsets, weights.T


def _distinct_colours(degraded: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct input colours (U, 3) in [0, 1], their pixel counts (U,) and target sums (U, 3)."""
    flat = degraded.reshape(-1, 3).astype(np.int64)
    keys, inverse, counts = np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2],
                                      return_inverse=True, return_counts=True)
    target = clean.reshape(-1, 3) / 255.0
    sums = np.stack([np.bincount(inverse.ravel(), target[:, c], minlength=len(keys)) for c in range(3)], axis=1)
    return np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1) / 255.0, counts, sums


def fit_lut(degraded: np.ndarray, clean: np.ndarray, affine: np.ndarray, size: int = LUT_SIZE,
            ridge: float = LUT_RIDGE) -> np.ndarray:
    """The least-squares 3-D table (3, size, size, size), indexed [c, b, g, r], that maps
    ``degraded`` to ``clean`` under trilinear interpolation, with a small ridge pulling every node
    towards the table of ``affine`` (the 3x4 transform, which a table represents exactly): nodes
    no pixel touches keep it, and the fit's squared error is never above the 3x4 transform's.
    Pixels of one input colour share their weights, so the normal equations are summed over
    distinct colours (count-weighted); a sparse direct solve over the nodes in use."""
    colours, counts, sums = _distinct_colours(degraded, clean)
    nodes, weights = lattice_weights(colours, size)
    table = _with_one(lattice_colours(size)) @ affine  # (size^3, 3): the 3x4 transform as a table
    used = np.flatnonzero(np.bincount(nodes.ravel(), minlength=size ** 3))
    index = np.zeros(size ** 3, np.int64)
    index[used] = np.arange(len(used))
    indptr = np.arange(0, weights.size + 1, 8)
    shape = (len(colours), len(used))
    w = sparse.csr_matrix((weights.ravel(), index[nodes].ravel(), indptr), shape=shape)
    counted = sparse.csr_matrix(((weights * counts[:, None]).ravel(), index[nodes].ravel(), indptr), shape=shape)
    gram = (w.T @ counted + ridge * sparse.identity(len(used))).tocsc()
    solved = sparse_linalg.spsolve(gram, w.T @ sums + ridge * table[used])
    table[used] = np.asarray(solved).reshape(len(used), 3)
    return np.ascontiguousarray(table.T.reshape(3, size, size, size))


def apply_table(degraded: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map a uint8 image through a (3, D, D, D) table with :func:`skinray.lut.apply_lut` (float64),
    clipped to [0, 1], as uint8."""
    x = torch.from_numpy(np.ascontiguousarray(degraded)).permute(2, 0, 1)[None].double() / 255.0
    out = lut.apply_lut(x, torch.from_numpy(table)[None].double())
    return to_uint8(out[0].permute(1, 2, 0).numpy())


def _squared_error(out: np.ndarray, ref: np.ndarray) -> int:
    return int(np.sum((out.astype(np.int64) - ref) ** 2))


def oracle_outputs(degraded: np.ndarray, clean: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
    """Both oracles' outputs, fitted with ``clean`` known, and which fell back. Each oracle is the
    best 8-bit output among what it may represent: the 3x4 row takes the input itself (the identity
    is a 3x4 transform) and the LUT row the 3x4 output (a table represents it exactly) when
    rounding to 8 bits leaves the fit behind them; so LUT >= 3x4 >= degraded input, per image."""
    if np.array_equal(degraded, clean):  # the identity is exact; both fits would return it
        return {ORACLE_3X4: clean.copy(), ORACLE_LUT: clean.copy()}, {ORACLE_3X4: False, ORACLE_LUT: False}
    affine = fit_affine(degraded, clean)
    by_affine = apply_affine(degraded, affine)
    identity = _squared_error(by_affine, clean) > _squared_error(degraded, clean)
    by_affine = degraded.copy() if identity else by_affine
    by_table = apply_table(degraded, fit_lut(degraded, clean, affine))
    to_affine = _squared_error(by_table, clean) > _squared_error(by_affine, clean)
    outputs = {ORACLE_3X4: by_affine, ORACLE_LUT: by_affine if to_affine else by_table}
    return outputs, {ORACLE_3X4: bool(identity), ORACLE_LUT: bool(to_affine)}


# ----------------------------------------------------------------------------- scoring


def load_models(models: list[str], s3: storage.S3Options | None, device: str = "cpu",
                precision: str = "auto") -> list[tuple[str, str, object]]:
    """(label, uri, Enhancer) per checkpoint, labels unique."""
    from skinray.predict import Enhancer

    loaded: list[tuple[str, str, object]] = []
    for uri in models:
        enhancer = Enhancer.from_checkpoint(uri, device=device, s3=s3, precision=precision)
        cfg = enhancer.loaded.config
        label = f"model {cfg.model.arch} ({cfg.train.name})"
        if any(name == label for name, _, _ in loaded):
            label = f"{label} [{uri}]"
        loaded.append((label, uri, enhancer))
    return loaded


def methods_for(loaded: list[tuple[str, str, object]], reference: np.ndarray | None = None,
                skin: baselines.SkinReference | None = None) -> list[Method]:
    """The degraded input, the classical baselines (with the skin-reference Shades of Gray when
    ``reference`` is given, Shades of Gray with a skin prior when ``skin`` is), then the models,
    in that order."""
    found = [Method("degraded input", "input", lambda img: img, "input")]
    found += [Method(name, "classical", baselines.BASELINES[name], short)
              for name, short in zip(CLASSICAL, ("gray world", "SoG", "CLAHE"))]
    if reference is not None:  # Shades of Gray towards the training photos' own colour, not towards grey
        found.append(Method("shades_of_gray (skin reference)", "classical",
                            lambda img: baselines.shades_of_gray(img, 6.0, target=reference), "SoG skin"))
    if skin is not None:  # estimated on the skin pixels, towards the reference photos' skin chromaticity
        found.append(Method(SKIN_PRIOR, "classical", lambda img: baselines.shades_of_gray_skin(img, skin), "SoG prior"))
    found += [Method(label, "model", enhancer.enhance, enhancer.loaded.config.model.arch)
              for label, _, enhancer in loaded]
    return found


def degraded_input(clean: np.ndarray, key: str, subset: str, cfg: DegradeConfig, seed: int) -> np.ndarray:
    """The one fixed degraded version of an image for a subset."""
    drawn = degrade.sample(degrade.key_rng(seed, f"{subset}:{key}"), cfg, subset=subset)
    return degrade.apply_uint8(clean, drawn)


def _outputs(methods: list[Method], degraded: np.ndarray, clean: np.ndarray, scores: Scores) -> dict:
    """Every method's output (timed) and the oracles' (not timed), by row name."""
    outputs = {}
    for m in methods:
        started = time.perf_counter()
        outputs[m.name] = m.fn(degraded)
        scores.seconds[m.name] += time.perf_counter() - started
    oracles, fell_back = oracle_outputs(degraded, clean)
    for name, flag in fell_back.items():
        scores.fallbacks[name] += flag
    return {**outputs, **oracles}


def score_all(samples: list[tuple[str, np.ndarray]], methods: list[Method], cfg: DegradeConfig,
              seed: int, masks: dict[str, np.ndarray | None] | None = None) -> Scores:
    """Run and score every method and oracle on every image of every subset, and on the photo as
    it is and re-lit by a real-world cast (:mod:`skinray.harm`; ``masks``: lesion masks by key),
    on one torch thread (ms/image per thread, over the subsets; on a busy machine two contending
    threads made small models ~20x slower)."""
    names = [m.name for m in methods] + list(ORACLES)
    scores = Scores({s: {n: [] for n in names} for s in SUBSETS}, {m.name: 0.0 for m in methods})
    with one_torch_thread():  # on busy cores small convolutions run faster so
        for i, (key, clean) in enumerate(samples):
            as_is = _score_image(key, clean, methods, cfg, seed, scores, grid=i < GRID_IMAGES)
            _score_real(harm.describe(key, clean, (masks or {}).get(key)), methods, as_is, seed, scores)
            if (i + 1) % 20 == 0 and i + 1 < len(samples):
                print(f"[skinray] evaluated {i + 1}/{len(samples)} images (x{len(SUBSETS)} subsets)", flush=True)
    return scores


def _score_image(key: str, clean: np.ndarray, methods: list[Method], cfg: DegradeConfig, seed: int,
                 scores: Scores, grid: bool) -> dict[str, np.ndarray]:
    """Score one image's three subsets; returns the outputs of the clean subset (the photo as it is)."""
    clean_lab = colour.srgb_to_lab(clean)
    for subset in SUBSETS:
        outputs = _outputs(methods, degraded_input(clean, key, subset, cfg, seed), clean, scores)
        for name, out in outputs.items():
            scores.rows[subset][name].append(score(out, clean, clean_lab))
        if grid:
            scores.grid.append([clean, *outputs.values()])
    return outputs


def _score_real(photo: harm.Photo, methods: list[Method], as_is: dict[str, np.ndarray], seed: int,
                scores: Scores) -> None:
    """The photo as it is (every method's output ``as_is``, from the clean subset, against it) and
    re-lit by its real-world cast (every method's and oracle's output against the good photo, not timed)."""
    good = {m.name: harm.good_row(as_is[m.name], photo) for m in methods if m.kind != "input"}
    light = harm.cast_draw(photo.img, photo.key, seed)
    cast = degrade.apply_uint8(photo.img, light)
    outputs = {m.name: m.fn(cast) for m in methods}
    outputs[harm.ORACLE_VON_KRIES] = harm.von_kries_oracle(cast, photo.img)
    outputs.update(oracle_outputs(cast, photo.img)[0])
    errors = {name: harm.cast_error(out, photo) for name, out in outputs.items()}
    dark = harm.darker(photo)
    darker = {m.name: harm.good_row(m.fn(dark.img), dark) for m in methods if m.kind != "input"}
    scores.real.append(harm.record(photo, good, errors, light, darker))


def _fraction(model_db: float, degraded_db: float, oracle_db: float) -> float | None:
    gap = oracle_db - degraded_db
    return None if gap < RECOVERY_MIN_DB else (model_db - degraded_db) / gap


def tables(scores: Scores, methods: list[Method], n_images: int) -> dict:
    """metrics.json's tables: restoration (overall = mean of the subsets, with ms/image),
    subsets, oracles, recovered_fraction and do_no_harm (from the clean subset)."""
    per_subset = {s: {n: _mean(rows) for n, rows in scores.rows[s].items()} for s in SUBSETS}
    overall = {n: _mean([per_subset[s][n] for s in SUBSETS]) for n in per_subset[SUBSETS[0]]}
    calls = len(SUBSETS) * n_images
    restoration = {m.name: {"kind": m.kind, **overall[m.name], "ms_per_image": 1000 * scores.seconds[m.name] / calls}
                   for m in methods}
    subsets = {s: {m.name: {"kind": m.kind, **per_subset[s][m.name]} for m in methods} for s in SUBSETS}
    oracles = {o: {"kind": "oracle", "overall": overall[o], **{s: per_subset[s][o] for s in SUBSETS}}
               for o in ORACLES}
    oracles[ORACLE_3X4].update(fit=ORACLE_FITS[ORACLE_3X4], fallbacks_to_identity=scores.fallbacks[ORACLE_3X4])
    oracles[ORACLE_LUT].update(fit=ORACLE_FITS[ORACLE_LUT], fallbacks_to_3x4=scores.fallbacks[ORACLE_LUT])
    degraded = {s: subsets[s]["degraded input"]["psnr"] for s in SUBSETS}
    recovered = {m.name: {s: {key: _fraction(subsets[s][m.name]["psnr"], degraded[s], oracles[o][s]["psnr"])
                              for key, o in (("oracle_3x4", ORACLE_3X4), ("oracle_lut", ORACLE_LUT))}
                          for s in SUBSETS}
                 for m in methods if m.kind == "model"}
    no_harm = {n: {k: row[k] for k in ("psnr", "ciede2000")} for n, row in subsets["clean"].items()}
    return {"restoration": restoration, "subsets": subsets, "oracles": oracles, "recovered_fraction": recovered,
            "do_no_harm": no_harm}


def _summary(m: dict) -> dict:
    table, subsets, harm = m["restoration"], m["subsets"], m["do_no_harm"]
    classical = [n for n in table if table[n]["kind"] == "classical"]
    best_classical = max(classical, key=lambda n: table[n]["psnr"])
    models = {}
    for n in (n for n in table if table[n]["kind"] == "model"):
        gains = {s: subsets[s][n]["psnr"] - subsets[s]["degraded input"]["psnr"] for s in SUBSETS}
        models[n] = {
            "gain_over_degraded_db": table[n]["psnr"] - table["degraded input"]["psnr"],
            "gain_over_best_classical_db": table[n]["psnr"] - table[best_classical]["psnr"],
            "gain_over_degraded_db_by_subset": gains, "gain_on_camera_db": gains["camera"],
            "recovered_fraction_colour": m["recovered_fraction"][n]["colour"]["oracle_3x4"],
            "recovered_fraction_colour_lut": m["recovered_fraction"][n]["colour"]["oracle_lut"],
            "unchanged_photo_psnr_db": harm[n]["psnr"], "unchanged_photo_ciede2000": harm[n]["ciede2000"],
            "beats_every_classical_on_every_subset": all(
                subsets[s][n]["psnr"] > subsets[s][c]["psnr"] for s in SUBSETS for c in classical),
        }
    return {"best_classical": best_classical, "models": models}


def _check_args(models: list[str], size: int, limit: int, split: str, degrade_preset: str) -> None:
    if not models:
        raise SkinrayError("evaluate: give at least one --model")
    if size < 16 or limit < 1:
        raise SkinrayError(f"evaluate: need --size >= 16 and --limit >= 1, got {size} and {limit}")
    if split not in SPLITS:
        raise SkinrayError(f"evaluate: --split must be one of {', '.join(SPLITS)}, got {split!r}")
    if degrade_preset not in DEGRADE_PRESETS:
        raise SkinrayError(f"evaluate: --degrade must be one of {sorted(DEGRADE_PRESETS)}, got {degrade_preset!r}")


def run(models: list[str], data_uri: str, out: str, size: int = 256, limit: int = 100, split: str = "val",
        seed: int = 1234, photos: str | None = None, s3: storage.S3Options | None = None,
        degrade_preset: str = "default", device: str = "cpu", precision: str = "auto",
        masks: str | None = None) -> dict:
    _check_args(models, size, limit, split, degrade_preset)
    loaded = load_models(models, s3, device=device, precision=precision)
    held = held_out(data_uri, loaded[0][2].loaded.config, size, limit, split, s3, masks)
    methods = methods_for(loaded, held.reference, held.skin)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = DEGRADE_PRESETS[degrade_preset]  # fixed for every model compared
    with_mask = sum(m is not None for m in held.masks.values())
    print(f"[skinray] evaluating {len(methods)} methods and {len(ORACLES)} oracles on {len(held.samples)} held-out "
          f"images x {len(SUBSETS)} subsets at {size}x{size} ({degrade_preset} degradations), and on the photos "
          f"as they are and re-lit ({with_mask} with a lesion mask)", flush=True)
    scores = score_all(held.samples, methods, cfg, seed, held.masks)
    metrics = {"data": data_uri, "split": split, "images": len(held.samples), "size": size, "seed": seed,
               "degrade": degrade_preset, "degrade_config": asdict(cfg), "torch_threads": 1,
               "device": str(loaded[0][2].device), "precision": loaded[0][2].precision,
               "models": {label: uri for label, uri, _ in loaded}, "masks": masks,
               "references": held.source, **tables(scores, methods, len(held.samples))}
    metrics["real"] = harm.tables(scores.real, seed)
    return _write_report(metrics, scores, methods, loaded, out_dir, photos, s3, held)


def held_out(data_uri: str, first_cfg, size: int, limit: int, split: str, s3: storage.S3Options | None,
             masks: str | None = None) -> HeldOut:
    """The photos to score, their masks, and the skin references: the mean of up to
    :data:`REFERENCE_PHOTOS` photos of the train split when another split is scored and the
    train split has photos, else of the scored photos themselves (a prior over the whole set,
    never per photo)."""
    everything = manifest_rows(data_uri, first_cfg, s3, masks)
    rows = split_rows(everything, split, limit)
    if not rows:
        raise SkinrayError(f"{data_uri}: no {split!r} images to evaluate on (val_fraction "
                           f"{first_cfg.data.val_fraction}, seed {first_cfg.data.seed}); try --split all")
    samples = [(r["key"], _image(r, size, s3)) for r in rows]
    found = {r["key"]: harm.read_mask(r["mask_uri"], size, s3) if r.get("mask_uri") else None for r in rows}
    train = split_rows(everything, "train", REFERENCE_PHOTOS) if split not in ("train", "all") else []
    source = (f"{len(train)} photos of the train split" if train else
              f"the first {min(len(samples), REFERENCE_PHOTOS)} scored photos themselves")
    photos = [_image(r, size, s3) for r in train] or [img for _, img in samples[:REFERENCE_PHOTOS]]
    try:
        skin = baselines.skin_reference(photos)
    except ValueError:  # no photo with a usable pixel: no skin-prior row
        skin = None
    return HeldOut(samples, found, baselines.reference_illuminant(photos), skin, source)


def _write_report(metrics: dict, scores: Scores, methods: list[Method], loaded: list, out_dir: Path,
                  photos: str | None, s3: storage.S3Options | None, held: HeldOut) -> dict:
    """Figures (contact sheets of the worst photos included), the before/after of ``--photos``,
    the summary and the goals, metrics.json and report.md."""
    metrics["figures"] = _figures(scores, methods, loaded, out_dir)
    metrics["figures"].update(_contact_sheets(scores, methods, held, metrics["seed"], out_dir))
    metrics["photos"] = None
    if photos:
        metrics["photos"], metrics["figures"]["photos_grid"] = _photos(
            photos, [(label, enhancer) for label, _, enhancer in loaded], out_dir, s3)
    metrics["summary"] = _summary(metrics)
    models = [m.name for m in methods if m.kind == "model"]
    skin_prior = SKIN_PRIOR if any(m.name == SKIN_PRIOR for m in methods) else None
    metrics["real"]["goals"] = harm.goals(metrics["real"], models, "degraded input", skin_prior)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "report.md").write_text(_report(metrics))
    return metrics


def _contact_sheets(scores: Scores, methods: list[Method], held: HeldOut, seed: int, out_dir: Path) -> dict:
    """Per model: the worst photos by harm and by residual cast (harm.contact_sheet)."""
    photos = dict(held.samples)
    with one_torch_thread():  # on busy cores small convolutions run faster so
        return {f"worst_photos_{j}": harm.contact_sheet(scores.real, m.name, m.fn, photos, seed,
                                                        out_dir / f"worst_photos_{j}.png")
                for j, m in enumerate(m for m in methods if m.kind == "model")}


def _figures(scores: Scores, methods: list[Method], loaded: list, out_dir: Path) -> dict[str, str]:
    labels = ["clean"] + [m.short for m in methods] + ["3x4 oracle", "LUT oracle"]
    figures = {"validation_grid": str(viz.grid(scores.grid, labels, out_dir / "validation_grid.png"))}
    for j, (label, _, enhancer) in enumerate(loaded):
        if enhancer.loaded.history:
            figures[f"loss_curve_{j}"] = str(viz.loss_curve(enhancer.loaded.history, out_dir / f"loss_curve_{j}.png",
                                                            title=label))
    return figures


def _photos(uri: str, enhancers: list[tuple[str, object]], out_dir: Path, s3, limit: int = 8) -> tuple[dict, str]:
    """Before/after of photos without ground truth (the first model), with no-reference
    statistics; and how much every model changed each photo (for good photos: harm)."""
    enhancer = enhancers[0][1]
    entries = [e for e in storage.list_files(uri, s3) if images.is_image_key(e.key)]
    if not entries:
        raise SkinrayError(f"{uri}: no photos (.jpg/.png/...) found for --photos")
    stats = {"before": [], "after": [], "change": []}
    rows, per_photo = [], []
    for entry in sorted(entries, key=lambda e: e.key)[:limit]:
        before = images.decode(storage.read_bytes(entry.uri, s3))
        after = enhancer.enhance(before)
        for name, img in (("before", before), ("after", after)):
            stats[name].append({"brightness": colour.mean_brightness(img), "contrast": colour.contrast(img),
                                "colourfulness": colour.colourfulness(img)})
        # How much the model changed the photo: for photos that were good, this is harm.
        change = score(after, before)
        stats["change"].append({"psnr": change["psnr"], "ciede2000": change["ciede2000"]})
        per_photo.append({"key": entry.key, "ciede2000": {enhancers[0][0]: change["ciede2000"]}})
        for label, other in enhancers[1:]:
            per_photo[-1]["ciede2000"][label] = score(other.enhance(before), before)["ciede2000"]
        rows.append([images.resize_square(before, 160), images.resize_square(after, 160)])
    summary = {name: {k: float(np.mean([s[k] for s in values])) for k in values[0]} for name, values in stats.items()}
    summary["count"], summary["per_photo"] = len(rows), per_photo
    path = viz.grid(rows, ["before", "after"], out_dir / "photos_before_after.png")
    return summary, str(path)


# ----------------------------------------------------------------------------- report


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table_lines(rows: dict[str, dict], with_ms: bool) -> list[str]:
    head = "| method | PSNR dB | SSIM | MS-SSIM | CIEDE2000 |" + (" ms/image |" if with_ms else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, row in rows.items():
        line = (f"| {name} | {_fmt(row['psnr'], 2)} | {_fmt(row['ssim'], 4)} | {_fmt(row['ms_ssim'], 4)} | "
                f"{_fmt(row['ciede2000'], 2)} |")
        lines.append(line + (f" {_fmt(row.get('ms_per_image'), 1)} |" if with_ms else ""))
    return lines


def _header_lines(m: dict) -> list[str]:
    which = ("the default degradations (v3: black-body light with a tint and exposure errors where the photo "
             "shows them, in linear light; down-up blur with random kernels, JPEG, noise)"
             if m["degrade"] == "default" else
             "the poster's degradations (ColorJitter; box-down / bicubic-up blur by 1.5-3x)")
    return ["# skinray evaluation", "",
            f"{m['images']} held-out images ({m['split']} split of `{m['data']}`) at {m['size']}x{m['size']} px, "
            f"each evaluated three times with {which}, seed {m['seed']}: once with colour faults, once with "
            "camera faults only, once clean. Every method sees the same inputs. Oracle rows are fitted per "
            "image with the clean photo known: bounds on what a per-image colour transform or 3-D lookup "
            "table can restore, not methods (never timed, never \"best classical\"). Skin references (Shades of "
            f"Gray towards the skin reference, and with a skin prior): {m['references']}.", ""]


def _recovered_lines(m: dict) -> list[str]:
    lines = ["## Recovered fraction", "",
             f"(model - degraded) / (oracle - degraded) in mean PSNR dB; n/a where the oracle gains less than "
             f"{RECOVERY_MIN_DB} dB.", "",
             "| model | " + " | ".join(f"{s} vs 3x4 | {s} vs LUT" for s in SUBSETS) + " |",
             "|---" * (1 + 2 * len(SUBSETS)) + "|"]
    for name, by_subset in m["recovered_fraction"].items():
        cells = [_fmt(by_subset[s][k], 2) for s in SUBSETS for k in ("oracle_3x4", "oracle_lut")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _harm_lines(m: dict) -> list[str]:
    lines = ["## Do no harm (clean photos in, output vs its own input)", "",
             "The clean subset: a photo that needs no correction should come back unchanged: high PSNR, "
             "CIEDE2000 below ~2 (a just-noticeable difference).", "",
             "| method | PSNR dB | CIEDE2000 |", "|---|---|---|"]
    for name, row in m["do_no_harm"].items():
        if m["restoration"][name]["kind"] != "input":
            lines.append(f"| {name} | {_fmt(row['psnr'], 2)} | {_fmt(row['ciede2000'], 2)} |")
    return lines + [""]


def _summary_lines(m: dict) -> list[str]:
    s = m["summary"]
    lines = ["## Summary", "", f"Best classical method on overall PSNR: {s['best_classical']}.", ""]
    for name, g in s["models"].items():
        gains = ", ".join(f"{k} {v:+.2f} dB" for k, v in g["gain_over_degraded_db_by_subset"].items())
        lines.append(
            f"- {name}: over the degraded input {gains}; recovered fraction on colour "
            f"{_fmt(g['recovered_fraction_colour'], 2)} of the 3x4 oracle's gain "
            f"({_fmt(g['recovered_fraction_colour_lut'], 2)} of the LUT oracle's); "
            f"camera {g['gain_on_camera_db']:+.2f} dB; unchanged photos {g['unchanged_photo_psnr_db']:.2f} dB, "
            f"CIEDE2000 {g['unchanged_photo_ciede2000']:.2f}; "
            f"{'beats' if g['beats_every_classical_on_every_subset'] else 'does not beat'} every classical "
            "baseline on every subset (PSNR).")
    return lines + [""]


def _photo_lines(p: dict | None) -> list[str]:
    if not p:
        return []
    lines = ["## Photos without ground truth (first model)", "", f"{p['count']} photos; mean no-reference statistics:",
             "", "| | brightness (L*) | contrast (std L*) | colourfulness |", "|---|---|---|---|"]
    for name in ("before", "after"):
        lines.append(f"| {name} | {p[name]['brightness']:.1f} | {p[name]['contrast']:.1f} | "
                     f"{p[name]['colourfulness']:.1f} |")
    lines += ["", f"Output vs input (how much the model changed them; for good photos, harm): PSNR "
              f"{p['change']['psnr']:.2f} dB, CIEDE2000 {p['change']['ciede2000']:.2f}.", ""]
    models = list(p["per_photo"][0]["ciede2000"]) if p.get("per_photo") else []
    if models:
        lines += ["Each photo, output vs input CIEDE2000, every model:", "",
                  "| photo | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
        lines += [f"| {row['key']} | " + " | ".join(f"{row['ciede2000'][m]:.2f}" for m in models) + " |"
                  for row in p["per_photo"]] + [""]
    return lines


def _report(m: dict) -> str:
    oracle_rows = {name: row["overall"] for name, row in m["oracles"].items()}
    lines = _header_lines(m)
    lines += ["## Restoration, overall (mean of the three subsets; output vs clean original)", "",
              "PSNR is capped at 100 dB per image, which an unchanged clean photo scores: the per-subset tables "
              "below say more. ms/image: mean over every input a method ran on, on one torch thread.", ""]
    lines += _table_lines({**m["restoration"], **oracle_rows}, with_ms=True) + [""]
    for subset in SUBSETS:
        rows = {**m["subsets"][subset], **{name: row[subset] for name, row in m["oracles"].items()}}
        lines += [f"## {SUBSET_TITLES[subset]}", ""] + _table_lines(rows, with_ms=False) + [""]
    lines += _recovered_lines(m) + _harm_lines(m) + harm.report_lines(m["real"]) + harm.goal_lines(m["real"]["goals"])
    lines += _summary_lines(m)
    lines += ["## Figures", "", f"Validation grid: the first {GRID_IMAGES} images, each as colour / camera / clean "
              "input (rows), with every method's and oracle's output (columns).", ""]
    for key, path in m["figures"].items():
        lines += [f"![{key}]({Path(path).name})", ""]
    return "\n".join(lines + _photo_lines(m["photos"])) + "\n"
