"""Classical enhancement baselines to compare the learned model against.

Every baseline has the same contract: ``fn(rgb)`` takes an sRGB ``uint8`` image of shape
``(H, W, 3)`` and returns a new ``uint8`` image of the same shape; the input is never modified.
:data:`BASELINES` maps a short name to each of them.

* :func:`gray_world` and :func:`shades_of_gray`: white balance (colour constancy) by a
  per-channel von Kries gain, computed and applied in linear light.
* :func:`shades_of_gray_skin`: Shades of Gray with a skin prior: the illuminant estimated on
  the photo's skin pixels (its dominant chromaticity, :func:`skin_pixels`), corrected towards the skin chromaticity of
  reference good photos (:func:`skin_reference`), the skin's luminance kept.
* :func:`clahe_lightness`: local contrast (CLAHE) on CIELAB ``L*`` only, ``a*``/``b*`` kept.

Only :func:`clahe_lightness` needs scikit-image, and imports it when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from skinray.colour import lab_to_srgb, linear_to_srgb, srgb_to_lab, srgb_to_linear, to_uint8


def _check_image(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 RGB image, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {arr.shape}")
    return arr


def minkowski_illuminant(linear: np.ndarray, p: float) -> np.ndarray:
    """Illuminant estimate of Finlayson & Trezzi (2004): the Minkowski p-norm mean per channel,
    ``e_c = mean(I_c ** p) ** (1 / p)``, over linear RGB of shape ``(..., 3)``.

    ``p = 1`` is Gray World (the mean), ``p = inf`` is White Patch / max-RGB (the maximum).
    Returns shape ``(3,)``.
    """
    if not p >= 1.0:
        raise ValueError(f"the Minkowski norm needs p >= 1 (or inf), got {p}")
    pixels = np.asarray(linear, dtype=np.float64).reshape(-1, 3)
    if np.isinf(p):
        return pixels.max(axis=0)
    return np.mean(pixels ** p, axis=0) ** (1.0 / p)


def von_kries_gains(illuminant: np.ndarray) -> np.ndarray:
    """Diagonal gains that map ``illuminant`` to the neutral grey of its own mean level.

    The gains are ``mean(e) / e_c``, so the correction turns the illuminant grey without making
    the image as a whole brighter or darker. A channel with ``e_c = 0`` (nothing to scale)
    keeps gain 1.
    """
    e = np.asarray(illuminant, dtype=np.float64)
    safe = np.where(e > 0.0, e, 1.0)
    return np.where(e > 0.0, e.mean() / safe, 1.0)


def shades_of_gray(rgb: np.ndarray, p: float = 6.0, target: np.ndarray | None = None) -> np.ndarray:
    """Shades of Gray white balance (Finlayson & Trezzi 2004), ``uint8`` in and out.

    The illuminant is the per-channel Minkowski ``p``-norm mean of the linear-light image
    (:func:`minkowski_illuminant`); each channel is then scaled by :func:`von_kries_gains` in
    linear light and re-encoded. ``p = 6`` is the paper's best overall choice; ``p = 1`` is Gray
    World. Channels pushed past white are clipped.

    ``target`` (linear RGB, shape (3,)): map the estimate to this colour instead of to grey,
    e.g. the mean estimate of well-exposed reference photos (:func:`reference_illuminant`):
    skin does not average to grey, so plain Shades of Gray shifts every skin tone towards it.
    """
    linear = srgb_to_linear(_check_image(rgb))
    estimate = minkowski_illuminant(linear, p)
    if target is None:
        gains = von_kries_gains(estimate)
    else:
        gains = np.where(estimate > 0.0, np.asarray(target, np.float64) / np.maximum(estimate, 1e-12), 1.0)
    return to_uint8(linear_to_srgb(linear * gains))


def reference_illuminant(photos: Iterable[np.ndarray], p: float = 6.0) -> np.ndarray:
    """Mean Minkowski ``p``-norm estimate (linear RGB) of well-exposed ``uint8`` photos: the
    target for :func:`shades_of_gray` with ``target=`` on photos of the same kind."""
    estimates = [minkowski_illuminant(srgb_to_linear(_check_image(img)), p) for img in photos]
    if not estimates:
        raise ValueError("reference_illuminant needs at least one photo")
    return np.mean(estimates, axis=0)


# Skin pixels: the photo's dominant colour. A von Kries cast moves every pixel's linear-light log
# chromaticity (log R/G, log B/G) by the same offset, so pixels near the photo's median chromaticity
# are the same pixels whatever the light: in a skin photo, the skin around the lesion.
SKIN_RADIUS = 0.2  # a skin pixel's log chromaticity lies within this of the median's (each axis ~ 20%)
SKIN_CLIPPED = 250 / 255  # every channel at or above this: a white highlight, no evidence of the light
SKIN_DARK = 0.1  # pixels darker than this share of the 95th-percentile luminance (hair, vignette)
SKIN_MIN_SHARE = 0.01  # fewer skin pixels than this share of the image: fall back to all usable ones
_LUMINANCE = np.array([0.2126, 0.7152, 0.0722])  # linear sRGB luminance weights


def skin_pixels(rgb: np.ndarray) -> np.ndarray:
    """Which pixels of a ``uint8`` image (H, W, 3) are plausibly skin, as a bool (H, W) array.

    Usable pixels: not white (some channel below :data:`SKIN_CLIPPED`; skin clipped in one channel
    by a strong cast still counts, or a warm cast would leave only the lesion) and not dark (luminance
    at least :data:`SKIN_DARK` of the image's 95th percentile: hairs, the lesion's darkest core, a
    dermoscope's black corners). Skin: usable pixels whose linear-light log chromaticity (log R/G,
    log B/G) lies within :data:`SKIN_RADIUS` of the usable pixels' median: the photo's dominant
    colour, chosen the same way under any cast (a cast shifts every log chromaticity alike); a
    lesion, ink marks or gel differ from it. If fewer than :data:`SKIN_MIN_SHARE` of the pixels
    qualify, every usable pixel counts; that can be none."""
    arr = _check_image(rgb)
    linear = srgb_to_linear(arr)
    luminance = linear @ _LUMINANCE
    usable = (arr.min(axis=-1) < SKIN_CLIPPED * 255) & np.all(linear > 0, axis=-1)
    usable &= luminance >= SKIN_DARK * np.percentile(luminance, 95)
    if not usable.any():
        return usable
    with np.errstate(divide="ignore", invalid="ignore"):
        chroma = np.log(linear[..., [0, 2]] / linear[..., 1:2])  # (H, W, 2): log R/G, log B/G
    centre = np.median(chroma[usable], axis=0)
    skin = usable & np.all(np.abs(chroma - centre) <= SKIN_RADIUS, axis=-1)
    return skin if skin.mean() >= SKIN_MIN_SHARE else usable


def skin_illuminant(rgb: np.ndarray, p: float = 6.0) -> np.ndarray | None:
    """The Minkowski ``p``-norm estimate (linear RGB, shape (3,)) over the skin pixels of a
    ``uint8`` image (:func:`skin_pixels`), scaled to luminance 1 (a chromaticity); None when the
    image has no usable pixel."""
    arr = _check_image(rgb)
    skin = skin_pixels(arr)
    if not skin.any():
        return None
    estimate = minkowski_illuminant(srgb_to_linear(arr)[skin], p)
    level = float(estimate @ _LUMINANCE)
    return estimate / level if level > 0 else None


# Exposure evidence: good photos (ISIC dermoscopy) have a 99th-percentile linear luminance of at
# least 0.30 and a median of at most 0.80 in 99% of cases (DegradeConfig's dark_p99 and bright_p50
# draw exposure faults past these lines). Only a photo past them is re-exposed: otherwise a dark
# photo may be a darker skin, not an under-exposed one.
SKIN_DARK_P99 = 0.25
SKIN_BRIGHT_P50 = 0.80


@dataclass(frozen=True)
class SkinReference:
    """What good photos look like to :func:`shades_of_gray_skin`: the mean skin chromaticity
    (linear RGB at luminance 1, shape (3,)) and the median 99th-percentile and median linear
    luminance."""

    chroma: np.ndarray
    p99: float
    p50: float


def _luminance_percentiles(rgb: np.ndarray) -> tuple[float, float]:
    luminance = srgb_to_linear(rgb[::2, ::2]) @ _LUMINANCE
    p99, p50 = np.percentile(luminance, [99, 50])
    return float(p99), float(p50)


def skin_reference(photos: Iterable[np.ndarray], p: float = 6.0) -> SkinReference:
    """The mean :func:`skin_illuminant` of good ``uint8`` photos (luminance 1) and their median
    luminance percentiles: the target of :func:`shades_of_gray_skin` for photos of the same kind."""
    photos = [_check_image(img) for img in photos]
    estimates = [e for e in (skin_illuminant(img, p) for img in photos) if e is not None]
    if not estimates:
        raise ValueError("skin_reference needs at least one photo with usable skin pixels")
    mean = np.mean(estimates, axis=0)
    p99, p50 = np.median([_luminance_percentiles(img) for img in photos], axis=0)
    return SkinReference(mean / float(mean @ _LUMINANCE), float(p99), float(p50))


def exposure_gain(rgb: np.ndarray, reference: SkinReference) -> float:
    """A linear-light gain only where the photo shows an exposure fault: a 99th-percentile
    luminance below :data:`SKIN_DARK_P99` is brought to the reference's, a median above
    :data:`SKIN_BRIGHT_P50` to the reference's median; 1 otherwise."""
    p99, p50 = _luminance_percentiles(_check_image(rgb))
    if p99 < SKIN_DARK_P99:
        return reference.p99 / max(p99, 1e-4)
    if p50 > SKIN_BRIGHT_P50:
        return reference.p50 / p50
    return 1.0


def shades_of_gray_skin(rgb: np.ndarray, reference: SkinReference, p: float = 6.0) -> np.ndarray:
    """Shades of Gray with a skin prior, ``uint8`` in and out: the illuminant is estimated on the
    skin pixels (:func:`skin_illuminant`) and each channel scaled in linear light so that the
    estimate takes the reference's skin chromaticity (:func:`skin_reference` of good photos), its
    luminance kept; the exposure changes only where the photo shows a fault
    (:func:`exposure_gain`): a darker skin is not an under-exposed lighter one. Unlike
    :func:`shades_of_gray`, it neither pushes skin towards grey nor lets a lesion, hair, a dark
    vignette or white highlights weigh on the estimate. An image with no usable pixel comes back
    unchanged."""
    arr = _check_image(rgb)
    estimate = skin_illuminant(arr, p)
    if estimate is None:
        return np.array(arr, copy=True)
    gains = reference.chroma / np.maximum(estimate, 1e-12) * exposure_gain(arr, reference)
    return to_uint8(linear_to_srgb(srgb_to_linear(arr) * gains))


def gray_world(rgb: np.ndarray) -> np.ndarray:
    """Gray World white balance (Buchsbaum 1980): :func:`shades_of_gray` with ``p = 1``."""
    return shades_of_gray(rgb, p=1.0)


def clahe_lightness(rgb: np.ndarray, clip_limit: float = 0.01,
                    kernel_size: int | None = None) -> np.ndarray:
    """CLAHE on CIELAB lightness only, ``uint8`` in and out; ``a*`` and ``b*`` are kept.

    Runs ``skimage.exposure.equalize_adapthist`` on ``L* / 100`` with its defaults
    (``clip_limit=0.01``, tiles of 1/8 of the image side, 256 bins) and converts back with
    :func:`skinray.colour.lab_to_srgb`; colours pushed out of the sRGB gamut are clipped.
    Note that scikit-image stretches the lightness range to the full 0..100 before and after
    equalizing, so this also does a global auto-levels. An image of uniform lightness (which
    scikit-image would turn white) is returned unchanged.
    """
    from skimage.exposure import equalize_adapthist

    lab = srgb_to_lab(_check_image(rgb))
    lightness = np.clip(lab[..., 0] / 100.0, 0.0, 1.0)
    if np.ptp(np.round(lightness * 65535.0)) == 0.0:  # flat at scikit-image's 16-bit precision
        return np.array(rgb, copy=True)
    lab[..., 0] = 100.0 * equalize_adapthist(lightness, kernel_size=kernel_size,
                                             clip_limit=clip_limit)
    return to_uint8(lab_to_srgb(lab))


BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gray_world": gray_world,
    "shades_of_gray": shades_of_gray,
    "clahe": clahe_lightness,
}
