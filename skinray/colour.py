"""Colour science in pure numpy: sRGB <-> CIELAB, CIEDE2000 and no-reference image statistics.

Input contract for every RGB argument here: an array of shape ``(..., 3)`` (usually an image,
``(H, W, 3)``), gamma-encoded sRGB, either ``uint8`` (0..255) or floating point (0..1). Float
values are used as given (not clipped), so keep them in ``[0, 1]``. Lab arrays are ``float64``
``(..., 3)`` holding ``L*`` (0..100), ``a*`` and ``b*``.

The conversion uses the sRGB primaries matrix, the D65 2-degree white point
``(0.95047, 1, 1.08883)`` and the rounded CIE constants ``0.008856`` / ``7.787``: the same
conventions as ``skimage.color.rgb2lab``, which it matches to float precision. One consequence
of that (standard, rounded) white point: sRGB white maps to ``L* = 100, a* = -0.0025,
b* = +0.0047`` rather than exactly ``(100, 0, 0)`` (and other greys likewise, scaled by ``L*``),
a colour difference of 0.006 ΔE00, far below visibility.
"""

from __future__ import annotations

import numpy as np

# sRGB (IEC 61966-2-1) linear RGB -> CIE XYZ, D65.
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_EPSILON = 0.008856  # CIE: below this relative luminance the Lab curve is linear
_KAPPA = 7.787  # slope of that linear part, in f(t) = KAPPA * t + 16/116
_F_EPSILON = np.cbrt(_EPSILON)  # f(EPSILON): the switch point of the inverse curve
_POW25_7 = 25.0 ** 7


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


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Decode the sRGB transfer curve: ``uint8`` or float RGB -> linear-light ``float64``."""
    c = as_float_rgb(rgb)
    return np.where(c > 0.04045, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Encode linear-light RGB with the sRGB curve. Clips to the gamut first; float 0..1 out."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(c > 0.0031308, 1.055 * c ** (1.0 / 2.4) - 0.055, 12.92 * c)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (``uint8`` or float 0..1, shape ``(..., 3)``) -> CIELAB ``float64``, D65.

    Black is exactly ``(0, 0, 0)``; white is ``(100, -0.0025, 0.0047)`` (see the module notes).
    """
    xyz = srgb_to_linear(rgb) @ _XYZ_FROM_RGB.T
    t = xyz / _WHITE_D65
    f = np.where(t > _EPSILON, np.cbrt(t), _KAPPA * t + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) -> sRGB float ``float64`` in 0..1, the exact inverse of :func:`srgb_to_lab`.

    Colours outside the sRGB gamut are clipped per channel in linear light. Pass the result to
    :func:`to_uint8` for an 8-bit image.
    """
    lab = np.asarray(lab, dtype=np.float64)
    _check_rgb_shape(lab)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    t = np.where(f > _F_EPSILON, f ** 3, (f - 16.0 / 116.0) / _KAPPA)
    return linear_to_srgb((t * _WHITE_D65) @ _RGB_FROM_XYZ.T)


def _hue_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hue angle in [0, 360); 0 for the achromatic a = b = 0."""
    return np.mod(np.degrees(np.arctan2(b, a)), 360.0)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference ΔE00 between Lab arrays of shape ``(..., 3)``, per element.

    Follows Sharma, Wu & Dalal (2005), "The CIEDE2000 colour-difference formula: implementation
    notes, supplementary test data, and mathematical observations", equations (1)-(16), with
    ``kL = kC = kH = 1``, including their hue rules: an achromatic colour (``C' = 0``) has
    ``Δh' = 0`` and contributes ``h1' + h2'`` to the mean hue, and hue differences are taken
    the short way round the circle (ties at exactly 180 degrees are not wrapped).
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    _check_rgb_shape(lab1)
    _check_rgb_shape(lab2)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]

    # (2)-(7): a' rescaled around the neutral axis, chroma C' and hue h' in degrees.
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    g = 0.5 * (1.0 - np.sqrt(c_mean ** 7 / (c_mean ** 7 + _POW25_7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = _hue_degrees(a1p, b1), _hue_degrees(a2p, b2)

    # (8)-(11): differences in lightness, chroma and hue.
    chromatic = (c1p * c2p) != 0.0
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(chromatic, dh, 0.0)
    dL = L2 - L1
    dC = c2p - c1p
    dH = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    # (12)-(14): means; the mean hue goes the short way round the circle.
    L_bar = (L1 + L2) / 2.0
    c_bar = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) <= 180.0, h_sum / 2.0,
                     np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0))
    h_bar = np.where(chromatic, h_bar, h_sum)

    # (15)-(22): weighting functions and the rotation term.
    hb = np.radians(h_bar)
    t = (1.0 - 0.17 * np.cos(hb - np.radians(30.0)) + 0.24 * np.cos(2.0 * hb)
         + 0.32 * np.cos(3.0 * hb + np.radians(6.0)) - 0.20 * np.cos(4.0 * hb - np.radians(63.0)))
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    r_c = 2.0 * np.sqrt(c_bar ** 7 / (c_bar ** 7 + _POW25_7))
    l50 = (L_bar - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / np.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * c_bar
    s_h = 1.0 + 0.015 * c_bar * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c

    tl, tc, th = dL / s_l, dC / s_c, dH / s_h
    return np.sqrt(tl ** 2 + tc ** 2 + th ** 2 + r_t * tc * th)


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
