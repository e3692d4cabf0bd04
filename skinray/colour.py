"""Colour science: sRGB <-> CIELAB and CIEDE2000 from scikit-image, and no-reference image statistics.

Input contract for every RGB argument here: an array of shape ``(..., 3)`` (usually an image,
``(H, W, 3)``), gamma-encoded sRGB, either ``uint8`` (0..255) or floating point (0..1). Float
values are used as given (not clipped), so keep them in ``[0, 1]``. Lab arrays are ``float64``
``(..., 3)`` holding ``L*`` (0..100), ``a*`` and ``b*``.

Lab is ``skimage.color.rgb2lab`` / ``lab2rgb`` (sRGB primaries, the D65 2-degree white point
``(0.95047, 1, 1.08883)``, the rounded CIE constants ``0.008856`` / ``7.787``) and ΔE00 is
``skimage.color.deltaE_ciede2000``; this module fixes the dtype contract above. One consequence
of that (standard, rounded) white point: sRGB white maps to ``L* = 100, a* = -0.0025,
b* = +0.0047`` rather than exactly ``(100, 0, 0)`` (and other greys likewise, scaled by ``L*``),
a colour difference of 0.006 ΔE00, far below visibility.
"""

from __future__ import annotations

import warnings

import numpy as np
from skimage import color as skcolor


def _check_rgb_shape(arr: np.ndarray) -> None:
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB array of shape (..., 3), got shape {arr.shape}")


def as_float_rgb(rgb: np.ndarray) -> np.ndarray:
    """``uint8`` (0..255) or float (0..1) RGB of shape ``(..., 3)`` -> ``float64`` in 0..1."""
    arr = np.asarray(rgb)
    _check_rgb_shape(arr)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64)
    raise TypeError(f"expected uint8 (0..255) or float (0..1) RGB, got dtype {arr.dtype}")


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in 0..1 -> ``uint8``, rounded to the nearest level and clipped to 0..255."""
    return np.clip(np.round(np.asarray(rgb, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _decode_curve(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.04045, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


_LINEAR8 = _decode_curve(np.arange(256, dtype=np.float64) / 255.0)  # uint8 level -> linear: the same numbers, looked up


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Decode the sRGB transfer curve: ``uint8`` or float RGB -> linear-light ``float64``."""
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        _check_rgb_shape(arr)
        return _LINEAR8[arr]
    return _decode_curve(as_float_rgb(arr))


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Encode linear-light RGB with the sRGB curve. Clips to the gamut first; float 0..1 out."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(c > 0.0031308, 1.055 * c ** (1.0 / 2.4) - 0.055, 12.92 * c)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (``uint8`` or float 0..1, shape ``(..., 3)``) -> CIELAB ``float64``, D65.

    Black is exactly ``(0, 0, 0)``; white is ``(100, -0.0025, 0.0047)`` (see the module notes).
    """
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:  # rgb2lab's own steps, the transfer curve looked up (the same numbers)
        return skcolor.xyz2lab(srgb_to_linear(arr) @ skcolor.colorconv.xyz_from_rgb.T)
    return skcolor.rgb2lab(as_float_rgb(arr))


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) -> sRGB float ``float64`` in 0..1, the inverse of :func:`srgb_to_lab`.

    Colours outside the sRGB gamut are clipped: a negative ``Z`` to 0 (scikit-image's warning
    about it is silenced: clipping is the documented result), then each channel to 0..1. Pass
    the result to :func:`to_uint8` for an 8-bit image.
    """
    lab = np.asarray(lab, dtype=np.float64)
    _check_rgb_shape(lab)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*negative Z values", category=UserWarning)
        return skcolor.lab2rgb(lab)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference ΔE00 between Lab arrays of shape ``(..., 3)``, per element.

    ``skimage.color.deltaE_ciede2000`` with ``kL = kC = kH = 1``: Sharma, Wu & Dalal (2005),
    "The CIEDE2000 colour-difference formula: implementation notes, supplementary test data,
    and mathematical observations", equations (1)-(16).
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    _check_rgb_shape(lab1)
    _check_rgb_shape(lab2)
    return skcolor.deltaE_ciede2000(lab1, lab2, channel_axis=-1)


def mean_ciede2000(rgb_a: np.ndarray, rgb_b: np.ndarray) -> float:
    """Mean ΔE00 between two sRGB images of the same shape (``uint8`` or float, see above)."""
    a, b = np.asarray(rgb_a), np.asarray(rgb_b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean(ciede2000(srgb_to_lab(a), srgb_to_lab(b))))


def mean_brightness(rgb: np.ndarray) -> float:
    """Mean lightness ``L*`` of an sRGB image, 0 (black) .. 100 (white)."""
    return float(np.mean(srgb_to_lab(rgb)[..., 0]))


def contrast(rgb: np.ndarray) -> float:
    """Global contrast: the standard deviation of ``L*`` over the image (0 for a flat image)."""
    return float(np.std(srgb_to_lab(rgb)[..., 0]))


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness M on the 0..255 scale (0 for any gray image).

    ``rg = R - G``, ``yb = (R + G) / 2 - B`` on gamma-encoded values;
    ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)``. In their study
    about 15 is "slightly", 33 "moderately", 59 "quite" and 82 "highly" colourful.
    """
    c = as_float_rgb(rgb).reshape(-1, 3) * 255.0
    rg = c[:, 0] - c[:, 1]
    yb = 0.5 * (c[:, 0] + c[:, 1]) - c[:, 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
