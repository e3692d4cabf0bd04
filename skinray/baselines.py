"""Classical enhancement baselines to compare the learned model against.

Every baseline has the same contract: ``fn(rgb)`` takes an sRGB ``uint8`` image of shape
``(H, W, 3)`` and returns a new ``uint8`` image of the same shape; the input is never modified.
:data:`BASELINES` maps a short name to each of them.

* :func:`gray_world` and :func:`shades_of_gray`: white balance (colour constancy) by a
  per-channel von Kries gain, computed and applied in linear light.
* :func:`clahe_lightness`: local contrast (CLAHE) on CIELAB ``L*`` only, ``a*``/``b*`` kept.

Only :func:`clahe_lightness` needs scikit-image, and imports it when called.
"""

from __future__ import annotations

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
