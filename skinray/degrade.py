"""Synthetic degradations of clean photos: pure functions, randomness passed in.

Tensor contract for every function here: images are ``float32`` arrays of shape ``(H, W, 3)``
with values in ``[0, 1]`` (RGB); outputs have the same shape, dtype and range. Random choices
come from a ``numpy.random.Generator`` argument, never from global state.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from skinray.config import DegradeConfig

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale all channels: factor 0 is black, 1 is unchanged, 2 is twice as bright (clipped)."""
    return np.clip(img * factor, 0.0, 1.0)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's mean grey level: 0 is flat grey, 1 unchanged."""
    mean = float((img @ _LUMA).mean())
    return np.clip((img - mean) * factor + mean, 0.0, 1.0)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the per-pixel grey: 0 is grayscale, 1 unchanged, >1 more colourful."""
    gray = (img @ _LUMA)[..., None]
    return np.clip((img - gray) * factor + gray, 0.0, 1.0)


def adjust_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate hue by ``shift`` turns (-0.5..0.5) in YIQ space (keeps luma)."""
    angle = 2.0 * np.pi * shift
    cos, sin = np.cos(angle), np.sin(angle)
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    rotate = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], np.float32)
    matrix = np.linalg.inv(to_yiq) @ rotate @ to_yiq  # (3, 3) acting on RGB column vectors
    return np.clip(img @ matrix.T.astype(np.float32), 0.0, 1.0)


def down_up(img: np.ndarray, factor: float) -> np.ndarray:
    """Downscale by ``factor`` (>= 1) with area averaging, then upscale back bicubically: blur
    that mimics a low-resolution camera. factor 1 returns the input unchanged."""
    if factor <= 1.0:
        return img
    h, w = img.shape[:2]
    small = (max(1, round(w / factor)), max(1, round(h / factor)))
    channels = []
    for c in range(3):  # Pillow resizes float images one channel ("F" mode) at a time
        plane = Image.fromarray(np.ascontiguousarray(img[..., c]), mode="F")
        plane = plane.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BICUBIC)
        channels.append(np.asarray(plane))
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


@dataclass(frozen=True)
class Degradation:
    """The random draws for one image; ``jitter`` False means colours are untouched."""

    jitter: bool
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    scale: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


def sample(rng: np.random.Generator, cfg: DegradeConfig) -> Degradation:
    """Draw one image's degradation: colour jitter with probability ``cfg.jitter_fraction``,
    and always a down-up scale factor from ``[cfg.scale_min, cfg.scale_max]``."""
    jitter = bool(rng.random() < cfg.jitter_fraction)
    scale = float(rng.uniform(cfg.scale_min, cfg.scale_max))
    if not jitter:
        return Degradation(jitter=False, scale=scale)
    return Degradation(
        jitter=True,
        brightness=float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)),
        contrast=float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)),
        saturation=float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)),
        hue=float(rng.uniform(-cfg.hue, cfg.hue)),
        scale=scale,
    )


def apply(img: np.ndarray, d: Degradation) -> np.ndarray:
    """Apply a drawn degradation: colour jitter (if any), then the down-up blur."""
    out = img
    if d.jitter:
        out = adjust_brightness(out, d.brightness)
        out = adjust_contrast(out, d.contrast)
        out = adjust_saturation(out, d.saturation)
        out = adjust_hue(out, d.hue)
    return down_up(out, d.scale).astype(np.float32)


def apply_uint8(img: np.ndarray, d: Degradation) -> np.ndarray:
    """:func:`apply` for photos as stored: ``(H, W, 3)`` ``uint8`` in and out (rounded)."""
    degraded = apply(img.astype(np.float32) / 255.0, d)
    return np.clip(degraded * 255.0 + 0.5, 0, 255).astype(np.uint8)


def key_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that is a pure function of (seed, key): fixed validation degradations."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
