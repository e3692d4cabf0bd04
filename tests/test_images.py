import io

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
