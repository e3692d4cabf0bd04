"""Harm to good real photos and correction of real-world light, by skin-tone band (``skinray evaluate``).

Each good photo (a real photo as it is, e.g. ISIC dermoscopy, with its lesion mask where one is
found) is scored two ways, for every method:

* **good** (do no harm): the photo as it is, in; the output against the input: mean CIEDE2000 per
  photo; the skin-tone shift ΔITA (output minus input); the lesion-to-skin contrast change.
* **cast** (real-world light): the photo re-lit by the v3 light (:func:`cast_input`: a black-body
  illuminant with a tint, seen by a camera white-balanced for 6500 K, and an exposure error where
  the photo shows it, in linear light) under a draw never used in training; the output against
  the good photo: mean CIEDE2000 per photo.
* **darker** (do no harm to darker skin): the good photo shown as the same lesion on darker skin
  (:func:`skinray.degrade.melanin` of depth :data:`DARKER_DEPTH`: very light skin becomes about
  brown), in; the output against that input, as **good**. Most real training and test photos
  show very light skin; this row asks whether darker skin is taken for a warm, dark cast.

ITA (individual typology angle, degrees) = atan2(L* - 50, b*) of the median L* and b* of the skin
pixels: those outside the lesion mask when a mask is given, else all pixels. Bands (of the good
photo): very light > 55, light 41-55, intermediate 28-41, tan 10-28, brown -30-10, dark < -30.
Lesion-to-skin contrast: CIEDE2000 between the mean Lab of the lesion pixels and the mean Lab of
the skin in a ring around the lesion (:data:`RING_FRACTION` of the image side wide; all non-lesion
pixels when the ring is empty). Images are uint8 (H, W, 3) sRGB; masks bool (H, W), True = lesion (found by
:mod:`skinray.annotations`: ``ISIC_<id>_segmentation.png`` beside the photo or in ``--masks DIR``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from skinray import colour, degrade, storage
from skinray.config import DegradeConfig

ITA_BANDS = (("very light", 55.0, math.inf), ("light", 41.0, 55.0), ("intermediate", 28.0, 41.0),
             ("tan", 10.0, 28.0), ("brown", -30.0, 10.0), ("dark", -math.inf, -30.0))  # (name, above, up to)
THIN_BAND = 10  # a band with fewer photos than this is flagged: its means say little
RING_FRACTION = 1 / 16  # width of the skin ring around a lesion, as a share of the image side
CAST_STREAM = "real-cast"  # the key_rng namespace of the cast draws; training draws never use it
ORACLE_VON_KRIES = "oracle: von Kries gains + exposure"
VON_KRIES_FIT = ("least squares of the good photo on the cast input per channel in linear light (3 gains: "
                 "white balance and exposure), pixels clipped in either left out")
WORST = 8  # photos per contact sheet
DARKER_DEPTH = 0.7  # melanin optical depth added for the "darker" row (degrade.melanin)


# ----------------------------------------------------------------------------- masks


def square_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A mask (H, W) through :func:`skinray.images.resize_square`'s geometry (shorter side to
    ``size``, centre crop) with nearest-neighbour sampling: bool (size, size), True = lesion."""
    h, w = mask.shape
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).resize((new_w, new_h), Image.Resampling.NEAREST)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size))) > 127


def read_mask(uri: str, size: int, s3: storage.S3Options | None) -> np.ndarray:
    """The lesion mask at ``uri`` (any image; pixels above 127 are lesion) as :func:`square_mask`."""
    with Image.open(io.BytesIO(storage.read_bytes(uri, s3))) as img:
        return square_mask(np.asarray(img.convert("L")) > 127, size)


# ----------------------------------------------------------------------------- per photo


def skin_of(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Skin pixels for ITA: outside the lesion when a mask with some skin is given, else all."""
    if mask is not None and not mask.all():
        return ~mask
    return np.ones(shape[:2], bool)


def ita(lab: np.ndarray, skin: np.ndarray) -> float:
    """ITA in degrees, atan2(L* - 50, b*), of the median L* and b* over ``skin`` (bool (H, W))."""
    return math.degrees(math.atan2(float(np.median(lab[..., 0][skin])) - 50.0, float(np.median(lab[..., 2][skin]))))


def band_of(angle: float) -> str:
    """The ITA band (:data:`ITA_BANDS`) of an angle in degrees; upper bounds included."""
    return next(name for name, above, up_to in ITA_BANDS if above < angle <= up_to)


def lesion_contrast(lab: np.ndarray, mask: np.ndarray | None) -> float | None:
    """CIEDE2000 between the mean Lab of the lesion and of the skin ring around it (all other
    pixels when the ring is empty); None without a mask, or with no lesion or no skin pixel."""
    if mask is None or not mask.any() or mask.all():
        return None
    width = max(1.0, RING_FRACTION * max(mask.shape))
    ring = (ndimage.distance_transform_edt(~mask) <= width) & ~mask
    skin = ring if ring.any() else ~mask
    return float(colour.ciede2000(lab[mask].mean(axis=0), lab[skin].mean(axis=0)))


@dataclass
class Photo:
    """A good photo and what its harm rows compare against."""

    key: str
    img: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray | None  # bool (H, W), True = lesion; None when none was found
    lab: np.ndarray = field(repr=False)
    skin: np.ndarray = field(repr=False)
    ita: float = 0.0
    band: str = ""
    contrast: float | None = None


def describe(key: str, img: np.ndarray, mask: np.ndarray | None, lab: np.ndarray | None = None) -> Photo:
    """A good photo's Lab, skin pixels, ITA, band and lesion-to-skin contrast."""
    lab = colour.srgb_to_lab(img) if lab is None else lab
    skin = skin_of(mask, img.shape)
    angle = ita(lab, skin)
    return Photo(key, img, mask, lab, skin, angle, band_of(angle), lesion_contrast(lab, mask))


def good_row(out: np.ndarray, photo: Photo) -> dict[str, float | None]:
    """One method's output on the good photo as it is, against it: mean CIEDE2000, ΔITA (signed,
    degrees, within (-180, 180]) and the lesion-contrast change (output minus input; None without
    a mask)."""
    if np.array_equal(out, photo.img):
        return {"ciede2000": 0.0, "ita_shift": 0.0, "contrast_change": None if photo.contrast is None else 0.0}
    lab = colour.srgb_to_lab(out)
    shift = (ita(lab, photo.skin) - photo.ita + 180.0) % 360.0 - 180.0
    contrast = lesion_contrast(lab, photo.mask)
    return {"ciede2000": float(np.mean(colour.ciede2000(lab, photo.lab))), "ita_shift": float(shift),
            "contrast_change": None if photo.contrast is None else contrast - photo.contrast}


def cast_error(out: np.ndarray, photo: Photo) -> float:
    """Mean CIEDE2000 of a corrected cast photo to the good photo."""
    return 0.0 if np.array_equal(out, photo.img) else float(np.mean(colour.ciede2000(colour.srgb_to_lab(out),
                                                                                     photo.lab)))


# ----------------------------------------------------------------------------- the cast


def cast_draw(img: np.ndarray, key: str, seed: int) -> degrade.Degradation:
    """The light of one photo's real-world cast: a ``subset="colour"`` draw of the default (v3)
    degradations from ``key_rng(seed, "real-cast:" + key)`` (a stream training never draws from),
    kept to its light (``kelvin``, ``tint``, ``ev``): no blur, noise or JPEG."""
    drawn = degrade.sample(degrade.key_rng(seed, f"{CAST_STREAM}:{key}"), DegradeConfig(), subset="colour", image=img)
    return degrade.Degradation(kelvin=drawn.kelvin, tint=drawn.tint, ev=drawn.ev)


def cast_input(img: np.ndarray, key: str, seed: int) -> np.ndarray:
    """The good photo re-lit by :func:`cast_draw`, uint8."""
    return degrade.apply_uint8(img, cast_draw(img, key, seed))


def fit_von_kries(degraded: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Per-channel gains (3,) in linear light, least squares of ``good`` on ``degraded``
    (g_c = sum x y / sum x x), over pixels clipped (0 or 255) in neither: a von Kries white
    balance and an exposure, fitted with the good photo known. Ones where no pixel is usable."""
    x, y = colour.srgb_to_linear(degraded).reshape(-1, 3), colour.srgb_to_linear(good).reshape(-1, 3)
    usable = ((degraded > 0) & (degraded < 255) & (good > 0) & (good < 255)).reshape(-1, 3)
    num, den = np.sum(x * y * usable, axis=0), np.sum(x * x * usable, axis=0)
    return np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)


def apply_gains(img: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``img`` (uint8) times ``gains`` in linear light, clipped, uint8."""
    return colour.to_uint8(colour.linear_to_srgb(colour.srgb_to_linear(img) * np.asarray(gains)))


def von_kries_oracle(degraded: np.ndarray, good: np.ndarray) -> np.ndarray:
    """The von Kries + exposure oracle's output: :func:`fit_von_kries` applied, or the input itself
    where rounding leaves the fit behind it (the identity is such a correction)."""
    out = apply_gains(degraded, fit_von_kries(degraded, good))
    error = np.sum((out.astype(np.int64) - good) ** 2)
    return out if error <= np.sum((degraded.astype(np.int64) - good) ** 2) else degraded.copy()


# ----------------------------------------------------------------------------- tables


def darker(photo: Photo) -> Photo:
    """The good photo on darker skin (:data:`DARKER_DEPTH` of melanin), described like a good photo."""
    return describe(photo.key, degrade.melanin_uint8(photo.img, DARKER_DEPTH), photo.mask)


def record(photo: Photo, good: dict[str, dict], cast: dict[str, float], light: degrade.Degradation,
           dark: dict[str, dict] | None = None) -> dict:
    """One photo's entry of metrics.json's ``real.per_photo``: its band, ITA, contrast, the cast's
    light and every row's figures (``good`` by method, ``cast`` by method and oracle, ``darker``
    by method: its good row on darker skin)."""
    return {"key": photo.key, "band": photo.band, "ita": photo.ita, "mask": photo.mask is not None,
            "contrast": photo.contrast, "light": {"kelvin": light.kelvin, "tint": light.tint, "ev": light.ev},
            "good": good, "cast": cast, "darker": dark or {}}


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _good_stats(rows: list[dict]) -> dict:
    de = [r["ciede2000"] for r in rows]
    shifts = [r["ita_shift"] for r in rows]
    contrast = [abs(r["contrast_change"]) for r in rows if r["contrast_change"] is not None]
    return {"count": len(rows), "ciede2000_mean": float(np.mean(de)), "ciede2000_p95": _p95(de),
            "ita_shift_abs_mean": float(np.mean(np.abs(shifts))), "ita_shift_mean": float(np.mean(shifts)),
            "contrast_change_abs_mean": float(np.mean(contrast)) if contrast else None,
            "contrast_photos": len(contrast)}


def _cast_stats(values: list[float]) -> dict:
    return {"count": len(values), "ciede2000_mean": float(np.mean(values)), "ciede2000_p95": _p95(values)}


def _by_band(records: list[dict], pick, stats) -> dict:
    """``stats`` over every photo ("all") and over each band's photos (bands with none left out)."""
    groups = {"all": records, **{name: [r for r in records if r["band"] == name] for name, _, _ in ITA_BANDS}}
    return {group: stats([pick(r) for r in rows]) for group, rows in groups.items() if rows}


def tables(records: list[dict], seed: int) -> dict:
    """metrics.json's ``real``: photo and band counts, the good and cast rows by method (each
    "all" and per band), and the per-photo figures."""
    good_names, cast_names = list(records[0]["good"]), list(records[0]["cast"])
    bands = {name: {"ita_above": None if math.isinf(above) else above,
                    "ita_up_to": None if math.isinf(up_to) else up_to, "count": sum(r["band"] == name for r in records),
                    "with_mask": sum(r["band"] == name and r["mask"] for r in records)}
             for name, above, up_to in ITA_BANDS}
    for band in bands.values():
        band["thin"] = band["count"] < THIN_BAND
    return {"photos": len(records), "with_mask": sum(r["mask"] for r in records), "bands": bands,
            "thin_band_below": THIN_BAND, "cast_seed": seed, "cast_stream": CAST_STREAM,
            "good": {n: _by_band(records, lambda r, n=n: r["good"][n], _good_stats) for n in good_names},
            "cast": {n: _by_band(records, lambda r, n=n: r["cast"][n], _cast_stats) for n in cast_names},
            "darker_depth": DARKER_DEPTH,
            "darker": {n: _by_band(records, lambda r, n=n: r["darker"][n], _good_stats)
                       for n in records[0].get("darker", {})},
            "oracle_fits": {ORACLE_VON_KRIES: VON_KRIES_FIT}, "per_photo": records}


def goals(real: dict, models: list[str], input_row: str, skin_prior: str | None) -> dict:
    """Issue 20's goals per model, each True / False (None where not measured): good photos mean
    CIEDE2000 <= 1.0 and p95 <= 2.5, mean |ΔITA| <= 3, mean signed ΔITA within +-2 in every band of
    at least :data:`THIN_BAND` photos, lesion contrast changed <= 1.0; casts at most half the
    input's and below Shades of Gray with a skin prior; the same photos on darker skin (the
    "darker" row) changed by mean CIEDE2000 <= 1.0 and mean |ΔITA| <= 3."""
    found, cast_in = {}, real["cast"][input_row]["all"]["ciede2000_mean"]
    for name in models:
        good, cast = real["good"][name], real["cast"][name]
        full = [b for b, row in real["bands"].items() if row["count"] >= THIN_BAND]
        contrast = good["all"]["contrast_change_abs_mean"]
        found[name] = {
            "good_ciede2000_mean_le_1": good["all"]["ciede2000_mean"] <= 1.0,
            "good_ciede2000_p95_le_2_5": good["all"]["ciede2000_p95"] <= 2.5,
            "ita_shift_abs_mean_le_3": good["all"]["ita_shift_abs_mean"] <= 3.0,
            "ita_shift_within_2_every_full_band": all(abs(good[b]["ita_shift_mean"]) <= 2.0 for b in full),
            "contrast_change_le_1": None if contrast is None else contrast <= 1.0,
            "cast_le_half_input": cast["all"]["ciede2000_mean"] <= 0.5 * cast_in,
            "cast_below_skin_prior": None if skin_prior is None else
            cast["all"]["ciede2000_mean"] < real["cast"][skin_prior]["all"]["ciede2000_mean"],
        }
        dark = real.get("darker", {}).get(name, {}).get("all")
        found[name]["darker_ciede2000_mean_le_1"] = None if dark is None else dark["ciede2000_mean"] <= 1.0
        found[name]["darker_ita_shift_abs_mean_le_3"] = None if dark is None else dark["ita_shift_abs_mean"] <= 3.0
    return found


# ----------------------------------------------------------------------------- report


def _cell(value, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _row_line(name: str, good: dict | None, cast: dict | None) -> str:
    g = [_cell(good["ciede2000_mean"]), _cell(good["ciede2000_p95"]), _cell(good["ita_shift_abs_mean"], 1),
         _cell(good["ita_shift_mean"], 1, signed=True), _cell(good["contrast_change_abs_mean"])] if good else ["-"] * 5
    c = [_cell(cast["ciede2000_mean"]), _cell(cast["ciede2000_p95"])] if cast else ["-"] * 2
    return f"| {name} | " + " | ".join(g + c) + " |"


def _group_table(real: dict, group: str) -> list[str]:
    head = ("| method | good: CIEDE2000 mean | good: p95 | good: mean abs ΔITA ° | good: mean ΔITA ° | "
            "good: lesion contrast change | cast: CIEDE2000 mean | cast: p95 |")
    lines = [head, "|---" * 8 + "|"]
    for name in dict.fromkeys([*real["good"], *real["cast"]]):
        good = real["good"].get(name, {}).get(group)
        lines.append(_row_line(name, None if name == "degraded input" else good, real["cast"].get(name, {}).get(group)))
    return lines


def _band_heading(name: str, band: dict) -> str:
    above, up_to = band["ita_above"], band["ita_up_to"]
    span = f"ITA > {above}°" if up_to is None else f"ITA ≤ {up_to}°" if above is None else f"{above}° < ITA ≤ {up_to}°"
    thin = f"; fewer than {THIN_BAND} photos: its means say little" if band["thin"] else ""
    return f"### {name} ({span}): {band['count']} photos, {band['with_mask']} with a lesion mask{thin}"


def report_lines(real: dict) -> list[str]:
    """report.md's section on real photos: the rows over all photos, then per ITA band."""
    counts = ", ".join(f"{name} {row['count']}" for name, row in real["bands"].items())
    thin = [name for name, row in real["bands"].items() if row["thin"]]
    lines = ["## Real photos: harm to good photos, and real-world casts", "",
             f"{real['photos']} good photos ({real['with_mask']} with a lesion mask). **good**: each photo as it is, "
             "in; output vs input: CIEDE2000 mean and p95 over photos (of each photo's mean), ITA shift in degrees "
             "(output minus input; mean of its absolute value, and signed), lesion-to-skin contrast change (mean "
             "absolute change of the CIEDE2000 between lesion and surrounding skin; photos with a mask). **cast**: "
             "each photo re-lit by the v3 light (black-body illuminant 2700-10000 K with a tint, and an exposure "
             "error where the photo shows it, in linear light; seed "
             f"{real['cast_seed']}, a stream never trained on), then corrected; output vs the good photo. The "
             "degraded input row is the cast photo itself. Oracle rows are fitted with the good photo known.", "",
             f"Photos per ITA band (of the good photo): {counts}."
             + (f" Fewer than {THIN_BAND} photos in: {', '.join(thin)}." if thin else ""), ""]
    lines += _group_table(real, "all") + [""]
    for name, band in real["bands"].items():
        if band["count"]:
            lines += [_band_heading(name, band), ""] + _group_table(real, name) + [""]
    return lines + _darker_lines(real)


def _darker_lines(real: dict) -> list[str]:
    """The good photos shown on darker skin: one row per method, over all photos and per band of
    the photo before it was darkened."""
    if not real.get("darker"):
        return []
    bands = [b for b, row in real["bands"].items() if row["count"]]
    lines = ["## Real photos on darker skin: harm", "",
             f"Each good photo shown as the same lesion on darker skin (melanin of optical depth "
             f"{real['darker_depth']} added in linear light: very light skin becomes about brown), in; output vs "
             "that input, as in **good**. Columns: over all photos, then by the band of the photo before it was "
             "darkened. Cells: CIEDE2000 mean / mean ΔITA °.", "",
             "| method | all | " + " | ".join(bands) + " |", "|---" * (len(bands) + 2) + "|"]
    for name, groups in real["darker"].items():
        cells = [f"{_cell(groups[g]['ciede2000_mean'])} / {_cell(groups[g]['ita_shift_mean'], 1, signed=True)}"
                 if g in groups else "-" for g in ["all", *bands]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def goal_lines(found: dict) -> list[str]:
    """The goals of issue 20, met or not, per model."""
    if not found:
        return []
    lines = ["## Goals on real photos (issue 20)", ""]
    for name, checks in found.items():
        cells = ", ".join(f"{k} {'yes' if v else 'no' if v is not None else 'n/a'}" for k, v in checks.items())
        lines.append(f"- {name}: {cells}")
    return lines + [""]


def printed_lines(real: dict) -> list[str]:
    """One terminal line per row over all photos."""
    lines = []
    for name in dict.fromkeys([*real["good"], *real["cast"]]):
        good, cast = real["good"].get(name, {}).get("all"), real["cast"].get(name, {}).get("all")
        text = (f"good CIEDE2000 {good['ciede2000_mean']:5.2f} p95 {good['ciede2000_p95']:5.2f}  "
                f"|ΔITA| {good['ita_shift_abs_mean']:4.1f}  ΔITA {good['ita_shift_mean']:+5.1f}  "
                f"contrast {_cell(good['contrast_change_abs_mean'])}  ") if good and name != "degraded input" else ""
        text += f"cast CIEDE2000 {cast['ciede2000_mean']:5.2f} p95 {cast['ciede2000_p95']:5.2f}" if cast else ""
        dark = real.get("darker", {}).get(name, {}).get("all")
        if dark:
            text += f"  darker skin CIEDE2000 {dark['ciede2000_mean']:5.2f} ΔITA {dark['ita_shift_mean']:+5.1f}"
        lines.append(f"[skinray] real {name:<36} {text}")
    return lines


# ----------------------------------------------------------------------------- contact sheets

SHEET_LABELS = ("harm: good", "harm: output", "cast: good", "cast: input", "cast: output")


def _stem(key: str) -> str:
    return key.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import ImageDraw

    out = Image.fromarray(np.ascontiguousarray(img))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, min(out.width, 7 * len(text) + 6), 13), fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(out)


def worst(records: list[dict], name: str, part: str, count: int = WORST) -> list[dict]:
    """The ``count`` photos on which row ``name`` did worst: highest good CIEDE2000 (``part``
    "good") or highest residual cast CIEDE2000 ("cast")."""
    value = (lambda r: r["good"][name]["ciede2000"]) if part == "good" else (lambda r: r["cast"][name])
    return sorted(records, key=value, reverse=True)[:count]


def contact_sheet(records: list[dict], name: str, fn, photos: dict[str, np.ndarray], seed: int,
                  path) -> str:
    """One model's contact sheet (PNG): row i holds the i-th worst photo by harm (good photo,
    output) and the i-th worst by residual cast (good photo, cast input, output), each captioned
    with its key and CIEDE2000."""
    from skinray import viz

    rows = []
    for by_harm, by_cast in zip(worst(records, name, "good"), worst(records, name, "cast")):
        good, img = photos[by_harm["key"]], photos[by_cast["key"]]
        cast = cast_input(img, by_cast["key"], seed)
        rows.append([_caption(good, f"{_stem(by_harm['key'])} {by_harm['good'][name]['ciede2000']:.1f}"), fn(good),
                     _caption(img, f"{_stem(by_cast['key'])} {by_cast['cast'][name]:.1f}"), cast, fn(cast)])
    return str(viz.grid(rows, SHEET_LABELS, path))
