"""Colour management in the one decode path (issue 11 item 1): embedded ICC profiles are
converted to sRGB with littlecms, outputs carry the sRGB profile and the photo's EXIF with its
orientation reset; bad profiles are ignored with a warning, never an error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from icc_profiles import gray_profile, rgb_profile
from PIL import Image, ImageCms, ImageOps

from skinray import images

_ORIENTATION, _MAKE = 0x0112, 0x010F


def _photo(h=24, w=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    arr[0, :4] = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]  # saturated primaries, white
    return arr


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    exif[_MAKE] = "skinray test camera"
    return exif


def _imagecms_srgb(rgb: np.ndarray, icc: bytes) -> np.ndarray:
    """What littlecms gives for the conversion of these pixels to sRGB (the reference)."""
    transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                                        "RGB", "RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb), transform))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_a_wide_gamut_photo_is_converted_to_srgb_upright_with_its_exif(fmt):
    arr, icc = _photo(), rgb_profile()
    quality = {"quality": 100} if fmt == "JPEG" else {}
    data = _save(Image.fromarray(arr), fmt, icc_profile=icc, exif=_exif(6), **quality)
    # the file's own decoded pixels, upright (orientation 6: 90 degrees clockwise; Pillow's TIFF
    # plugin applies it on load)
    stored = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert stored.shape == (40, 24, 3)
    expected = _imagecms_srgb(stored, icc)
    out = images.decode_photo(data)
    np.testing.assert_array_equal(out.rgb, expected)
    assert out.colour == "converted from Display P3 (test)" and out.warning == ""
    assert not np.array_equal(out.rgb, stored), "the profile changed the pixels"
    kept = Image.Exif()
    kept.load(out.exif)
    assert kept[_ORIENTATION] == 1 and kept[_MAKE] == "skinray test camera"
    np.testing.assert_array_equal(images.decode(data), expected)  # decode: the same path


def test_output_is_tagged_srgb_keeps_exif_and_decodes_back_unchanged():
    arr = _photo()
    for fmt in ("png", "jpeg", "webp", "tiff"):
        data = images.encode(arr, fmt, exif=_exif(1).tobytes())
        with Image.open(io.BytesIO(data)) as img:
            assert img.info.get("icc_profile") == images.srgb_icc(), fmt
            assert img.getexif()[_MAKE] == "skinray test camera", fmt
        back = images.decode_photo(data)
        assert back.colour == "srgb" and back.warning == ""
        if fmt in ("png", "tiff"):
            np.testing.assert_array_equal(back.rgb, arr)
    assert images.decode_photo(images.encode(arr, "bmp")).colour == "untagged: assumed sRGB"


def test_an_srgb_or_untagged_photo_is_not_converted():
    arr = _photo()
    for icc in (None, images.srgb_icc(), rgb_profile("sRGB IEC61966-2.1", ((0.4361, 0.2225, 0.0139),
                                                                           (0.3851, 0.7169, 0.0971),
                                                                           (0.1431, 0.0606, 0.7141)))):
        out = images.decode_photo(_save(Image.fromarray(arr), "PNG", **({"icc_profile": icc} if icc else {})))
        np.testing.assert_array_equal(out.rgb, arr)
        assert out.colour == ("srgb" if icc else "untagged: assumed sRGB")


@pytest.mark.parametrize("icc, note, warning", [
    (b"not an ICC profile at all", "profile unreadable: treated as sRGB", "unreadable"),
    (rgb_profile()[:100], "profile unreadable: treated as sRGB", "unreadable"),
    (gray_profile(), "profile unsupported: treated as sRGB", "for GRAY data but the image is RGB"),
])
def test_a_corrupt_or_unsupported_profile_is_ignored_with_a_warning(icc, note, warning):
    arr = _photo()
    out = images.decode_photo(_save(Image.fromarray(arr), "PNG", icc_profile=icc))
    np.testing.assert_array_equal(out.rgb, arr)
    assert out.colour == note and warning in out.warning


def test_sixteen_bit_gray_with_its_profile_is_converted_from_sixteen_bits():
    gray = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    icc = gray_profile()
    data = _save(Image.fromarray(gray), "PNG", icc_profile=icc)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode.startswith("I;16")
        transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                                            img.mode, "RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
        expected = np.asarray(ImageCms.applyTransform(img, transform))
    out = images.decode_photo(data)
    assert out.colour == "converted from Gray gamma 1.8 (test)"
    np.testing.assert_array_equal(out.rgb, expected)


def test_profile_conversion_is_strip_wise_and_gives_the_whole_image_result(monkeypatch):
    monkeypatch.setattr(images, "STRIP_PIXELS", 300)  # many strips
    arr, icc = _photo(50, 70, seed=3), rgb_profile()
    out = images.decode_photo(_save(Image.fromarray(arr), "PNG", icc_profile=icc))
    np.testing.assert_array_equal(out.rgb, _imagecms_srgb(arr, icc))


def test_malformed_exif_never_fails_the_photo():
    arr = _photo()
    data = _save(Image.fromarray(arr), "PNG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    out = images.decode_photo(data)
    np.testing.assert_array_equal(out.rgb, arr)


def test_the_embedded_srgb_profile_is_the_same_bytes_in_every_process():
    """littlecms stamps a new profile with the current time; outputs must not differ by it."""
    import subprocess
    import sys

    other = subprocess.run([sys.executable, "-c", "import sys; from skinray import images; "
                            "sys.stdout.buffer.write(images.srgb_icc())"], capture_output=True, timeout=120)
    assert other.returncode == 0 and other.stdout == images.srgb_icc()
