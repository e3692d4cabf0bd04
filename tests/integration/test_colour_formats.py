"""Real photographs through the archive job (issue 11 items 1-2): a wide-gamut photo comes out
as its littlecms sRGB conversion (the model being the identity), tagged sRGB, with its EXIF and
orientation 1; a corrupt profile is a warning, a truncated HEIC a failed row."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from icc_profiles import rgb_profile
from PIL import Image, ImageCms, ImageOps

from skinray import archive, checkpoint, images, synth
from skinray.config import Config, EnhanceConfig, ModelConfig
from skinray.model import build_model

pytestmark = pytest.mark.integration
_ORIENTATION, _MAKE = 0x0112, 0x010F


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory) -> Path:
    """An untrained lut model: exactly the identity, so an output is its decoded input."""
    cfg = Config(model=ModelConfig(arch="lut"))
    return checkpoint.save(tmp_path_factory.mktemp("identity") / "best", build_model(cfg.model), cfg, {"epoch": 0})


@pytest.fixture(scope="module")
def model_dir_small(tmp_path_factory) -> Path:
    """A randomly initialised poster-style model: it changes every pixel."""
    import torch

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(arch="poster", width=8))
    return checkpoint.save(tmp_path_factory.mktemp("poster") / "best", build_model(cfg.model), cfg, {"epoch": 0})


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
        "iphone.heic": _save(Image.fromarray(photo), "HEIF", quality=95, icc_profile=rgb_profile()),
    }
    files["truncated.heic"] = files["iphone.heic"][: len(files["iphone.heic"]) // 2]
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
    assert {k: r["status"] for k, r in rows.items()} == {**dict.fromkeys(files, "ok"), "truncated.heic": "failed"}
    assert "cannot decode image" in rows["truncated.heic"]["reason"]
    assert rows["iphone.heic"]["colour"] == "converted from Display P3 (test)"
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
    archive.run(cfg)
    check_colour_outputs(tmp_path / "out", files)
    archive.run(EnhanceConfig(**{**cfg.__dict__, "output": str(tmp_path / "stripped"), "strip_metadata": True}))
    check_colour_outputs(tmp_path / "stripped", files, strip_metadata=True)


# --- one photo in seconds (issue 11 item 3): the in-process path is the Ray path, without Ray ----

def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "_skinray" not in p.parts}


def _manifest(out: Path) -> list[dict]:
    rows = pq.read_table(out / "_skinray" / "manifest.parquet").to_pylist()
    # NaN (a figure not measured: a failed row, or a confidence the model does not give) never
    # equals itself: compared as None
    return [{k: None if isinstance(v, float) and v != v else v for k, v in r.items() if k != "seconds"}
            for r in rows]


def test_in_process_and_ray_give_identical_bytes_and_manifests(ray_local, identity_model, model_dir_small, tmp_path):
    import json

    colour_archive(tmp_path / "in")
    (tmp_path / "in" / "big.jpg").write_bytes(_save(Image.fromarray(synth.skin_image(4, 1, 700)[:520]), "JPEG"))
    (tmp_path / "in" / "notes.txt").write_bytes(b"not a photo")
    for model in (identity_model, model_dir_small):  # the identity, and a model that changes pixels
        results = {}
        for execution in ("local", "ray"):
            out = tmp_path / f"out-{model.parent.name}-{execution}"
            cfg = EnhanceConfig(model=str(model), input=str(tmp_path / "in"), output=str(out), format="same",
                                batch_size=2, tile=256, tile_margin=32)
            summary = archive.run(cfg, execution=execution)
            assert json.loads((out / "_skinray" / "summary.json").read_text())["execution"] == execution
            assert summary.counts == {"ok": 5, "skipped-existing": 0, "failed": 1, "not-image": 1}
            results[execution] = (_outputs(out), _manifest(out))
        assert results["local"][0] == results["ray"][0], "identical output bytes"
        assert sorted(results["local"][0]) == ["big.jpg", "corrupt_profile.png", "iphone.jpg", "p3.jpg", "plain.png"]
        assert results["local"][1] == results["ray"][1], "the same manifest"
    check_colour_outputs_same = _manifest(tmp_path / f"out-{identity_model.parent.name}-local")
    assert {r["key"]: r["colour"] for r in check_colour_outputs_same}["p3.jpg"] == "converted from Display P3 (test)"


def test_auto_execution_is_local_for_a_small_input_only(monkeypatch):
    from skinray.config import EnhanceConfig as Cfg

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    small = [{"bytes_in": 5_000_000}] * archive.LOCAL_MAX_FILES
    cfg = Cfg(model="m", input="i", output="o")
    assert archive.choose_execution(cfg, small) == "local"
    assert archive.choose_execution(cfg, small + small[:1]) == "ray"
    assert archive.choose_execution(cfg, [{"bytes_in": archive.LOCAL_MAX_BYTES + 1}]) == "ray"
    assert archive.choose_execution(Cfg(model="m", input="i", output="o", workers=2), small[:1]) == "ray"
    assert archive.choose_execution(cfg, small[:1], ray_address="ray://head:10001") == "ray"
    assert archive.choose_execution(cfg, small * 5, "local") == "local"
    assert archive.choose_execution(cfg, small[:1], "ray") == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # e.g. under `ray job submit`
    assert archive.choose_execution(cfg, small[:1]) == "ray"


def test_one_photo_from_the_cli_runs_without_ray(identity_model, tmp_path):
    """`skinray enhance photo-folder out/` on one photo: no Ray started, the written output and the report."""
    import json
    import subprocess
    import sys

    files = colour_archive(tmp_path / "in")
    for key in list(files)[1:]:
        (tmp_path / "in" / key).unlink()
    code = ("import sys, skinray.cli as c; rc = c.main(sys.argv[1:]); "
            "assert 'ray' not in sys.modules or not __import__('ray').is_initialized(), 'Ray was started'; "
            "sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-c", code, "enhance", str(tmp_path / "in"), str(tmp_path / "out"),
                             "--model", str(identity_model), "--format", "png"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 ok" in result.stdout
    assert json.loads((tmp_path / "out" / "_skinray" / "summary.json").read_text())["execution"] == "local"
    with Image.open(tmp_path / "out" / "p3.png") as img:
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), expected_srgb(files["p3.jpg"]))
