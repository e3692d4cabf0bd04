"""`skinray export` (ONNX, checked with ONNX Runtime on CPU) and `skinray info` (issue 11 item 5)."""

import json

import numpy as np
import onnx  # the test extra pins onnx and onnxruntime: a missing install fails here, never skips
import onnxruntime as ort
import pytest
import torch

from skinray import checkpoint, export
from skinray.cli import main
from skinray.config import Config, ModelConfig, TrainConfig
from skinray.model import build_model, count_parameters
from skinray.predict import Enhancer
from skinray.synth import skin_image

ARCHS = ["poster", "context", "affine", "lut", "light"]


def _checkpoint(tmp_path, arch: str) -> str:
    """A small random-init model whose zero-initialised heads (identity) are made non-trivial."""
    torch.manual_seed(1)
    cfg = Config(model=ModelConfig(arch=arch, width=8), train=TrainConfig(name=f"tiny-{arch}"))
    model = build_model(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.05)
    return str(checkpoint.save(tmp_path / arch, model, cfg, {"epoch": 0, "val_psnr": 20.0}, fingerprint="f" * 64))


def _photos() -> list[np.ndarray]:
    big = np.kron(skin_image(0, 9, 150), np.ones((3, 3, 1), np.uint8))[:437, :301]  # odd sizes
    return [skin_image(0, 1, 128), skin_image(0, 2, 96)[:90, :61], big, skin_image(0, 3, 40)]


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_runtime_matches_the_enhancer_within_one_grey_level(tmp_path, arch):
    uri = _checkpoint(tmp_path, arch)
    out = tmp_path / f"{arch}-onnx"
    export.export(uri, str(out))
    meta = json.loads((out / export.META_FILE).read_text())
    assert meta["arch"] == arch and meta["model_id"] == checkpoint.load(uri).model_id
    for graph in meta["graphs"].values():  # batch, height and width are symbolic in every image input
        model = onnx.load(str(out / graph["file"]))
        onnx.checker.check_model(model)
        for tensor in model.graph.input:
            if tensor.name == "image":
                assert [d.dim_param for d in tensor.type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    enhancer = Enhancer(checkpoint.load(uri), "cpu", tile=4096, margin=32, precision="fp32")
    runner = export.OnnxEnhancer(str(out))
    for photo in _photos():
        theirs, ours = runner.enhance(photo), enhancer.enhance(photo)
        assert theirs.shape == ours.shape == photo.shape
        assert np.abs(theirs.astype(int) - ours).max() <= 1, f"{arch} {photo.shape}"


def test_lut_tiles_through_onnx_equal_skinrays_tiled_output(tmp_path):
    """The contract: one params per image from the whole thumbnail, then enhance.onnx on
    4-aligned windows with 32 px margin gives skinray's (tiled = whole-image) result."""
    out = tmp_path / "onnx"
    export.export(_checkpoint(tmp_path, "lut"), str(out))
    tiled = Enhancer(checkpoint.load(tmp_path / "lut"), "cpu", tile=128, margin=32, precision="fp32")
    photo = _photos()[2]  # (437, 301, 3): 12 windows
    colour = ort.InferenceSession(str(out / "colour.onnx"))
    enhance = ort.InferenceSession(str(out / "enhance.onnx"))
    params = colour.run(None, {"thumbnail": export.thumbnail(photo, 64)})[0]
    x = photo.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    result = np.zeros_like(photo)
    windows = list(tiled._windows(*photo.shape[:2]))
    assert len(windows) > 4
    for kept, window, centre in windows:
        y = enhance.run(None, {"image": np.ascontiguousarray(x[:, :, window[0], window[1]]), "params": params})[0]
        y = np.floor(np.clip(y[0], 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
        result[kept] = y[centre]
    assert np.abs(result.astype(int) - tiled.enhance(photo)).max() <= 1


def test_numpy_thumbnail_is_the_models_thumbnail():
    from skinray import lut

    rng = np.random.default_rng(0)
    for shape in [(300, 200), (64, 64), (50, 120), (20, 30), (1000, 777)]:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        expected = lut.thumbnail(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, 64).numpy()
        np.testing.assert_allclose(export.thumbnail(image, 64), expected, atol=1e-6)


def test_cli_export_bundled(tmp_path, capsys):
    assert main(["export", "--model", "bundled", "--format", "onnx", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", export.META_FILE, "tables.onnx"]
    assert "tables.onnx" in capsys.readouterr().out
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "tables = tables(thumbnail(image))" in readme and "multiples of align" in readme
    photo = skin_image(0, 4, 200)
    expected = Enhancer(checkpoint.load("bundled"), "cpu", precision="fp32").enhance(photo)
    assert np.abs(export.OnnxEnhancer(str(tmp_path / "out")).enhance(photo).astype(int) - expected).max() <= 1


def test_cli_export_bad_output_and_format(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    assert main(["export", "--model", "bundled", str(tmp_path / "a-file" / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"skinray: error: export: cannot write to {tmp_path / 'a-file' / 'out'}: Not a directory"]
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--format", "tflite", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "invalid choice: 'tflite' (choose from 'onnx')" in capsys.readouterr().err
    with pytest.raises(Exception, match=r"unknown format 'tflite'; choose from \('onnx',\)"):
        export.export("bundled", str(tmp_path / "out"), "tflite")
    assert not (tmp_path / "out").exists()


def test_info_text_and_json(tmp_path, capsys):
    uri = _checkpoint(tmp_path, "context")
    assert main(["info", uri]) == 0
    text = capsys.readouterr().out
    loaded = checkpoint.load(uri)
    assert f"arch       context, {count_parameters(loaded.model):,} parameters" in text
    assert "name=tiny-context" in text and "val_psnr=20" in text and "f" * 64 in text
    assert main(["info", "bundled", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    bundled = checkpoint.load("bundled")
    assert info["arch"] == "light" and info["parameters"] == count_parameters(bundled.model)
    assert info["data_fingerprint"] == bundled.fingerprint and info["metrics"] == bundled.metrics
    assert info["train"]["name"] == bundled.config.train.name and info["model"]["arch"] == "light"
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "not a skinray checkpoint" in capsys.readouterr().err
