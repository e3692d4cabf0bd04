"""Decoding and encoding photographs: bytes in, correctly oriented RGB uint8 HWC out.

Every image path in skinray (training data, batch enhancement, the online endpoint) decodes
through :func:`decode`, so that grayscale, RGBA, palette, 16-bit, CMYK and EXIF-rotated photos
all become the same thing: an ``(H, W, 3)`` ``uint8`` array, upright as a viewer shows it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skinray.errors import ImageDecodeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
DEFAULT_MAX_PIXELS = 100_000_000  # decompression-bomb guard: refuse larger images before decoding


def is_image_key(key: str) -> bool:
    return key.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8. Alpha is composited onto white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str]:
    """Read only the header: (width, height, format). Raises ImageDecodeError if not an image
    or if its declared pixel count exceeds ``max_pixels``."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError("not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"unreadable image header ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError(f"{width}x{height} = {width * height} pixels exceeds the limit of "
                               f"{max_pixels} (possible decompression bomb)")
    return width, height, img.format or "unknown"


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image bytes -> upright RGB, ``(H, W, 3)`` ``uint8``.

    Raises :class:`ImageDecodeError` (with a reason) for empty, truncated or non-image bytes and
    for images over ``max_pixels``, checked from the header before pixels are decoded.
    """
    probe(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode image ({exc})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageDecodeError(f"decoded to unexpected shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


ENCODERS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}


def encode(rgb: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """(H, W, 3) uint8 -> image bytes. PNG uses compress_level=1 (lossless, several times faster
    than the default level); JPEG keeps full-resolution chroma (4:4:4) at quality >= 90."""
    fmt = {"jpg": "jpeg", "tif": "tiff"}.get(fmt.lower(), fmt.lower())
    if fmt not in ENCODERS:
        raise ValueError(f"unsupported output format {fmt!r}; use one of {sorted(ENCODERS)}")
    options: dict = {}
    if fmt == "png":
        options = {"compress_level": 1}
    elif fmt == "jpeg":
        options = {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "webp":
        options = {"quality": quality}
    out = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB").save(out, format=ENCODERS[fmt], **options)
    return out.getvalue()


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scale the shorter side to ``size`` and centre-crop to ``(size, size, 3)`` uint8."""
    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = Image.fromarray(rgb)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))
