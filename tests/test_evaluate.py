"""`skinray evaluate` end to end on a tiny set (no Ray needed), and its metrics on known values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from skinray import baselines, checkpoint, evaluate, images, synth
from skinray.cli import main
from skinray.config import Config, ModelConfig
from skinray.model import build_model


def test_score_known_values():
    img = synth.skin_image(0, 1, 170)
    same = evaluate.score(img, img)
    assert same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0) and same["ciede2000"] == 0.0
    assert same["ms_ssim"] == pytest.approx(1.0)  # 170 px allows the 5 scales
    off = evaluate.score(np.clip(img.astype(int) + 1, 0, 255).astype(np.uint8), img)
    unclipped = np.mean(img < 255)
    assert off["psnr"] == pytest.approx(20 * np.log10(255) - 10 * np.log10(unclipped), abs=1e-3)
    assert evaluate.score(img[:64, :64], img[:64, :64])["ms_ssim"] is None  # too small for MS-SSIM


def test_skin_reference_shades_of_gray_undoes_a_cast():
    """A cast applied in linear light is undone exactly when the target is the photo's own
    uncast estimate; plain Shades of Gray instead pushes the skin towards grey."""
    clean = synth.skin_image(0, 2, 64)
    reference = baselines.reference_illuminant([clean])
    linear = (clean / 255.0) ** 2.2 * np.array([1.15, 1.0, 0.8])
    cast = np.clip(255 * np.clip(linear, 0, 1) ** (1 / 2.2) + 0.5, 0, 255).astype(np.uint8)
    fixed = baselines.shades_of_gray(cast, 6.0, target=reference)
    plain = baselines.shades_of_gray(cast, 6.0)
    assert np.abs(cast.astype(int) - clean).mean() > 5
    assert np.abs(fixed.astype(int) - clean).mean() < 1.5
    assert np.abs(plain.astype(int) - clean).mean() > 5


@pytest.fixture
def tiny(tmp_path):
    synth.write_dataset(str(tmp_path / "data"), count=14, size=48, seed=1)
    synth.write_dataset(str(tmp_path / "photos"), count=3, size=40, seed=2)
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1)} for e in range(3)]
    models = {}
    for arch in ("context", "poster"):
        torch.manual_seed(0)
        cfg = Config(model=ModelConfig(arch=arch, width=4, dropout=0.0)).replace({"train.name": arch})
        models[arch] = str(checkpoint.save(tmp_path / arch, build_model(cfg.model), cfg, {"epoch": 2}, history))
    return tmp_path, models


def test_evaluate_end_to_end(tiny):
    root, models = tiny
    out = root / "eval"
    assert main(["evaluate", "--model", models["context"], "--model", models["poster"], "--data",
                 str(root / "data"), "--out", str(out), "--size", "48", "--split", "all",
                 "--photos", str(root / "photos")]) == 0
    m = json.loads((out / "metrics.json").read_text())
    table = m["restoration"]
    assert m["images"] == 14 and set(table) == {
        "degraded input", "gray_world", "shades_of_gray", "clahe", "model context (context)", "model poster (poster)"}
    # An untrained context model is the identity (zero-initialised residual): it restores
    # nothing and harms nothing - the numbers must say exactly that.
    ctx = table["model context (context)"]
    assert ctx["psnr"] == pytest.approx(table["degraded input"]["psnr"], abs=1e-6)
    assert m["do_no_harm"]["model context (context)"] == {"psnr": 100.0, "ciede2000": 0.0}
    assert m["summary"]["models"]["model context (context)"]["gain_over_degraded_db"] == pytest.approx(0, abs=1e-6)
    for row in table.values():
        assert 0 < row["psnr"] <= 100 and 0 <= row["ssim"] <= 1 and row["ciede2000"] >= 0
    report = (out / "report.md").read_text()
    assert all(name in report for name in table) and "Do no harm" in report
    for path in m["figures"].values():
        assert images.decode((out / path.rsplit("/", 1)[-1]).read_bytes()).shape[0] > 40
    assert set(m["figures"]) == {"validation_grid", "loss_curve_0", "loss_curve_1", "photos_grid"}
    assert m["photos"]["count"] == 3 and m["photos"]["before"]["brightness"] > 0


def test_evaluate_val_split_adds_the_skin_reference_baseline(tiny):
    root, models = tiny
    m = evaluate.run([models["poster"]], str(root / "data"), str(root / "e2"), size=48)
    assert "shades_of_gray (skin reference)" in m["restoration"]
    assert 0 < m["images"] < 14  # only the validation split


def test_evaluate_bad_input_is_one_clear_line(tiny, capsys):
    root, models = tiny
    assert main(["evaluate", "--model", str(root), "--data", str(root / "data")]) == 2
    assert "not a skinray checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--model", models["poster"], "--data", str(root / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
