import io
import os

import numpy as np
import pytest
from PIL import Image

from skinray import images
from skinray.errors import ImageDecodeError


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _gradient(w=40, h=24) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w)[None, :]
    arr[..., 1] = np.linspace(0, 255, h)[:, None]
    arr[..., 2] = 128
    return arr


def test_rgb_png_round_trip_is_exact():
    arr = _gradient()
    np.testing.assert_array_equal(images.decode(_save(Image.fromarray(arr), "PNG")), arr)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16"])
def test_every_mode_becomes_rgb_uint8(mode):
    base = Image.fromarray(_gradient())
    if mode == "I;16":
        gray16 = (np.linspace(0, 65535, 40)[None, :].repeat(24, 0)).astype(np.uint16)
        img, fmt = Image.fromarray(gray16), "PNG"
    else:
        img = base.convert(mode)
        fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = images.decode(_save(img, fmt))
    assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    if mode == "I;16":  # 16-bit scaled to 8-bit: left edge black, right edge white
        assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255


def test_transparent_pixels_composite_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    out = images.decode(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out == 255).all()


def test_exif_orientation_is_applied():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = images.decode(_save(img, "JPEG", exif=exif, quality=95))
    assert out.shape == (40, 20, 3), "a 40x20 landscape stored with orientation 6 displays as portrait"
    assert out[:15].mean() > 200 and out[25:].mean() < 50, "after rotation the white half is on top"


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"this is not an image at all", "not a recognised image format"),
])
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        images.decode(data)


def test_truncated_jpeg_is_rejected():
    data = _save(Image.fromarray(_gradient(256, 256)), "JPEG")
    with pytest.raises(ImageDecodeError):
        images.decode(data[: len(data) // 2])


def test_decompression_bomb_refused_from_header():
    data = _save(Image.new("L", (4000, 3000)), "PNG")
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        images.decode(data, max_pixels=1_000_000)


def test_resize_square_and_encode():
    out = images.resize_square(_gradient(80, 40), 32)
    assert out.shape == (32, 32, 3)
    assert images.decode(images.encode(out, "png")).shape == (32, 32, 3)
    assert images.decode(images.encode(out, "jpeg")).shape == (32, 32, 3)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "jpg", "webp", "tiff", "bmp"])
def test_encode_every_output_format_decodes_back(fmt):
    arr = _gradient()
    out = images.decode(images.encode(arr, fmt, quality=95))
    assert out.shape == arr.shape
    if fmt in ("png", "tiff", "bmp"):
        np.testing.assert_array_equal(out, arr)


def test_unknown_output_format():
    with pytest.raises(ValueError, match="unsupported output format"):
        images.encode(_gradient(), "gif")


# --- hostile pixels (issue 15 cases 7 and 9; issue 12 "bombs get 413") -------------------------

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with almost no pixel data (a bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12_000, 40_000, 65_000])
def test_a_bomb_of_any_declared_size_is_too_large_with_its_pixel_count(side):
    """Pillow's own DecompressionBomb check (above ~179 Mpx) fires while opening; it must come
    out as 'too large' with the declared count, never as 'not a recognised image format'."""
    data = _png_header_only(side, side)
    for call in (images.probe, images.decode):
        with pytest.raises(images.ImageTooLargeError, match=str(side * side)) as info:
            call(data, max_pixels=50_000_000)
        assert info.value.pixels == side * side and info.value.limit == 50_000_000
        assert "not a recognised" not in str(info.value)


def _ico_embedding(png: bytes) -> bytes:
    import struct

    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)  # declares 16x16
    return header + entry + png


def test_ico_embedding_a_huge_png_is_refused_before_any_plugin_parses_it():
    import time
    import tracemalloc

    inner = _save(Image.new("L", (9000, 9000)), "PNG")
    data = _ico_embedding(inner)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(images.UnsupportedFormatError, match="ICO is not a supported image format") as info:
        images.decode(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.value.format == "ICO" and time.perf_counter() - started < 1.0
    assert peak < 5 * len(data) + 10_000_000


@pytest.mark.parametrize("magic, name", [(b"GIF89a" + b"\x00" * 20, "GIF"), (b"8BPS" + b"\x00" * 30, "PSD")])
def test_other_image_formats_are_unsupported(magic, name):
    with pytest.raises(images.UnsupportedFormatError, match=name):
        images.probe(magic)


def test_bmp_can_be_excluded_by_the_caller():
    data = _save(Image.fromarray(_gradient()), "BMP")
    assert images.probe(data)[2] == "BMP"
    with pytest.raises(images.UnsupportedFormatError, match="BMP"):
        images.probe(data, formats=("JPEG", "PNG"))


def test_multi_frame_tiff_gives_its_first_frame_sized_from_its_header():
    first, second = Image.fromarray(_gradient(40, 24)), Image.new("RGB", (3000, 3000), (9, 9, 9))
    data = _save(first, "TIFF", save_all=True, append_images=[second])
    assert images.probe(data, max_pixels=2000)[:2] == (40, 24)
    np.testing.assert_array_equal(images.decode(data, max_pixels=2000), _gradient(40, 24))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    from PIL import ImageOps

    arr = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(Image.fromarray(arr), "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(images.decode(data), expected)


def _old_to_rgb(img: Image.Image) -> np.ndarray:
    """The whole-image conversion this module used before (full-size float64 and RGBA copies)."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        gray = np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))


@pytest.mark.parametrize("kind", ["I;16", "RGBA", "LA", "P+transparency"])
def test_strip_conversion_gives_the_same_pixels_within_twice_the_rgb_size(kind, monkeypatch):
    """16-bit and alpha images are converted strip by strip: same numbers as the whole-image
    conversion, and the numpy memory at peak stays within about 2x the 8-bit RGB result
    (tracemalloc sees numpy's allocations; the old path needed 2 full-size float64 arrays)."""
    import tracemalloc

    monkeypatch.setattr(images, "STRIP_PIXELS", 50_000)  # many strips at this small size
    rng = np.random.default_rng(0)
    h, w = 700, 900
    if kind == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        img = Image.fromarray(rgba, "RGBA")
        if kind == "LA":
            img = img.convert("LA")
        elif kind == "P+transparency":
            img = img.convert("RGB").quantize(64)
            img.info["transparency"] = 3
    data = _save(img, "PNG")
    expected = _old_to_rgb(Image.open(io.BytesIO(data)))
    tracemalloc.start()
    out = images.decode(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(out, expected)
    assert peak <= 2 * h * w * 3, f"{peak / (h * w * 3):.2f}x the RGB size"


_RSS_PROBE = r"""
import io, sys, numpy as np
from PIL import Image
from skinray import images
kind, side = sys.argv[1], int(sys.argv[2])
ramp = np.linspace(0, 1, side, dtype=np.float32)
if kind == "I;16":
    img = Image.fromarray((ramp[None, :] * ramp[:, None] * 65535).astype(np.uint16))
else:
    a = np.empty((side, side, 4), np.uint8)
    a[..., 0], a[..., 1], a[..., 2], a[..., 3] = ramp[None] * 255, ramp[:, None] * 255, 7, 200
    img = Image.fromarray(a, "RGBA" if kind == "RGBA" else None).convert(kind)
    del a
buf = io.BytesIO(); img.save(buf, format="PNG"); data = buf.getvalue(); del img, buf
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS:")
out = images.decode(data)
print((status("VmHWM:") - base) / out.nbytes)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to measure peak RSS")
@pytest.mark.parametrize("kind", ["I;16", "RGBA", "RGB"])
def test_decode_peak_memory_is_about_twice_the_rgb_image(kind):
    """Measured in a fresh process (peak RSS, Pillow's memory included) for a 3000x3000 PNG:
    16-bit gray and RGBA used to take 8-10x the RGB size (full-size float64 and RGBA copies);
    now the decoded image in its own mode (RGBA: 4/3 of RGB) + the result + a strip (< 2.8x)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, kind, "3000"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    ratio = float(result.stdout.strip())
    assert ratio < 2.8, f"{kind}: peak {ratio:.2f}x the decoded RGB image"


# --- phone formats (issue 11 item 2) ---------------------------------------------------------

def test_heic_made_with_pillow_heif_decodes_and_a_truncated_one_fails_cleanly():
    import pillow_heif  # noqa: F401 - a dependency; skinray.images registers its opener

    arr = _gradient(64, 48)
    data = _save(Image.fromarray(arr), "HEIF", quality=95)
    assert images.probe(data) == (64, 48, "HEIF") and images.is_image_key("IMG_0001.HEIC")
    out = images.decode(data)
    assert out.shape == (48, 64, 3) and np.abs(out.astype(int) - arr).mean() < 3  # lossy HEVC
    for cut in (len(data) // 2, len(data) - 8):
        with pytest.raises(ImageDecodeError, match="cannot decode image") as info:
            images.decode(data[:cut])
        assert "\n" not in str(info.value)


@pytest.mark.skipif(not images.AVIF_AVAILABLE, reason="this Pillow is built without AVIF")
def test_avif_decodes_natively():
    arr = _gradient(64, 48)
    out = images.decode(_save(Image.fromarray(arr), "AVIF", quality=95))
    assert out.shape == (48, 64, 3) and np.abs(out.astype(int) - arr).mean() < 3


def test_one_list_of_formats_extensions_and_content_types():
    from skinray import archive, serving

    assert serving.TYPE_FORMATS is images.CONTENT_TYPES and serving.ENDPOINT_FORMATS == images.ENDPOINT_FORMATS
    assert images.CONTENT_TYPES["image/heic"] == ("HEIF",) and "HEIF" in images.IMAGE_FORMATS
    for formats in images.CONTENT_TYPES.values():
        assert set(formats) - {"MPO"} <= set(images.ENDPOINT_FORMATS)
    assert archive.output_key("a/IMG_1.HEIC", "same") == "a/IMG_1.jpg", "read-only formats come out as JPEG"
    assert archive.output_key("a/b.webp", "same") == "a/b.webp"


def test_sixteen_bit_gray_keeps_full_precision_until_the_single_rounding():
    gray = np.array([[0, 128, 129, 32767, 65407, 65535]], np.uint16)  # 128/257 rounds to 0, 129/257 to 1
    out = images.decode(_save(Image.fromarray(gray), "PNG"))[0, :, 0]
    np.testing.assert_array_equal(out, np.floor(gray[0] / 257.0 + 0.5).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_decode_stops_part_way_when_asked(fmt):
    """The endpoint's deadline or a client gone: should_stop turns true and a JPEG or PNG stops
    at its next block of input, before the rest of it is decoded (issue 23)."""
    from skinray.errors import EnhanceStopped

    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (1000, 1000, 3), np.uint8)).save(out, format=fmt, quality=95)
    data = out.getvalue()  # 2-3 MB: 30 to 50 blocks of 64 KB
    assert images.decode_photo(data, should_stop=lambda: False).rgb.shape == (1000, 1000, 3)
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 6  # the header, then a few blocks of pixels

    with pytest.raises(EnhanceStopped):
        images.decode_photo(data, should_stop=should_stop)
    assert len(asked) < len(data) // 65536  # many blocks were left unread
