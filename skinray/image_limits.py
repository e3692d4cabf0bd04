"""Structure limits checked on the raw bytes before any decoder runs (:func:`check`).

The pixel count (``max_pixels``) bounds the decoded image, not the work or memory a decoder
spends getting there: a 1.7 MB progressive JPEG of 40,000 scans burned a minute of CPU, a TIFF of
1x1 tiles took 800 MB for a 1500x1500 image. Each limit below is counted from the file's own
markers, chunks or directories, by walking them here (no Pillow, no zlib beyond a bounded
inflate of the ancillary PNG chunks), so a refused file costs a scan of its bytes and nothing more.

Defaults (the endpoint's ``AppArgs`` and the archive job use them; docs/endpoint.md and
docs/archive.md list them) are far above what cameras, phones, dermatoscopes and image editors
write: a progressive JPEG has about 10 scans, a PNG a few hundred chunks, a TIFF one strip per
8 KB or one tile per 256x256 pixels.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from skinray.errors import ImageDecodeError


@dataclass(frozen=True)
class DecodeLimits:
    """Per-file structure limits (each names the setting that raises it)."""

    max_jpeg_scans: int = 100  # SOS markers (progressive scans) in a JPEG (MPO: all its frames)
    max_tiff_blocks: int = 65_536  # strips or tiles in one TIFF directory
    max_tiff_ifds: int = 64  # image file directories (pages) in a TIFF
    max_png_chunks: int = 10_000  # chunks of any kind in a PNG
    max_png_ancillary_bytes: int = 1 << 20  # one text/ICC chunk, inflated (zTXt, iTXt, iCCP bombs)
    # Raw (decoded) bytes per IDAT byte, for PNGs over 4 MiB raw. Deflate's ceiling is about
    # 1032:1 and smooth gradients reach 800:1, so the default refuses only near-empty streams
    # (a few KB inflating to the whole pixel budget); photos compress 2-4:1, so e.g. 100 is safe
    # for an endpoint that sees photos only.
    max_png_ratio: int = 1_000
    max_frames: int = 100  # frames of an animated PNG or WebP (only the first is decoded)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


DEFAULT_LIMITS = DecodeLimits()


class ImageLimitError(ImageDecodeError):
    """A structure limit refused the file before decoding; ``limit`` names the setting."""

    def __init__(self, what: str, found: int, limit: str, value: int):
        super().__init__(f"{what}: {found} exceeds {limit}={value} (refused before decoding)")
        self.limit, self.found, self.value = limit, found, value


def _refuse(what: str, found: int, limits: DecodeLimits, name: str) -> None:
    value = getattr(limits, name)
    if found > value:
        raise ImageLimitError(what, found, name, value)


def check(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS, max_pixels: int = 0) -> None:
    """Raise :class:`ImageLimitError` if ``data`` (JPEG, PNG, TIFF, WebP) exceeds a limit.
    Other formats, and malformed structure, pass: the decoder reports those. A PNG declaring
    more than ``max_pixels`` (if given) skips the ratio check: the pixel limit refuses it."""
    if data[:2] == b"\xff\xd8":
        _check_jpeg(data, limits)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        _check_png(data, limits, max_pixels)
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        _check_tiff(data, limits)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        _check_webp(data, limits)


# --- JPEG ------------------------------------------------------------------------------------

def _check_jpeg(data: bytes, limits: DecodeLimits) -> None:
    """Count SOS markers. 0xFF in entropy-coded data is always stuffed (FF 00), so FF DA occurs
    only as a marker, or inside an APP segment (an EXIF thumbnail's own scan: counted too)."""
    scans = data.count(b"\xff\xda")
    _refuse("JPEG scans", scans, limits, "max_jpeg_scans")


# --- PNG -------------------------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _inflated_size(payload: bytes, bound: int) -> int:
    """Bytes ``payload`` (zlib) inflates to, counting at most ``bound + 1``."""
    inflater = zlib.decompressobj()
    try:
        return len(inflater.decompress(payload, bound + 1))
    except zlib.error:
        return 0  # corrupt: Pillow ignores or reports it


def _ancillary_size(kind: bytes, body: bytes, bound: int) -> int:
    """Inflated size of a text or ICC chunk (its stored size if not compressed)."""
    if kind in (b"zTXt", b"iCCP"):  # keyword NUL method data
        start = body.find(b"\x00")
        return _inflated_size(body[start + 2:], bound) if start >= 0 else len(body)
    if kind == b"iTXt":  # keyword NUL flag method language NUL translated NUL text
        start = body.find(b"\x00")
        if start >= 0 and body[start + 1:start + 2] == b"\x01":
            rest = body[start + 3:].split(b"\x00", 2)
            return _inflated_size(rest[2], bound) if len(rest) == 3 else len(body)
    return len(body)


RATIO_FLOOR = 4 << 20  # smaller PNGs decode quickly whatever their ratio (tiny flat test cards)


def _png_raw_bytes(ihdr: bytes, max_pixels: int) -> int:
    """Bytes the image data inflates to (0: unknown, or over max_pixels: not our refusal)."""
    if len(ihdr) < 13:
        return 0
    width, height, depth, colour = struct.unpack(">IIBB", ihdr[:10])
    if max_pixels and width * height > max_pixels:
        return 0
    row = (width * _PNG_CHANNELS.get(colour, 4) * max(depth, 1) + 7) // 8
    return height * (row + 1)


def _check_png(data: bytes, limits: DecodeLimits, max_pixels: int) -> None:
    pos, chunks, frames, idat, raw = 8, 0, 0, 0, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        chunks += 1
        _refuse("PNG chunks", chunks, limits, "max_png_chunks")
        if kind == b"IHDR":
            raw = _png_raw_bytes(body, max_pixels)
        elif kind == b"IDAT":
            idat += len(body)
        elif kind == b"fcTL":
            frames += 1
            _refuse("animated PNG frames", frames, limits, "max_frames")
        elif kind in (b"tEXt", b"zTXt", b"iTXt", b"iCCP"):
            size = _ancillary_size(kind, body, limits.max_png_ancillary_bytes)
            _refuse(f"PNG {kind.decode()} chunk bytes", size, limits, "max_png_ancillary_bytes")
        elif kind == b"IEND":
            break
        pos += 12 + length
    if idat and raw > RATIO_FLOOR:
        _refuse("PNG compression ratio (raw bytes per IDAT byte)", raw // idat, limits, "max_png_ratio")


# --- TIFF ------------------------------------------------------------------------------------

_STRIP_OFFSETS, _TILE_OFFSETS = 273, 324


def _check_tiff(data: bytes, limits: DecodeLimits) -> None:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        entry, count_fmt, off_fmt = 20, "Q", "Q"
        offset = struct.unpack(order + "Q", data[8:16])[0] if len(data) >= 16 else 0
    else:
        entry, count_fmt, off_fmt = 12, "H", "I"
        offset = struct.unpack(order + "I", data[4:8])[0] if len(data) >= 8 else 0
    n_size = struct.calcsize(count_fmt)
    fields = "u2", "u2", ("u8" if big else "u4"), ("u8" if big else "u4")
    layout = np.dtype([(name, order + kind) for name, kind in zip(("tag", "type", "count", "value"), fields)])
    seen, ifds = set(), 0
    while offset and offset + n_size <= len(data) and offset not in seen:
        seen.add(offset)
        ifds += 1
        _refuse("TIFF directories (IFDs)", ifds, limits, "max_tiff_ifds")
        (entries,) = struct.unpack(order + count_fmt, data[offset:offset + n_size])
        base = offset + n_size
        table = np.frombuffer(data, layout, min(entries, (len(data) - base) // entry), base)
        for tag in (_STRIP_OFFSETS, _TILE_OFFSETS):
            counts = table["count"][table["tag"] == tag]
            if counts.size:
                _refuse(f"TIFF {'tiles' if tag == _TILE_OFFSETS else 'strips'}", int(counts.max()), limits,
                        "max_tiff_blocks")
        end = base + entries * entry
        step = struct.calcsize(off_fmt)
        offset = struct.unpack(order + off_fmt, data[end:end + step])[0] if end + step <= len(data) else 0


# --- WebP ------------------------------------------------------------------------------------

def _check_webp(data: bytes, limits: DecodeLimits) -> None:
    pos, frames = 12, 0
    while pos + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[pos:pos + 8])
        if kind == b"ANMF":
            frames += 1
            _refuse("animated WebP frames", frames, limits, "max_frames")
        pos += 8 + length + (length & 1)
