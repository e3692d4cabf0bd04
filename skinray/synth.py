"""Procedural skin photographs for demos and tests: deterministic, no downloads.

Each image is a pure function of (seed, index, size): a skin tone drawn from a range of tones,
soft uneven illumination and redness, then detail at several scales as a skin close-up shows it:
a crosshatch of fine skin lines, pores, micro-texture, a pigmented lesion with an irregular
border, uneven pigment, a reticular pigment network and dots/globules, thick hairs and fine
vellus hairs, dermoscope vignetting and sensor grain.

Scale: a photo shows the same field of skin at any ``size``; ``size / 256`` converts the
feature sizes below (given in pixels at 256 px) to this photo's pixels. Features smaller than a
pixel are drawn at about a pixel with their contrast scaled down by the area they lose, which is
what a camera of that resolution would record, so a 96 px photo looks like a 256 px one reduced.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from skinray import storage

# Linear-ish sRGB skin tones from very light to dark (approximate Fitzpatrick I-VI).
SKIN_TONES = np.array([
    [246, 220, 200], [236, 196, 170], [222, 174, 140], [196, 142, 104],
    [160, 106, 72], [112, 72, 48],
], dtype=np.float32) / 255.0
LESION_TONES = np.array([[120, 72, 48], [82, 48, 34], [52, 32, 28], [150, 90, 70]], dtype=np.float32) / 255.0
# Darkening of a skin-surface feature per channel: furrows and pores take more green and blue.
_SHADE = np.array([0.85, 1.0, 1.1], np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Micro-texture octaves: (period in px at 256 px, amplitude); most weight at 2.5-4 px.
_OCTAVES = [(16, 0.5), (8, 0.8), (4, 2.0), (2.5, 1.8), (1.5, 0.8)]
_MIN_WIDTH = 0.6  # px: the thinnest line or dot drawn; thinner features keep their area, not their peak


def _smooth_noise(rng: np.random.Generator, size: int, cells: float) -> np.ndarray:
    """Value noise in about [-1, 1] (std about 0.46), shape (size, size): a random cells x cells
    grid, bicubically upsampled."""
    cells = max(2, min(int(cells), size))
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img)


def _fractal_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Micro-texture of the skin surface, shape (size, size), std about 1.4: octaves of value
    noise with periods 16 to 1.5 px (at 256 px). An octave finer than 1.5 px in this photo is drawn at
    1.5 px with its amplitude scaled down as averaging over a pixel would."""
    out = np.zeros((size, size), np.float32)
    for period, amplitude in _OCTAVES:
        px = period * scale
        out += amplitude * min(1.0, px / 1.5) * _smooth_noise(rng, size, size / max(px, 1.5))
    return out


def _splat(rng: np.random.Generator, shape: tuple[int, int], count: int, sigma: float,
           where: np.ndarray | None = None) -> np.ndarray:
    """``count`` soft round dots of radius ``sigma`` px with random depths in [0.4, 1] on a
    ``shape`` canvas: peak about 1 for a dot at least ``_MIN_WIDTH`` wide, a smaller peak (same
    area) for a thinner one. ``where``, a map in [0, 1] of that shape, thins them out where low."""
    h, w = shape
    impulses = np.zeros(h * w, np.float32)
    if count > 0:
        ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
        depth = rng.uniform(0.4, 1.0, count).astype(np.float32)
        if where is not None:
            depth *= where[ys, xs] > rng.uniform(0, 1, count)
        np.add.at(impulses, ys * w + xs, depth)
    drawn = max(sigma, _MIN_WIDTH)
    # A unit impulse blurred by `drawn` peaks at 1 / (2 pi drawn^2); a thinner dot keeps its area.
    gain = np.float32(2 * np.pi * sigma ** 2)
    return ndimage.gaussian_filter(impulses.reshape(h, w), drawn, truncate=3.0) * gain


def _skin_lines(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Fine skin creases in [0, 1], shape (size, size): two or three families of wavy, broken, thin
    parallel lines at different angles, which cross into the rhomboid pattern of the skin surface."""
    out = np.zeros((size, size), np.float32)
    coords = np.arange(size, dtype=np.float32)
    base = rng.uniform(0, np.pi)
    for family in range(rng.integers(2, 4)):
        angle = base + family * rng.uniform(0.8, 1.3)
        period = rng.uniform(7, 13) * scale  # px between neighbouring creases
        # px, the crease's half-width: the first family holds the main, wider furrows.
        width = rng.uniform(1.0, 1.5) * scale if family == 0 else rng.uniform(0.5, 0.9) * scale
        drawn = max(width, _MIN_WIDTH)
        # Distance from each pixel to the nearest crease of this family, in half-widths; the
        # phase wanders.
        u = 0.5 * _smooth_noise(rng, size, max(3, size / (period * 3)))
        u += coords[None, :] * np.float32(np.cos(angle) / period)
        u += coords[:, None] * np.float32(np.sin(angle) / period)
        u -= np.rint(u)
        u *= np.float32(period / drawn)
        lines = np.exp(-u * u)
        broken = np.clip(0.55 + _smooth_noise(rng, size, max(3, size / (period * 2))), 0, 1)
        # Creases closer than a few pixels blur into an even tone in a camera (and would alias here).
        broken *= rng.uniform(0.6, 1.0) * width / drawn * np.clip((period - 2.0) / 3.0, 0.0, 1.0)
        np.maximum(out, lines * broken, out=out)
    return out


def _pigment_network(rng: np.random.Generator, size: int, scale: float,
                     window: tuple[slice, slice]) -> np.ndarray:
    """A reticular mesh in [0, 1] over ``window`` of a (size, size) photo: the borders of a
    jittered, warped Voronoi tiling with cells about 9 px across (at 256 px), as the pigment
    network of a naevus shows."""
    period = rng.uniform(7, 11) * scale
    width = rng.uniform(0.6, 1.0) * scale
    drawn = max(width, _MIN_WIDTH)
    n = int(np.ceil(size / period)) + 4  # cells across, with two to spare on each side for the warp
    jx, jy = rng.uniform(0.1, 0.9, (2, n * n)).astype(np.float32)  # each cell's seed point
    cells = max(3, size / (period * 4))
    rows, cols = window
    px = 0.35 * _smooth_noise(rng, size, cells)[window]  # position in cells, warped
    px += np.arange(cols.start, cols.stop, dtype=np.float32) / period
    py = 0.35 * _smooth_noise(rng, size, cells)[window]
    py += np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] / period
    fx, fy = np.floor(px), np.floor(py)
    cell = (fy.astype(np.int32) + 2) * n + fx.astype(np.int32) + 2
    px -= fx
    py -= fy
    first = np.full(px.shape, np.inf, np.float32)
    second = np.full(px.shape, np.inf, np.float32)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            k = cell + (di * n + dj)
            d = (px - dj - jx[k]) ** 2
            d += (py - di - jy[k]) ** 2
            np.minimum(second, np.maximum(first, d), out=second)
            np.minimum(first, d, out=first)
    distance = np.sqrt(second) - np.sqrt(first)  # about twice the distance to the border, in cells
    distance *= np.float32(0.5 * period / drawn)
    return np.exp(-distance * distance) * np.float32(width / drawn)


def _lesion_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """A blob whose radius wobbles with angle, over ``window`` (the part of the (size, size) photo
    that holds it): its soft mask in [0, 1], its depth (0 at the border, 1 half-way in), ``window``."""
    cx, cy = rng.uniform(0.35, 0.65, 2)
    base = rng.uniform(0.12, 0.24)
    amplitudes = [rng.uniform(0.0, 0.12 / h * 2) for h in range(2, 7)]  # random Fourier harmonics
    phases = rng.uniform(0, 2 * np.pi, 5)
    softness = rng.uniform(0.004, 0.015)
    reach = base * (1 + sum(amplitudes)) + softness
    window = tuple(slice(max(0, int((c - reach) * size)), min(size, int(np.ceil((c + reach) * size)) + 1))
                   for c in (cy, cx))
    yy, xx = np.mgrid[window].astype(np.float32) / size
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = sum(a * np.cos(h * angle + p) for h, a, p in zip(range(2, 7), amplitudes, phases))
    inside = base * (1.0 + wobble) - np.hypot(xx - cx, yy - cy)  # > 0 within the border
    return np.clip(inside / softness + 0.5, 0.0, 1.0), np.clip(inside / (0.5 * base), 0.0, 1.0), window


def _hair_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Hair opacity in [0, 1], shape (size, size): up to five thick dark curved strands and a few
    dozen short, faint, sub-pixel vellus hairs, drawn at 2x and reduced."""
    big = Image.new("L", (2 * size, 2 * size), 0)
    draw = ImageDraw.Draw(big)

    def strand(length: float, segments: int, bend: float, width: int, opacity: int) -> None:
        x, y = rng.uniform(0, 2 * size, 2)
        heading = rng.uniform(0, 2 * np.pi)
        points = []
        for _ in range(segments):
            points.append((float(x), float(y)))
            heading += rng.normal(0, bend)
            x, y = x + np.cos(heading) * length / segments, y + np.sin(heading) * length / segments
        draw.line(points, fill=opacity, width=width)

    for _ in range(int(rng.integers(20, 61) * min(1.0, size / 256) ** 2) + 2):  # vellus hairs
        strand(rng.uniform(0.08, 0.25) * 2 * size, 4, 0.12, 1, int(rng.uniform(70, 150)))
    for _ in range(rng.integers(0, 6)):  # terminal hairs
        strand(2.4 * size, 12, 0.15, max(1, int(rng.uniform(1.0, 2.5) * size / 128)), 255)
    return np.asarray(big.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _paint_lesion(rng: np.random.Generator, img: np.ndarray, skin: np.ndarray, size: int,
                  scale: float) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Paint a lesion into ``img`` in place: uneven pigment (two tones mixed by noise), a pigment
    network, dots and globules. Returns its mask and the window of ``img`` the mask covers."""
    mask, depth, window = _lesion_mask(rng, size)
    tones = LESION_TONES[rng.choice(len(LESION_TONES), 2, replace=False)] * (0.85 + 0.3 * skin.mean())
    tones *= min(1.0, 0.7 * float(skin @ _LUMA) / float(tones.mean(0) @ _LUMA))  # darker than the skin
    mix = (0.5 + 0.5 * _smooth_noise(rng, size, 6)[window])[..., None]
    pigment = tones[0] * mix + tones[1] * (1 - mix)
    pigment *= 1.0 + 0.08 * _smooth_noise(rng, size, size // 8)[window][..., None]
    # The network is patchy and thins out towards the border; some lesions have almost none.
    patches = np.clip(0.6 + _smooth_noise(rng, size, 5)[window], 0, 1) * (0.3 + 0.7 * depth)
    network = _pigment_network(rng, size, scale, window) * patches * rng.uniform(0.3, 0.6)
    dots = _splat(rng, mask.shape, int(rng.integers(5, 40) * scale ** 2), 0.7 * scale, mask)
    globules = _splat(rng, mask.shape, int(rng.integers(0, 12) * scale ** 2), 2.0 * scale, mask)
    pigment *= (1.0 - network - 0.5 * np.clip(dots + globules, 0, 1))[..., None]
    img[window] += (pigment - img[window]) * mask[..., None]
    return mask, window


def skin_image(seed: int, index: int, size: int = 256) -> np.ndarray:
    """One synthetic dermoscopy-like photo, ``(size, size, 3)`` ``uint8``, a pure function of its arguments."""
    rng = np.random.default_rng([seed, index])
    scale = size / 256.0
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(t)
    skin = SKIN_TONES[low] * (1 - (t - low)) + SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] * (t - low)
    img = np.empty((size, size, 3), np.float32)
    img[:] = skin
    # Uneven illumination (applied last, with the vignetting) and blotchy redness.
    light = 1.0 + 0.06 * _smooth_noise(rng, size, 3)
    img[..., 0] *= 1.0 + 0.04 * _smooth_noise(rng, size, 5)
    mask, window = _paint_lesion(rng, img, skin, size, scale)
    # Skin surface: crosshatched creases, pores and micro-texture (weaker inside the lesion).
    roughness = rng.uniform(0.7, 1.3)
    relief = _fractal_noise(rng, size, scale) * np.float32(0.045 * roughness)
    relief -= _skin_lines(rng, size, scale) * np.float32(rng.uniform(0.25, 0.45) * roughness)
    pores = _splat(rng, (size, size), int(rng.uniform(500, 1200) * scale ** 2),
                   rng.uniform(0.8, 1.3) * scale)
    relief -= pores * np.float32(rng.uniform(0.2, 0.4) * roughness)
    relief[window] *= 1 - 0.3 * mask
    img *= 1.0 + relief[..., None] * _SHADE
    # Hairs: a few thick terminal hairs and many fine vellus hairs.
    hair = 0.85 * _hair_mask(rng, size)[..., None]
    hair_tone = np.array([0.12, 0.09, 0.07], np.float32) * rng.uniform(0.6, 1.6)
    img += (hair_tone - img) * hair
    # Dermoscope vignetting: a dark falloff towards the corners.
    centred = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    radius = np.hypot(centred[None, :], centred[:, None]) / 0.5
    light *= 1.0 - rng.uniform(0.15, 0.45) * np.clip(radius - 0.55, 0, None) ** 1.5
    img *= light[..., None]
    # Sensor grain: luminance and a little chroma, per pixel at any size.
    grain = rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(0.3)
    grain += rng.standard_normal((size, size, 1), dtype=np.float32)
    img += grain * np.float32(rng.uniform(0.008, 0.016))
    img *= 255
    img += 0.5
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


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
