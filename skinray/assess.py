"""Photo triage: what was wrong with a photo, what skinray changed, and whether to ask for a retake.

An :class:`Assessment` comes from the photo as decoded (``before``), the photo as enhanced
(``after``) and the model's :class:`~skinray.correction.Correction` when it predicts one (the
``light`` models; ``None`` for ``lut`` and the autoencoders), all from the one :class:`Enhancer`
pass (:func:`assess_batch`). Measurements, each cheap (a bounded sample of the pixels, so a 12 MP
photo costs about what a 0.25 MP one does):

* the light: the correlated colour temperature (K) and tint of the cast undone, the linear-light
  gains and the exposure change (EV) - the model's own correction, or, for models without one
  (``light_source: estimated``), the light estimated from the photo's skin (Shades of Gray on the
  skin pixels, :func:`skinray.baselines.skin_illuminant`, against :data:`REFERENCE_SKIN`) and the
  exposure the enhancer applied (the skin's luminance after / before);
* the change: mean and 95th-percentile CIEDE2000 of ``after`` against ``before``;
* sharpness as an effective resolution: the down-up factor (box down, bicubic up, as the
  training degradations blur) up to which the photo is almost unchanged, the noise floor and the
  JPEG block edges discounted (:func:`blur_factor`);
* the share of the skin clipped in highlights and in shadows (:func:`clipping`);
* the noise level (8-bit levels, Immerkaer's estimator on flat areas) and the JPEG blockiness
  (1 = none);
* a verdict: ``retake`` (reasons ``too-small``, ``blurred``, ``overexposed``, ``underexposed``,
  ``noisy``), else ``corrected`` when the change is at least ``assess.change``, else ``good``.

Thresholds are :class:`skinray.config.AssessConfig` keys (``assess.*``, docs/configuration.md).
Images are ``uint8`` sRGB ``(H, W, 3)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from skinray import baselines, colour, correction
from skinray.config import AssessConfig
from skinray.correction import Correction

VERDICTS = ("good", "corrected", "retake")
REASONS = ("too-small", "blurred", "overexposed", "underexposed", "noisy")
# Mean skin chromaticity (linear RGB, luminance 1) of good dermoscopy photos: skin_illuminant of
# 300 ISIC training photos at 512 px (the light a model without a correction is measured against).
REFERENCE_SKIN = np.array([1.3754, 0.9032, 0.8532])
# The down-up factors a photo is compared with; the last one is the reference (all detail lost).
FACTORS = (1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
SAMPLE_SIDE = 256  # sharpness, noise and blockiness look at a centred crop this large at most
SAMPLE_PIXELS = 1 << 12  # the change and the clipping look at about this many pixels (a regular grid)
_Y = np.array([0.2126, 0.7152, 0.0722])  # linear sRGB luminance
_LINEAR = colour.srgb_to_linear(np.arange(256, dtype=np.uint8)[:, None].repeat(3, 1))[:, 0]  # 8-bit -> linear


@dataclass(frozen=True)
class Assessment:
    """One photo's triage. ``verdict``: good / corrected / retake; ``reasons``: why a retake (empty
    otherwise). Light: ``kelvin`` / ``tint`` of the cast undone (6500 K, 0: none), ``gains``
    (linear R, G, B, exposure included), ``ev`` (stops), ``confidence`` (0-1; NaN when estimated),
    ``light_source`` (``model`` or ``estimated``). ``change_mean`` / ``change_p95``: CIEDE2000 of
    the output against the input. ``blur_factor``: the down-up factor the photo matches (1 =
    sharp). ``clipped_high`` / ``clipped_low``: share of the skin clipped (0-1). ``noise``: sigma
    in 8-bit levels; ``blockiness``: JPEG block-edge strength (1 = none). ``width`` / ``height``:
    pixels."""

    verdict: str
    reasons: tuple[str, ...]
    kelvin: float
    tint: float
    gains: tuple[float, float, float]
    ev: float
    confidence: float
    light_source: str
    change_mean: float
    change_p95: float
    blur_factor: float
    clipped_high: float
    clipped_low: float
    noise: float
    blockiness: float
    width: int
    height: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: reasons and gains as lists, NaN as None."""
        out = asdict(self)
        out.pop("extra")
        out["reasons"], out["gains"] = list(self.reasons), list(self.gains)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

    def row(self) -> dict[str, Any]:
        """Flat columns (the manifests, the Ray Data callable): :data:`COLUMNS`, reasons comma-joined."""
        return {"verdict": self.verdict, "reasons": ",".join(self.reasons), "kelvin": self.kelvin,
                "tint": self.tint, "gain_r": self.gains[0], "gain_g": self.gains[1], "gain_b": self.gains[2],
                "ev": self.ev, "confidence": self.confidence, "light_source": self.light_source,
                "change_mean": self.change_mean, "change_p95": self.change_p95, "blur_factor": self.blur_factor,
                "clipped_high": self.clipped_high, "clipped_low": self.clipped_low, "noise": self.noise,
                "blockiness": self.blockiness}

    def change_header(self) -> str:
        """The change in one line (the endpoint's ``X-Skinray-Change``)."""
        return (f"de={self.change_mean:.2f}; de95={self.change_p95:.2f}; kelvin={self.kelvin:.0f}; "
                f"tint={self.tint:+.3f}; ev={self.ev:+.2f}")

    def verdict_header(self) -> str:
        """``retake (blurred, noisy)``, ``corrected`` or ``good`` (the endpoint's ``X-Skinray-Verdict``)."""
        return f"{self.verdict} ({', '.join(self.reasons)})" if self.reasons else self.verdict


# The assessment's flat columns and their types ("str" or "float"), in order; a row without an
# assessment (failed, not an image) has "" and NaN.
COLUMNS = {"verdict": "str", "reasons": "str", "kelvin": "float", "tint": "float", "gain_r": "float",
           "gain_g": "float", "gain_b": "float", "ev": "float", "confidence": "float", "light_source": "str",
           "change_mean": "float", "change_p95": "float", "blur_factor": "float", "clipped_high": "float",
           "clipped_low": "float", "noise": "float", "blockiness": "float"}


def empty_row() -> dict[str, Any]:
    """The assessment columns of a photo not assessed."""
    return {name: "" if kind == "str" else float("nan") for name, kind in COLUMNS.items()}


# ----------------------------------------------------------------------------- measurements


def _luminance8(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded luma in 8-bit levels, float32 (H, W)."""
    return (rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def _crop_origin(rgb: np.ndarray, side: int = SAMPLE_SIDE) -> tuple[int, int]:
    """(top, left) of the centred ``side`` x ``side`` crop."""
    h, w = rgb.shape[:2]
    return max(0, (h - side) // 2), max(0, (w - side) // 2)


def _crop(rgb: np.ndarray, side: int = SAMPLE_SIDE) -> np.ndarray:
    """The luma of the centred ``side`` x ``side`` crop (the whole photo if smaller)."""
    top, left = _crop_origin(rgb, side)
    return _luminance8(rgb[top:top + side, left:left + side])


def _grid(rgb: np.ndarray, pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    """Every k-th row and column, k such that about ``pixels`` pixels remain."""
    step = max(1, int(math.sqrt(rgb.shape[0] * rgb.shape[1] / pixels)))
    return rgb[::step, ::step]


def _down_up(plane: np.ndarray | Image.Image, factor: float) -> np.ndarray:
    img = plane if isinstance(plane, Image.Image) else Image.fromarray(plane, mode="F")
    w, h = img.size
    small = img.resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def _white_loss(factor: float, shape: tuple[int, int]) -> float:
    """The share of white noise's variance that a down-up by ``factor`` removes on a plane of
    ``shape`` (measured once on a fixed draw, then cached)."""
    key = (factor, shape)
    if key not in _WHITE:
        white = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        diff = white - _down_up(white, factor)
        _WHITE[key] = float(np.vdot(diff, diff) / np.vdot(white, white))
    return _WHITE[key]


_WHITE: dict[tuple[float, tuple[int, int]], float] = {}


def blur_factor(rgb: np.ndarray, loss: float = 0.15, noise: float | None = None) -> float:
    """The photo's effective resolution as the down-up factor it matches: where the detail a
    down-up (box down, bicubic up) removes reaches ``loss`` of what the largest of
    :data:`FACTORS` removes (mean squared difference, luma, central crop), interpolated between
    the two factors that bracket it. A sharp photo gives 1; a photo shot or stored at 1/3 of its
    pixel size about 3.

    Robust to sensor noise and JPEG: the share of white noise of sigma ``noise`` (8-bit levels;
    :func:`noise_sigma` when None) that each down-up removes is subtracted from what it removes,
    so noise added after a blur does not read as detail; and the rows and columns on either side
    of the 8 x 8 JPEG block edges (of the whole photo's grid) are left out, so blocking does not
    either. Noise that a JPEG then quantised (which ``noise_sigma``, a finest-scale measure, no
    longer sees) is caught by the noise floor of the down-up losses themselves
    (:func:`_noise_floor`)."""
    plane = _crop(rgb)
    if min(plane.shape) < 4 * FACTORS[-1]:
        return float("nan")
    flat = _flat(plane)
    return _blur(plane, flat, _crop_origin(rgb), _immerkaer(plane, flat) if noise is None else noise, loss)


def _blur(plane: np.ndarray, flat: np.ndarray, origin: tuple[int, int], sigma: float, loss: float = 0.15,
          blocks: float | None = None) -> float:
    """:func:`blur_factor` of the central crop's luma ``plane``, its flat half ``flat``
    (:func:`_flat`), the crop's (top, left) in the photo, the noise ``sigma`` and the plane's
    blockiness (measured when needed if None)."""
    variance = 0.0 if math.isnan(sigma) else sigma * sigma
    top, left = origin
    rows = (top + np.arange(plane.shape[0])) % 8 % 7 != 0  # image rows 8k - 1 and 8k: a block edge's sides
    cols = (left + np.arange(plane.shape[1])) % 8 % 7 != 0
    flat_full, flat = flat, flat[rows][:, cols]
    image = Image.fromarray(plane, mode="F")  # made once for the bisection's down-ups
    raw: dict[float, float] = {}  # factor: mean squared loss
    on_flat: dict[float, float] = {}  # the same on the flat half, at the smallest and the largest factor

    def measured(f: float) -> float:
        if f not in raw:
            diff = (plane - _down_up(image, f))[rows][:, cols]
            raw[f] = float(np.vdot(diff, diff)) / diff.size
            if f in (FACTORS[0], FACTORS[-1]):
                part = diff[flat]
                on_flat[f] = float(np.vdot(part, part)) / max(part.size, 1)
        return raw[f]

    blocks = _blockiness(plane) if blocks is None else blocks
    if not math.isnan(blocks) and blocks > JPEG_BLOCKS[0]:  # a JPEG: noise it quantised may be left
        measured(FACTORS[0]), measured(FACTORS[-1])
        variance = max(variance, _noise_floor(plane, flat_full, on_flat[FACTORS[0]], on_flat[FACTORS[-1]], blocks))
    seen: dict[float, float] = {1.0: 0.0}

    def lost(f: float) -> float:
        if f not in seen:
            seen[f] = max(0.0, measured(f) - variance * _white_loss(f, plane.shape))
        return seen[f]

    reference = lost(FACTORS[-1])
    if reference <= 1e-6:  # a flat image (or nothing above the noise): no detail to lose
        return 1.0
    factors = (1.0, *FACTORS)
    lo, hi = 0, len(factors) - 1  # the detail lost grows with the factor: bisect for the last one under
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if lost(factors[mid]) <= loss * reference else (lo, mid)
    below, above = lost(factors[lo]), lost(factors[hi])
    t = min(1.0, max(0.0, (loss * reference - below) / max(above - below, 1e-9)))
    return float(factors[lo] * (factors[hi] / factors[lo]) ** t)  # geometric interpolation


# The noise floor (_noise_floor) counts from these noise-likenesses of the flat half's losses
# (0 below the first, all of it from the second) and as this share of the coarse-scale noise
# variance: tuned on 200 ISIC val photos (docs/figures.md).
NOISE_LIKE = (0.1, 0.3)
NOISE_FLOOR_SHARE = 0.6
# ... and only on a JPEG whose blocks show (blockiness, 0 below the first, all from the second):
# synthetic skin, unlike noise, has texture that reads as noise-like at every scale (up to 1.09).
JPEG_BLOCKS = (1.1, 1.2)


def _noise_floor(plane: np.ndarray, flat: np.ndarray, flat_first: float, flat_last: float,
                 blocks: float) -> float:
    """A noise variance (8-bit levels squared) for :func:`blur_factor` to subtract, from the down-up
    losses on the flat half of ``plane`` at the smallest and the largest of :data:`FACTORS`.

    Noise followed by JPEG: the quantisation removes the noise's finest frequencies, so the
    Laplacian of :func:`noise_sigma` reads a fraction of it (0.2-2 levels for sigmas of 1.4-12),
    and what survives, no longer white, reads as detail. Its losses give it away: on flat skin a
    blur leaves nothing for the smallest down-up to remove, so the smallest down-up's loss over
    the white-noise share of it, against the same ratio at the largest factor, is about 0.02-0.09
    on clean and blurred photos and 0.2-0.6 where noise survives a JPEG (1 for white noise). From
    that noise-likeness (ramping between :data:`NOISE_LIKE`) the floor is
    :data:`NOISE_FLOOR_SHARE` of the variance measured one scale coarser, where the JPEG kept the
    noise: Immerkaer's estimator on the plane's 2 x 2 means, on those wholly in its ``flat`` half
    (:func:`_flat`), doubled. Only on a JPEG whose blocks show (``blocks``, the plane's
    :func:`blockiness`, ramping between :data:`JPEG_BLOCKS`): white noise is measured as it is by
    :func:`noise_sigma`, and fine synthetic skin texture is noise-like too (0.3-0.6 at 128 px)."""
    shape = plane.shape
    share = _white_loss(FACTORS[0], shape) * flat_last
    if share <= 0:
        return 0.0
    likeness = flat_first * _white_loss(FACTORS[-1], shape) / share
    weight = min(1.0, max(0.0, (likeness - NOISE_LIKE[0]) / (NOISE_LIKE[1] - NOISE_LIKE[0])))
    if weight <= 0:
        return 0.0
    if math.isnan(blocks):
        return 0.0
    weight *= min(1.0, max(0.0, (blocks - JPEG_BLOCKS[0]) / (JPEG_BLOCKS[1] - JPEG_BLOCKS[0])))
    if weight <= 0:
        return 0.0
    h, w = shape[0] // 2 * 2, shape[1] // 2 * 2
    coarse = plane[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    sigma = 2.0 * _immerkaer(coarse, flat[:h, :w].reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3)))
    return 0.0 if math.isnan(sigma) else weight * NOISE_FLOOR_SHARE * sigma * sigma


def _gaussian(plane: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(plane, sigma)`` (edges mirrored, "reflect"), separably in
    numpy: the same kernel, within float rounding; importing scipy.ndimage took 0.3-0.7 s of
    every one-photo command."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 / sigma ** 2 * np.arange(-radius, radius + 1) ** 2)
    taps /= taps.sum()
    out = np.asarray(plane, np.float64)
    for axis in (0, 1):  # each output: the taps against its window of the mirrored rows or columns
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="symmetric")
        out = np.einsum("...k,k->...", np.lib.stride_tricks.sliding_window_view(padded, len(taps), axis=axis), taps)
    return out.astype(plane.dtype)


def _touching_corners(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` 4-connected to a corner pixel of ``mask`` (what
    ``scipy.ndimage.label``'s regions holding a corner are), by flood fill: Pillow's is Python,
    fine for the ~4,000-pixel grid it is given (a wholly dark 64 x 64 grid: a few ms)."""
    canvas = Image.fromarray(mask.astype(np.uint8) * 255).copy()  # writable (fromarray's is read-only)
    h, w = mask.shape
    for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)):
        if canvas.getpixel((x, y)) == 255:
            ImageDraw.floodfill(canvas, (x, y), 128, thresh=0)
    return np.asarray(canvas) == 128


def _flat(plane: np.ndarray, smoothing: float = 2.0) -> np.ndarray:
    """The flattest half of ``plane`` (bool, its shape): the |Sobel| gradient of the plane
    smoothed by a Gaussian of ``smoothing`` pixels (texture and edges, not the noise, decide what
    is flat) at or under its median."""
    smooth = _gaussian(plane, smoothing)
    # |Sobel| along both axes (ndimage.sobel's, edges mirrored as its "reflect" mode does), from slices.
    pad = np.pad(smooth, 1, mode="symmetric")
    dy, dx = pad[2:] - pad[:-2], pad[:, 2:] - pad[:, :-2]
    gradient = (np.abs(dy[:, :-2] + 2 * dy[:, 1:-1] + dy[:, 2:])
                + np.abs(dx[:-2] + 2 * dx[1:-1] + dx[2:]))
    return gradient <= np.median(gradient)


def _immerkaer(plane: np.ndarray, flat: np.ndarray) -> float:
    """Immerkaer's (1996) Laplacian-difference noise sigma on the ``flat`` pixels of ``plane``."""
    if min(plane.shape) < 8:
        return float("nan")
    # The Laplacian difference [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] inside the border: the
    # outer product of [1, -2, 1] with itself, as two second differences of array slices.
    rows = plane[:-2] - 2 * plane[1:-1] + plane[2:]
    response = np.abs(rows[:, :-2] - 2 * rows[:, 1:-1] + rows[:, 2:])
    response = response[flat[1:-1, 1:-1]]
    return float(math.sqrt(math.pi / 2) * response.mean() / 6.0) if response.size else float("nan")


def noise_sigma(rgb: np.ndarray) -> float:
    """Noise standard deviation in 8-bit levels: Immerkaer's (1996) Laplacian-difference
    estimator on the flattest half of the central crop (edges and texture left out)."""
    plane = _crop(rgb)
    if min(plane.shape) < 8:
        return float("nan")
    return _immerkaer(plane, _flat(plane))


def blockiness(rgb: np.ndarray) -> float:
    """JPEG blockiness: mean absolute luma step across 8-pixel block edges over the mean step
    elsewhere, horizontally and vertically (1 = no blocks; strong JPEG 1.5 and more)."""
    return _blockiness(_crop(rgb))


def _blockiness(plane: np.ndarray) -> float:
    """:func:`blockiness` of a luma plane whose rows and columns 8k start blocks."""
    if min(plane.shape) < 16:
        return float("nan")
    ratios = []
    for axis in (0, 1):
        steps = np.abs(np.diff(plane, axis=axis)).mean(axis=1 - axis)  # (n - 1,): mean step after each row/column
        edge = np.arange(steps.size) % 8 == 7
        inside = steps[~edge].mean()
        ratios.append(steps[edge].mean() / inside if inside > 1e-6 else 1.0)
    return float(np.mean(ratios))


def _skin_region(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(skin, highlight-clipped, shadow-clipped) bool masks: clipped pixels count as skin (their
    colour is lost), except black regions touching the image's corners (a dermoscope's vignette)."""
    high = np.sort(rgb, axis=-1)[..., 1] >= 254  # two channels or more: one (red, on light skin) is common
    low = rgb.max(axis=-1) <= 3
    vignette = _touching_corners(low)
    skin = baselines.skin_pixels(rgb) | high | (low & ~vignette)
    return skin, high, low & ~vignette


def clipping(rgb: np.ndarray) -> tuple[float, float]:
    """(highlights, shadows): the share of the skin (:func:`_skin_region`) with two channels or
    more at 254 or above, and with every channel at 3 or less. A photo almost wholly black gives 1 for shadows."""
    sample = _grid(rgb)
    linear_p99 = float(np.percentile(_LINEAR[sample] @ _Y, 99))
    if linear_p99 < 0.01:  # nothing but shadow (the vignette test would discard all of it)
        return 0.0, 1.0
    skin, high, low = _skin_region(sample)
    n = max(1, int(skin.sum()))
    return float((high & skin).sum() / n), float((low & skin).sum() / n)


def change(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """(mean, 95th percentile) CIEDE2000 of ``after`` against ``before`` on a grid of pixels;
    exactly 0, without the colour conversions, where the grid is unchanged (a photo left alone)."""
    a, b = _grid(before), _grid(after)
    if np.array_equal(a, b):  # the same pixels: CIEDE2000 0 everywhere
        return 0.0, 0.0
    de = colour.ciede2000(colour.srgb_to_lab(a), colour.srgb_to_lab(b))
    return float(de.mean()), float(np.percentile(de, 95))


def estimated_correction(before: np.ndarray, after: np.ndarray) -> Correction:
    """For a model without an explicit correction: the light estimated from the photo's skin
    against :data:`REFERENCE_SKIN` (the gains that would take its skin there), and the exposure
    the enhancer applied (log2 of the skin's mean linear luminance after over before)."""
    a, b = _grid(before), _grid(after)
    skin = baselines.skin_pixels(a)
    skin = skin if skin.any() else np.ones(a.shape[:2], bool)
    estimate = baselines.minkowski_illuminant(_LINEAR[a[skin]], 6.0)  # skin_illuminant, its mask kept
    level = float(estimate @ _Y)
    gains = REFERENCE_SKIN / np.maximum(estimate / level, 1e-6) if level > 0 else np.ones(3)
    gains = gains / float(gains @ _Y)
    lum_before = float((_LINEAR[a[skin]] @ _Y).mean())
    lum_after = float((_LINEAR[b[skin]] @ _Y).mean())
    ev = math.log2(lum_after / lum_before) if lum_before > 1e-6 and lum_after > 1e-6 else 0.0
    kelvin, tint = correction.light_of(gains)
    return Correction(gains=tuple(float(g) * 2.0 ** ev for g in gains), ev=ev, confidence=float("nan"),
                      kelvin=kelvin, tint=tint)


# ----------------------------------------------------------------------------- the verdict


def _reasons(m: dict[str, float], cfg: AssessConfig) -> list[str]:
    reasons = []
    if m["blur_factor"] >= cfg.blur_factor:
        reasons.append("blurred")
    if m["clipped_high"] >= cfg.clipped:
        reasons.append("overexposed")
    if m["clipped_low"] >= cfg.clipped:
        reasons.append("underexposed")
    if m["noise"] >= cfg.noise:
        reasons.append("noisy")
    return reasons


def assess(before: np.ndarray, after: np.ndarray, fix: Correction | None = None,
           cfg: AssessConfig | None = None) -> Assessment:
    """The :class:`Assessment` of one photo: ``before`` as decoded, ``after`` as enhanced (same
    shape), ``fix`` the model's correction (None: the light is estimated from the photo). Never
    raises for a small photo: under ``assess.min_side`` pixels it is ``retake (too-small)``."""
    cfg = cfg or AssessConfig()
    before, after = np.asarray(before, np.uint8), np.asarray(after, np.uint8)
    if before.ndim != 3 or before.shape[2] != 3 or after.shape != before.shape:
        raise ValueError(f"expected two (H, W, 3) uint8 images of one shape, got {before.shape} and {after.shape}")
    h, w = before.shape[:2]
    de_mean, de_p95 = change(before, after)
    if min(h, w) < cfg.min_side:
        nan = float("nan")
        return Assessment("retake", ("too-small",), 6500.0, 0.0, (1.0, 1.0, 1.0), 0.0, nan, "none", de_mean,
                          de_p95, nan, nan, nan, nan, nan, w, h)
    source = "model" if fix is not None else "estimated"
    fix = fix if fix is not None else estimated_correction(before, after)
    high, low = clipping(before)
    plane = _crop(before)  # the noise and the blur share the crop and its flat half
    flat = _flat(plane) if min(plane.shape) >= 8 else np.zeros(plane.shape, bool)
    noise, blocks = _immerkaer(plane, flat), _blockiness(plane)
    blur = (_blur(plane, flat, _crop_origin(before), noise, blocks=blocks) if min(plane.shape) >= 4 * FACTORS[-1]
            else float("nan"))
    m = {"blur_factor": blur, "clipped_high": high, "clipped_low": low, "noise": noise}
    reasons = _reasons(m, cfg)
    verdict = "retake" if reasons else "corrected" if de_mean >= cfg.change else "good"
    return Assessment(verdict, tuple(reasons), fix.kelvin, fix.tint, fix.gains, fix.ev, fix.confidence, source,
                      de_mean, de_p95, m["blur_factor"], high, low, m["noise"], blocks, w, h)


def assess_batch(enhancer, images: Sequence[np.ndarray], cfg: AssessConfig | None = None
                 ) -> tuple[list[np.ndarray], list[Assessment]]:
    """Enhance and assess photos with one :class:`skinray.predict.Enhancer`: (outputs, assessments)."""
    arrays = [np.asarray(image, np.uint8) for image in images]
    results = enhancer.enhance_corrected(arrays)  # one pass: the outputs and the corrections they applied
    return [o for o, _ in results], [assess(a, o, f, cfg) for a, (o, f) in zip(arrays, results)]
