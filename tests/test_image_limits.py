"""Structure limits (skinray.image_limits): small hostile files, made here, each refused by its
limit before any decoder runs, with a message naming the setting; ordinary files pass."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from skinray import archive, images
from skinray.image_limits import DecodeLimits, ImageLimitError


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _noise(h=32, w=32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(ihdr: tuple, idat: bytes, extra: bytes = b"", split: int = 0) -> bytes:
    parts = [idat[i:i + split] for i in range(0, len(idat), split)] if split else [idat]
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", *ihdr)) + extra
            + b"".join(_chunk(b"IDAT", p) for p in parts) + _chunk(b"IEND", b""))


def _rgb_png(arr: np.ndarray, extra: bytes = b"", split: int = 0, level: int = 6) -> bytes:
    raw = b"".join(b"\x00" + row.tobytes() for row in arr)
    return _png((arr.shape[1], arr.shape[0], 8, 2, 0, 0, 0), zlib.compress(raw, level), extra, split)


def _many_scans_jpeg(scans: int) -> bytes:
    """A progressive JPEG whose scans are repeated: 40,000 such scans burned a minute of CPU."""
    jpeg = _save(Image.fromarray(_noise(8, 8)), "JPEG", progressive=True)
    first, end = jpeg.index(b"\xff\xda"), jpeg.rindex(b"\xff\xd9")
    body = jpeg[first:end]
    return jpeg[:first] + body * (scans // body.count(b"\xff\xda") + 1) + b"\xff\xd9"


def _tiff_strips(width: int, height: int) -> bytes:
    """A valid 8-bit gray TIFF with one row per strip (1 x height: one strip per pixel)."""
    n = height
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, n, 0), (277, 3, 1, 1), (278, 4, 1, 1), (279, 4, n, 0)]
    ifd_size = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_size
    counts_at = offsets_at + 4 * n
    pixels_at = counts_at + 4 * n
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {273: offsets_at, 279: counts_at}.get(tag, value) if count > 1 else value
        ifd += struct.pack("<HHII", tag, kind, count, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, count,
                                                                                            value, 0)
    ifd += b"\x00\x00\x00\x00"
    offsets = (pixels_at + np.arange(n, dtype="<u4") * width).astype("<u4").tobytes()
    counts = np.full(n, width, "<u4").tobytes()
    return b"II*\x00" + struct.pack("<I", 8) + ifd + offsets + counts + bytes(range(256)) * (width * n // 256 + 1)


def _refused(data: bytes, limit: str, **kw) -> ImageLimitError:
    started = time.process_time()
    with pytest.raises(ImageLimitError) as info:
        images.decode_photo(data, limits=DecodeLimits(**kw))
    assert time.process_time() - started < 1.0
    assert limit in str(info.value) and info.value.limit == limit
    return info.value


def test_progressive_jpeg_with_too_many_scans_is_refused_before_decoding():
    ordinary = _save(Image.fromarray(_noise()), "JPEG", progressive=True)
    assert images.decode(ordinary).shape == (32, 32, 3)  # about 10 scans: far below the limit
    hostile = _many_scans_jpeg(150)
    assert len(hostile) < 60_000
    err = _refused(hostile, "max_jpeg_scans")
    assert err.found >= 150 and "max_jpeg_scans=100" in str(err)


def test_tiff_with_one_strip_per_pixel_is_refused_and_a_small_one_decodes():
    assert images.decode(_tiff_strips(4, 300)).shape == (300, 4, 3)  # the same structure, 300 strips
    _refused(_tiff_strips(4, 300), "max_tiff_blocks", max_tiff_blocks=299)
    hostile = _tiff_strips(1, 70_000)  # default limit: 65,536 strips or tiles
    err = _refused(hostile, "max_tiff_blocks")
    assert "TIFF strips: 70000" in str(err)


def test_tiff_with_too_many_pages_is_refused():
    pages = [Image.new("L", (1, 1), i) for i in range(70)]
    hostile = _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    _refused(hostile, "max_tiff_ifds")
    assert images.decode(hostile, limits=DecodeLimits(max_tiff_ifds=70)).shape == (1, 1, 3)


def test_png_of_many_tiny_idat_chunks_is_refused():
    arr = _noise(64, 64)
    hostile = _rgb_png(arr, split=1)  # ~12,300 one-byte IDATs
    _refused(hostile, "max_png_chunks")
    np.testing.assert_array_equal(images.decode(hostile, limits=DecodeLimits(max_png_chunks=20_000)), arr)


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt", b"iCCP"])
def test_png_text_and_icc_bombs_are_refused_from_their_inflated_size(kind):
    bomb = zlib.compress(b"\x00" * (4 << 20), 9)  # 4 KB -> 4 MB
    body = {b"zTXt": b"Comment\x00\x00" + bomb, b"iCCP": b"icc\x00\x00" + bomb,
            b"iTXt": b"Comment\x00\x01\x00\x00\x00" + bomb}[kind]
    hostile = _rgb_png(_noise(), extra=_chunk(kind, body))
    assert len(hostile) < 10_000
    err = _refused(hostile, "max_png_ancillary_bytes")
    assert kind.decode() in str(err)
    ordinary = _rgb_png(_noise(), extra=_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"hello")))
    assert images.decode(ordinary).shape == (32, 32, 3)


def test_png_compressed_beyond_the_ratio_is_refused_and_small_flat_pngs_pass():
    flat = np.full((1500, 1500, 3), 120, np.uint8)  # 6.75 MB raw from ~7 KB
    err = _refused(_rgb_png(flat, level=9), "max_png_ratio", max_png_ratio=250)
    assert err.found > 250
    assert images.decode(_rgb_png(flat[:64, :64])).shape == (64, 64, 3)  # under the 4 MiB floor
    # A declared size over max_pixels is the pixel limit's refusal, not the ratio's
    with pytest.raises(images.ImageTooLargeError):
        images.decode_photo(_rgb_png(flat, level=9), max_pixels=1_000_000)


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animations_with_too_many_frames_are_refused(fmt):
    frames = [Image.new("RGB", (4, 4), ((i * 37) % 256, (i * 91) % 256, i)) for i in range(102)]
    hostile = _save(frames[0], fmt, save_all=True, append_images=frames[1:])
    _refused(hostile, "max_frames")
    assert images.decode(hostile, limits=DecodeLimits(max_frames=200)).shape == (4, 4, 3)


def test_archive_job_records_a_refused_file_as_a_failed_row_with_the_limit(tmp_path):
    (tmp_path / "scans.jpg").write_bytes(_many_scans_jpeg(150))
    (tmp_path / "ok.png").write_bytes(_rgb_png(_noise()))
    n = 2
    batch = {"key": np.array(["scans.jpg", "ok.png"], dtype=object),
             "src": np.array([str(tmp_path / "scans.jpg"), str(tmp_path / "ok.png")], dtype=object),
             "dst": np.array(["", ""], dtype=object), "output_key": np.array(["", ""], dtype=object),
             "status": np.array(["", ""], dtype=object), "reason": np.array(["", ""], dtype=object),
             "colour": np.array(["", ""], dtype=object), "warning": np.array(["", ""], dtype=object),
             "exists": np.zeros(n, bool), "foreign": np.zeros(n, bool)}
    out = archive.read_decode(batch, max_pixels=1_000_000, s3=None)
    assert out["status"][0] == "failed" and "max_jpeg_scans=100" in out["reason"][0]
    assert out["status"][1] == "" and out["width"][1] == 32
