"""The Python API (docs/api.md): skinray.load(...).enhance / .assess on PIL, ndarray and path, with
the CLI's bytes, one exception type for unreadable images, and the docs' example run as written."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import skinray
from skinray import synth
from skinray.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def doc_blocks(ray: bool) -> list[str]:
    """The ```python blocks of docs/api.md: those that use Ray (ray=True) or the others."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    return [b for b in blocks if ("import ray" in b) == ray]


@pytest.fixture(scope="module")
def model():
    return skinray.load(device="cpu")


@pytest.fixture(scope="module")
def photo():
    return synth.skin_image(0, 1, 96)


def test_import_skinray_loads_neither_torch_nor_ray():
    code = ("import sys, skinray; assert callable(skinray.load); "
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_docs_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in doc_blocks(ray=False):
        exec(compile(block, str(DOCS), "exec"), namespace)
    printed = capsys.readouterr().out
    assert re.search(r"^(good|corrected|retake) \(", printed, re.M)
    assert "unreadable:" in printed and "missing.jpg" in printed
    assert (tmp_path / "outputs/api/photo.enhanced.jpg").stat().st_size > 0


def test_enhance_returns_the_input_type_with_the_clis_bytes(model, photo, tmp_path):
    src, cli_out = tmp_path / "in", tmp_path / "cli"
    src.mkdir()
    Image.fromarray(photo).save(src / "p.png")
    assert main(["enhance", str(src), str(cli_out), "--local"]) == 0
    cli_bytes = (cli_out / "p.png").read_bytes()

    written = model.enhance(src / "p.png", out=tmp_path / "api.png")
    assert written == tmp_path / "api.png" and written.read_bytes() == cli_bytes
    from_array = model.enhance(photo)
    assert isinstance(from_array, np.ndarray) and from_array.dtype == np.uint8 and from_array.shape == photo.shape
    from_pil = model.enhance(Image.fromarray(photo))
    assert isinstance(from_pil, Image.Image) and from_pil.size == (96, 96)
    cli_pixels = np.asarray(Image.open(cli_out / "p.png").convert("RGB"))
    assert np.array_equal(from_array, cli_pixels) and np.array_equal(np.asarray(from_pil), cli_pixels)


def test_pil_images_are_colour_managed_and_turned_upright_as_files_are(model, photo, tmp_path):
    from skinray import images

    wide = Image.fromarray(photo)
    exif = wide.getexif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    wide.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "r.jpg") as img:
        from_pil = np.asarray(model.enhance(img))
    from_file = model.enhance(images.decode((tmp_path / "r.jpg").read_bytes()))
    assert np.array_equal(from_pil, from_file)


def test_assess_gives_one_assessment_for_every_input_type(model, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "p.png")
    verdicts = {model.assess(x).verdict for x in (photo, Image.fromarray(photo), tmp_path / "p.png")}
    assert len(verdicts) == 1 and verdicts <= {"good", "corrected"}
    assert model.assess(np.zeros((8, 8, 3), np.uint8)).reasons == ("too-small",)


@pytest.mark.parametrize("bad, reason", [
    ("missing.jpg", "No such file"),
    ("garbage.jpg", "garbage.jpg: not a recognised image format"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 2), np.uint8), "(H, W, 3)"),
])
def test_unreadable_images_raise_one_exception_type_with_the_reason(model, tmp_path, bad, reason):
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    if isinstance(bad, str):
        bad = tmp_path / bad
    with pytest.raises(skinray.ImageDecodeError, match=re.escape(reason)):
        model.enhance(bad)
