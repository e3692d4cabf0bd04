"""Procedural skin photographs for demos and tests: deterministic, no downloads.

Each image is a function of (seed, index) only: a skin tone drawn from a range of tones, soft
uneven illumination, pore-scale texture, a pigmented lesion with an irregular border and uneven
pigment, a few hairs, and dermoscope vignetting.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from skinray import storage

# Linear-ish sRGB skin tones from very light to dark (approximate Fitzpatrick I-VI).
SKIN_TONES = np.array([
    [246, 220, 200], [236, 196, 170], [222, 174, 140], [196, 142, 104],
    [160, 106, 72], [112, 72, 48],
], dtype=np.float32) / 255.0
LESION_TONES = np.array([[120, 72, 48], [82, 48, 34], [52, 32, 28], [150, 90, 70]], dtype=np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [-1, 1], shape (size, size): a random cells x cells grid, bicubically upsampled."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img), -1.5, 1.5)


def _lesion_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soft mask in [0, 1], shape (size, size): a blob whose radius wobbles with angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(0.35, 0.65, 2)
    angle = np.arctan2(yy - cy, xx - cx)
    radius = np.hypot(xx - cx, yy - cy)
    base = rng.uniform(0.12, 0.24)
    wobble = np.zeros_like(angle)
    for harmonic in range(2, 7):  # irregular border: a few random Fourier harmonics of the radius
        wobble += rng.uniform(0.0, 0.12 / harmonic * 2) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    edge = base * (1.0 + wobble)
    softness = rng.uniform(0.004, 0.015)
    return np.clip((edge - radius) / softness + 0.5, 0.0, 1.0)


def _hair_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Thin dark curved strands in [0, 1], shape (size, size), drawn at 2x and downsampled."""
    big = Image.new("L", (2 * size, 2 * size), 0)
    draw = ImageDraw.Draw(big)
    for _ in range(rng.integers(0, 6)):
        points = []
        x, y = rng.uniform(0, 2 * size, 2)
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            points.append((float(x), float(y)))
            heading += rng.normal(0, 0.15)
            step = 2 * size / 10
            x, y = x + np.cos(heading) * step, y + np.sin(heading) * step
        draw.line(points, fill=255, width=max(1, int(rng.uniform(1.0, 2.5) * size / 128)))
    small = big.resize((size, size), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.5))
    return np.asarray(small, dtype=np.float32) / 255.0


def skin_image(seed: int, index: int, size: int = 256) -> np.ndarray:
    """One synthetic dermoscopy-like photo, ``(size, size, 3)`` ``uint8``, a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(t)
    skin = SKIN_TONES[low] * (1 - (t - low)) + SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] * (t - low)
    img = np.ones((size, size, 3), np.float32) * skin
    # Uneven illumination and blotchy redness.
    img *= 1.0 + 0.06 * _smooth_noise(rng, size, 3)[..., None]
    img[..., 0] *= 1.0 + 0.04 * _smooth_noise(rng, size, 5)
    # Pore-scale texture.
    texture = 0.6 * _smooth_noise(rng, size, max(8, size // 6)) + 0.4 * _smooth_noise(rng, size, max(16, size // 3))
    img *= 1.0 + 0.035 * texture[..., None]
    # Lesion with uneven pigment: two tones mixed by noise, darker dots inside.
    mask = _lesion_mask(rng, size)
    tones = LESION_TONES[rng.choice(len(LESION_TONES), 2, replace=False)]
    mix = (0.5 + 0.5 * _smooth_noise(rng, size, 6))[..., None]
    pigment = tones[0] * mix + tones[1] * (1 - mix)
    pigment = pigment * (0.85 + 0.3 * skin.mean()) * (1.0 + 0.08 * _smooth_noise(rng, size, size // 8)[..., None])
    img = img * (1 - mask[..., None]) + pigment * mask[..., None]
    # Hairs.
    hair = _hair_mask(rng, size)[..., None]
    hair_tone = np.array([0.12, 0.09, 0.07], np.float32) * rng.uniform(0.6, 1.6)
    img = img * (1 - 0.85 * hair) + hair_tone * 0.85 * hair
    # Dermoscope vignetting: a dark falloff towards the corners.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    radius = np.hypot(xx, yy) / 0.5
    strength = rng.uniform(0.15, 0.45)
    img *= (1.0 - strength * np.clip(radius - 0.55, 0, None) ** 1.5)[..., None]
    # Sensor noise.
    img += rng.normal(0, 0.006, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_dataset(out: str, count: int, size: int = 256, seed: int = 0, quality: int = 92,
                  s3: storage.S3Options | None = None) -> list[str]:
    """Write ``count`` JPEGs named ``skin_00000.jpg``... under ``out`` (a folder or S3 prefix)."""
    uris = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(skin_image(seed, index, size)).save(buffer, format="JPEG", quality=quality)
        uri = storage.join(out, f"skin_{index:05d}.jpg")
        storage.write_bytes(uri, buffer.getvalue(), s3)
        uris.append(uri)
    return uris


def contact_sheet(images: list[np.ndarray], path: str | Path, columns: int = 8) -> None:
    """Save a grid of equally sized uint8 RGB images as one PNG (for looking at synth output)."""
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, img in enumerate(images):
        sheet.paste(Image.fromarray(img), ((i % columns) * w, (i // columns) * h))
    sheet.save(path)
