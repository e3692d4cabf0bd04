"""Small ICC v2 profiles built on the spot (no downloads): a matrix/curve RGB profile with any
primaries (Display P3's by default, sRGB's curve) and a gray gamma profile. littlecms reads them."""

from __future__ import annotations

import struct

# Display P3 primaries adapted to D50 (the PCS white), as Apple's "Display P3" profile gives them.
DISPLAY_P3 = ((0.5151, 0.2412, -0.0011), (0.2919, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))
_D50 = (0.9642, 1.0, 0.8249)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0" * 3 + b"\0" * 67


def _srgb_curve() -> bytes:  # parametric curve type 3: the sRGB transfer function
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0) + b"".join(_s15(v) for v in params)


def _profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    header = (struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntr" + space
              + b"XYZ " + b"\0" * 12 + b"acsp" + b"APPL" + b"\0" * 20 + struct.pack(">I", 0)
              + b"".join(_s15(v) for v in _D50) + b"lcms" + b"\0" * 44)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def rgb_profile(description: str = "Display P3 (test)", primaries=DISPLAY_P3) -> bytes:
    red, green, blue = primaries
    return _profile(b"RGB ", [(b"desc", _desc(description)), (b"wtpt", _xyz(*_D50)), (b"rXYZ", _xyz(*red)),
                              (b"gXYZ", _xyz(*green)), (b"bXYZ", _xyz(*blue)), (b"rTRC", _srgb_curve()),
                              (b"gTRC", _srgb_curve()), (b"bTRC", _srgb_curve()),
                              (b"cprt", b"text" + b"\0" * 4 + b"No copyright, test profile\0")])


def gray_profile(description: str = "Gray gamma 1.8 (test)", gamma: float = 1.8) -> bytes:
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    return _profile(b"GRAY", [(b"desc", _desc(description)), (b"wtpt", _xyz(*_D50)), (b"kTRC", curve)])
