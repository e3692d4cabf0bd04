"""Decoding and encoding photographs: bytes in, correctly oriented sRGB uint8 HWC out.

Every image path in skinray (training data, batch enhancement, the online endpoint, evaluate)
decodes through :func:`decode` / :func:`decode_photo`, so that grayscale, RGBA, palette, 16-bit,
CMYK, HEIC and EXIF-rotated photos, in any colour space their ICC profile names, all become the
same thing: an ``(H, W, 3)`` ``uint8`` sRGB array, upright as a viewer shows it.

Colour management: an embedded ICC profile (RGB, CMYK or gray) is converted to sRGB with
littlecms (Pillow's ``ImageCms``), rendering intent *relative colorimetric*: colours inside sRGB
(nearly all skin tones) keep their measured values and only out-of-gamut colours are clipped,
whereas *perceptual* would compress every colour of profiles that carry perceptual tables, i.e.
shift the skin tones skinray is asked to correct. (For the matrix/curve profiles of phones and
cameras - Display P3, Adobe RGB - littlecms gives the same result for both intents.) A profile
that names sRGB is not converted; a profile littlecms cannot read or use is ignored (the pixels
are taken as sRGB) and reported in :attr:`Decoded.warning`, never an error. Outputs are written
as sRGB and carry the sRGB profile (:func:`encode`).

The formats, extensions and Content-Types skinray reads and writes are listed here and only here.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError, features

from skinray.config import MAX_PIXELS
from skinray.errors import EnhanceStopped, ImageDecodeError
from skinray.image_limits import DEFAULT_LIMITS, DecodeLimits, ImageLimitError  # noqa: F401 - re-exported
from skinray.image_limits import check as check_limits

try:  # HEIC/HEIF (iPhone photos) through libheif; a dependency, but reading still works without it
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover
    HEIF_AVAILABLE = False
AVIF_AVAILABLE = bool(features.check("avif"))  # Pillow's own AVIF plugin (libavif), when built with it

# --- what skinray reads and writes: the one list ---------------------------------------------
# The Pillow plugins skinray opens, and no other: anything else (ICO, GIF, PSD, ...) is refused
# before a plugin parses it. (JPEGs from cameras that add a preview frame open as JPEG and report
# format "MPO"; their first frame is the photo.)
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP") + (("HEIF",) if HEIF_AVAILABLE else ()) + (
    ("AVIF",) if AVIF_AVAILABLE else ())
# File extensions an archive job treats as photos (others are 'not-image' rows).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp") + (
    (".heic", ".heif", ".hif") if HEIF_AVAILABLE else ()) + ((".avif",) if AVIF_AVAILABLE else ())
# The endpoint's Content-Types -> the Pillow formats such a body may be (BMP only in archive jobs).
CONTENT_TYPES = {"image/jpeg": ("JPEG", "MPO"), "image/jpg": ("JPEG", "MPO"), "image/png": ("PNG",),
                 "image/webp": ("WEBP",), "image/tiff": ("TIFF",)}
if HEIF_AVAILABLE:
    CONTENT_TYPES.update({"image/heic": ("HEIF",), "image/heif": ("HEIF",)})
if AVIF_AVAILABLE:
    CONTENT_TYPES["image/avif"] = ("AVIF",)
ENDPOINT_FORMATS = tuple(f for f in IMAGE_FORMATS if f != "BMP")
# Output formats (name -> Pillow plugin) and the extension each writes; 'jpg' and 'tif' are aliases.
ENCODERS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}
FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}
WRITE_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".tif": "tiff",
                    ".tiff": "tiff", ".bmp": "bmp"}  # inputs with other extensions (HEIC, AVIF) -> JPEG

RENDERING_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC  # why: see the module docstring
STRIP_PIXELS = 1 << 18  # conversion to RGB works on strips of about this many pixels
_ORIENTATION = 0x0112

# Magic numbers of formats that are images but not ones skinray reads (for a clear refusal).
_FOREIGN = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x00\x00\x01\x00", "ICO"), (b"\x00\x00\x02\x00", "CUR"),
            (b"8BPS", "PSD"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
            (b"icns", "ICNS"), (b"qoif", "QOI"), (b"DDS ", "DDS"), (b"BM", "BMP"), (b"%PDF", "PDF"))


class ImageTooLargeError(ImageDecodeError):
    """The header declares more pixels than allowed (checked before any pixel is decoded)."""

    def __init__(self, message: str, pixels: int, limit: int):
        super().__init__(message)
        self.pixels, self.limit = pixels, limit


class UnsupportedFormatError(ImageDecodeError):
    """The bytes are an image format skinray does not read (or not the one they claim to be)."""

    def __init__(self, message: str, fmt: str):
        super().__init__(message)
        self.format = fmt


def is_image_key(key: str) -> bool:
    return key.lower().endswith(IMAGE_EXTENSIONS)


def normalise_format(fmt: str) -> str:
    """'jpg' -> 'jpeg', 'tif' -> 'tiff', lower case; other names unchanged."""
    fmt = fmt.strip().lower()
    return FORMAT_ALIASES.get(fmt, fmt)


@dataclass
class Decoded:
    """A decoded photo and what was done to it: ``colour`` for the manifest (``srgb``,
    ``untagged: assumed sRGB``, ``converted from Display P3``, ``... treated as sRGB``),
    ``warning`` (empty unless something was ignored), ``exif`` (the photo's EXIF with its
    orientation reset to 1, the pixels being upright; None if it had none)."""

    rgb: np.ndarray
    colour: str = "untagged: assumed sRGB"
    warning: str = ""
    exif: bytes | None = None
    format: str = ""


@functools.lru_cache(maxsize=1)
def srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    """The ICC profile embedded in every output: littlecms's built-in sRGB, with a fixed
    creation date (littlecms stamps the current time: outputs would differ from run to run)."""
    data = bytearray(srgb_profile().tobytes())
    data[24:36] = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)  # header dateTimeNumber
    return bytes(data)


_PROFILE_MODES = {"RGB": ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA"), "CMYK": ("CMYK",),
                  "GRAY": ("L", "I;16", "I;16L", "I;16B", "I;16N")}


@functools.lru_cache(maxsize=32)
def _colour_transform(icc: bytes, mode: str) -> tuple[ImageCms.ImageCmsTransform | None, str, str]:
    """(transform to sRGB or None, colour note, warning) for an embedded profile and image mode.
    Cached: an archive's photos usually share one profile. NOCACHE makes the transform safe to
    share between threads (littlecms otherwise keeps the last pixel in the transform)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip().upper()
        name = " ".join(ImageCms.getProfileDescription(profile).split()) or "an unnamed profile"
    except Exception as exc:  # noqa: BLE001 - littlecms rejects bad profiles in many ways
        return None, "profile unreadable: treated as sRGB", f"embedded ICC profile unreadable ({exc}): treated as sRGB"
    if space == "RGB" and "srgb" in name.lower():
        return None, "srgb", ""
    if mode not in _PROFILE_MODES.get(space, ()):
        return (None, "profile unsupported: treated as sRGB",
                f"embedded ICC profile {name!r} is for {space or 'unknown'} data but the image is {mode}: "
                f"treated as sRGB")
    try:
        transform = ImageCms.buildTransform(profile, srgb_profile(), "RGB" if space == "RGB" else mode, "RGB",
                                            renderingIntent=RENDERING_INTENT, flags=ImageCms.Flags.NOCACHE)
    except Exception as exc:  # noqa: BLE001
        return (None, "profile unsupported: treated as sRGB",
                f"embedded ICC profile {name!r} unusable ({exc}): treated as sRGB")
    return transform, f"converted from {name}", ""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())  # libheif's messages end in a newline


def _too_large(width: int, height: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
                              f"(possible decompression bomb)", width * height, max_pixels)


class _StoppableBytes(io.BytesIO):
    """The bytes a decoder reads, which raise :class:`EnhanceStopped` once ``should_stop()`` is
    true: Pillow feeds JPEG and PNG decoders 64 KB at a time, so their decode is abandoned at the
    next block (WebP and TIFF are decoded in one call and finish first)."""

    def __init__(self, data: bytes, should_stop):
        super().__init__(data)
        self._should_stop = should_stop

    def read(self, size: int | None = -1) -> bytes:
        if self._should_stop():
            raise EnhanceStopped("stopped while decoding (should_stop)")
        return super().read(size)


def _open(data: bytes, max_pixels: int, formats: tuple[str, ...],
          limits: DecodeLimits = DEFAULT_LIMITS, should_stop=None) -> Image.Image:
    """Check the structure limits on the bytes, then parse the header only, with the allowed
    plugins only; check the declared size. ``should_stop``: see :class:`_StoppableBytes`."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    check_limits(data, limits, max_pixels)  # scans, tiles, chunks, frames: before any plugin sees the bytes
    Image.init()  # registers every plugin, so that the allowed ones can be named
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            img = Image.open(io.BytesIO(data) if should_stop is None else _StoppableBytes(data, should_stop),
                             formats=list(formats))
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (2 x Image.MAX_IMAGE_PIXELS) fired while opening: the declared
        # size is in its message. Report it as what it is, an image over the limit.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 0
        raise ImageTooLargeError(f"declared {pixels if pixels else 'more than ' + str(2 * Image.MAX_IMAGE_PIXELS)} "
                                 f"pixels exceeds the limit of {max_pixels} (possible decompression bomb)",
                                 pixels, max_pixels) from None
    except EnhanceStopped:
        raise
    except UnidentifiedImageError:
        for magic, name in _FOREIGN:
            if data.startswith(magic) and name.upper() not in formats:
                raise UnsupportedFormatError(f"{name} is not a supported image format (supported: "
                                             f"{', '.join(formats)})", name) from None
        raise ImageDecodeError("not a recognised image format") from None
    except Exception as exc:  # noqa: BLE001 - hostile headers can upset a plugin in many ways
        raise ImageDecodeError(f"unreadable image header ({type(exc).__name__}: {_one_line(exc)})") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"the header declares an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise _too_large(width, height, max_pixels)
    return img


def probe(data: bytes, max_pixels: int = MAX_PIXELS, formats: tuple[str, ...] = IMAGE_FORMATS,
          limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[int, int, str]:
    """Read only the header: (width, height, format). Raises ImageDecodeError if not an image
    of the allowed ``formats``, :class:`ImageTooLargeError` if its declared pixel count (of the
    first frame, the one decoded) exceeds ``max_pixels``, :class:`ImageLimitError` if its
    structure exceeds ``limits`` (:mod:`skinray.image_limits`)."""
    img = _open(data, max_pixels, formats, limits)
    return img.size[0], img.size[1], img.format or "unknown"


def _strip_rgb(strip: Image.Image, mode: str, top: float, alpha: bool,
               transform: ImageCms.ImageCmsTransform | None = None) -> np.ndarray:
    """One horizontal strip -> (h, w, 3) or (h, w, 1) uint8, the same numbers as converting the
    whole image at once. ``transform`` (CMYK, gray and 16-bit gray with their own profile): the
    strip goes straight from its own mode, at its own precision, to sRGB."""
    if transform is not None:
        return np.asarray(ImageCms.applyTransform(strip, transform))
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(strip, dtype=np.float64)  # strip-sized: a few MB
        return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)[:, :, None]
    if alpha:
        rgba = strip.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(strip.convert("RGB"))


def _to_rgb(img: Image.Image, transform: ImageCms.ImageCmsTransform | None = None) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8, converted strip by strip: the only full-size arrays
    are the decoded image and the result (no full-size float or RGBA copies). Alpha is
    composited onto white; 16-bit and 32-bit gray are scaled to 8 bits. ``transform``: to sRGB
    from an RGB profile (applied to the 8-bit RGB strip) or from the image's own mode."""
    width, height = img.size
    mode = img.mode
    top = 255.0
    if mode.startswith("I;16"):
        top = 65535.0
    elif mode == "I":
        top = 65535.0 if (img.getextrema()[1] or 0) > 255 else 255.0
    elif mode == "F":
        top = 1.0 if (img.getextrema()[1] or 0) <= 1.0 else 255.0
    alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, STRIP_PIXELS // width)
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        strip = img.crop((0, y0, width, y1))
        if transform is not None and transform.input_mode == "RGB":  # RGB profile: on the RGB result
            rgb = Image.fromarray(_strip_rgb(strip, mode, top, alpha), "RGB")
            out[y0:y1] = np.asarray(ImageCms.applyTransform(rgb, transform))
        else:
            out[y0:y1] = _strip_rgb(strip, mode, top, alpha, transform)
    return out


def _orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (as ``ImageOps.exif_transpose`` does) to an (H, W, 3) array."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}
    op = ops.get(orientation)
    return rgb if op is None else np.ascontiguousarray(op(rgb))


def decode(data: bytes, max_pixels: int = MAX_PIXELS, formats: tuple[str, ...] = IMAGE_FORMATS,
           limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Image bytes -> upright sRGB, ``(H, W, 3)`` ``uint8`` (:func:`decode_photo`'s pixels)."""
    return decode_photo(data, max_pixels, formats, limits).rgb


def _kept_exif(exif: Image.Exif) -> tuple[bytes | None, str]:
    """The EXIF block to write with the output (orientation 1: the pixels are upright), and a
    warning if it could not be re-written (then it is dropped)."""
    if not len(exif):
        return None, ""
    try:
        exif[_ORIENTATION] = 1  # also where a plugin (TIFF) applied and removed it on load
        return exif.tobytes(), ""
    except Exception as exc:  # noqa: BLE001 - malformed EXIF must not fail the photo
        return None, f"EXIF unreadable ({type(exc).__name__}): dropped"


def _exif_of(img: Image.Image) -> tuple[int, bytes | None, str]:
    """(EXIF orientation, the EXIF block to keep, a problem to warn of or ""); unreadable EXIF is
    no error: orientation 1, nothing kept, and the reason."""
    try:
        tags = img.getexif()
        orientation = tags.get(_ORIENTATION, 1)  # before _kept_exif sets it to 1
        return (orientation, *_kept_exif(tags))
    except Exception as exc:  # noqa: BLE001
        return 1, None, f"EXIF unreadable ({type(exc).__name__}): ignored"


def decode_photo(data: bytes, max_pixels: int = MAX_PIXELS, formats: tuple[str, ...] = IMAGE_FORMATS,
                 limits: DecodeLimits = DEFAULT_LIMITS, should_stop=None) -> Decoded:
    """Image bytes -> :class:`Decoded`: upright sRGB (H, W, 3) uint8, colour notes, EXIF to keep.

    Raises :class:`ImageDecodeError` (with a reason) for empty, truncated or non-image bytes,
    :class:`UnsupportedFormatError` for formats outside ``formats``, :class:`ImageTooLargeError`
    over ``max_pixels`` (from the header) and :class:`ImageLimitError` over ``limits`` (scans,
    strips, chunks, frames: on the bytes), both before any pixel is decoded.
    Multi-frame files (TIFF pages, animated PNG/WebP, MPO JPEGs) give their first frame, whose
    size is the one checked. Peak memory is about the decoded image in its own mode plus the
    RGB result (e.g. 2 + 3 bytes per pixel for 16-bit gray, 4 + 3 for RGBA); the conversion to
    sRGB works strip by strip, in place. A bad ICC profile or EXIF block is never
    an error: it is ignored and named in ``warning``. ``should_stop`` (a callable): once it is
    true, a JPEG or PNG stops decoding at its next 64 KB of input with :class:`EnhanceStopped`
    (the endpoint's deadline, or its client gone).
    """
    img = _open(data, max_pixels, formats, limits, should_stop)
    warnings_: list[str] = []
    colour, exif = "untagged: assumed sRGB", None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            if img.size[0] * img.size[1] > max_pixels:  # a plugin may size the frame on load
                raise _too_large(img.size[0], img.size[1], max_pixels)
            orientation, exif, problem = _exif_of(img)
            if problem:
                warnings_.append(problem)
            transform = None
            icc = img.info.get("icc_profile")
            if icc:
                transform, colour, problem = _colour_transform(bytes(icc), img.mode)
                if problem:
                    warnings_.append(problem)
            rgb = _to_rgb(img, transform)
            fmt = img.format or "unknown"
    except (ImageDecodeError, EnhanceStopped):
        raise
    except Exception as exc:  # noqa: BLE001 - a hostile body must not become a 500
        raise ImageDecodeError(f"cannot decode image ({type(exc).__name__}: {_one_line(exc)})") from None
    finally:
        img.close()
    del img  # the decoded pixels go before the oriented copy is made
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageDecodeError(f"decoded to unexpected shape {rgb.shape}")
    rgb = _orient(rgb, orientation if isinstance(orientation, int) else 1)
    return Decoded(rgb, colour, "; ".join(warnings_), exif, fmt)


_JPEG_EXIF_LIMIT = 65533  # one APP1 segment


def encode(rgb: np.ndarray, fmt: str = "png", quality: int = 95, exif: bytes | None = None) -> bytes:
    """(H, W, 3) uint8 sRGB -> image bytes tagged with the sRGB ICC profile (not BMP, which has
    no place for it), with ``exif`` if given (not BMP; dropped from a JPEG if over the 64 KB of
    one APP1 segment). PNG uses compress_level=1 (lossless, several times faster than the
    default level); JPEG keeps full-resolution chroma (4:4:4) at quality >= 90."""
    fmt = normalise_format(fmt)
    if fmt not in ENCODERS:
        raise ValueError(f"unsupported output format {fmt!r}; use one of {sorted(ENCODERS)}")
    options: dict = {}
    if fmt == "png":
        options = {"compress_level": 1}
    elif fmt == "jpeg":
        options = {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "webp":
        options = {"quality": quality}
    if fmt != "bmp":
        options["icc_profile"] = srgb_icc()
        if exif and not (fmt == "jpeg" and len(exif) > _JPEG_EXIF_LIMIT):
            options["exif"] = exif
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
