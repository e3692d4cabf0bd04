"""Real photographs through the archive job (issue 11 items 1-2): a wide-gamut photo comes out
as its littlecms sRGB conversion (the model being the identity), tagged sRGB, with its EXIF and
orientation 1; a corrupt profile is a warning, a truncated HEIC a failed row."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageCms, ImageOps

from icc_profiles import rgb_profile
from skinray import batch, checkpoint, images, synth
from skinray.config import Config, EnhanceConfig, ModelConfig
from skinray.model import build_model

pytestmark = pytest.mark.integration
_ORIENTATION, _MAKE = 0x0112, 0x010F


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory) -> Path:
    """An untrained lut model: exactly the identity, so an output is its decoded input."""
    cfg = Config(model=ModelConfig(arch="lut"))
    return checkpoint.save(tmp_path_factory.mktemp("identity") / "best", build_model(cfg.model), cfg, {"epoch": 0})


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def colour_archive(root: Path) -> dict[str, bytes]:
    photo = synth.skin_image(0, 3, 96)[:64]  # 96 x 64, landscape
    exif = Image.Exif()
    exif[_ORIENTATION], exif[_MAKE] = 6, "skinray test camera"
    files = {
        "p3.jpg": _save(Image.fromarray(photo), "JPEG", quality=95, icc_profile=rgb_profile(), exif=exif),
        "corrupt_profile.png": _save(Image.fromarray(photo), "PNG", icc_profile=b"garbage, not ICC"),
        "plain.png": _save(Image.fromarray(photo), "PNG"),
    }
    root.mkdir(parents=True, exist_ok=True)
    for key, data in files.items():
        (root / key).write_bytes(data)
    return files


def expected_srgb(data: bytes) -> np.ndarray:
    """What ImageCms gives for the photo's conversion to sRGB, upright."""
    with Image.open(io.BytesIO(data)) as img:
        icc = img.info["icc_profile"]
        upright = ImageOps.exif_transpose(img).convert("RGB")
    transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                                        "RGB", "RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return np.asarray(ImageCms.applyTransform(upright, transform))


def check_colour_outputs(out: Path, files: dict[str, bytes], strip_metadata: bool = False) -> None:
    rows = {r["key"]: r for r in pq.read_table(out / "_skinray" / "manifest.parquet").to_pylist()}
    assert {k: r["status"] for k, r in rows.items()} == dict.fromkeys(files, "ok")
    assert rows["p3.jpg"]["colour"] == "converted from Display P3 (test)" and rows["p3.jpg"]["warning"] == ""
    assert rows["plain.png"]["colour"] == "untagged: assumed sRGB"
    assert rows["corrupt_profile.png"]["colour"] == "profile unreadable: treated as sRGB"
    assert "ICC profile unreadable" in rows["corrupt_profile.png"]["warning"]
    with Image.open(out / "p3.png") as img:
        written = np.asarray(img.convert("RGB"))
        assert img.info["icc_profile"] == images.srgb_icc(), "tagged sRGB"
        exif = img.getexif()
    assert written.shape == (96, 64, 3), "upright"
    np.testing.assert_array_equal(written, expected_srgb(files["p3.jpg"]))
    if strip_metadata:
        assert len(exif) == 0
    else:
        assert exif[_ORIENTATION] == 1 and exif[_MAKE] == "skinray test camera"
    with Image.open(out / "corrupt_profile.png") as img:
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), images.decode(files["plain.png"]))


def test_wide_gamut_photo_comes_out_as_its_srgb_conversion(ray_local, identity_model, tmp_path):
    files = colour_archive(tmp_path / "in")
    cfg = EnhanceConfig(model=str(identity_model), input=str(tmp_path / "in"), output=str(tmp_path / "out"),
                        format="png")
    batch.run(cfg)
    check_colour_outputs(tmp_path / "out", files)
    batch.run(EnhanceConfig(**{**cfg.__dict__, "output": str(tmp_path / "stripped"), "strip_metadata": True}))
    check_colour_outputs(tmp_path / "stripped", files, strip_metadata=True)
