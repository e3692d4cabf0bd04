"""The bundled default model: shipped, loadable as `bundled`, and documented by `make model`."""

import json

import numpy as np
import pytest
import torch

from skinray import bundle, checkpoint, cli
from skinray.config import load_config
from skinray.errors import CheckpointError, SkinrayError
from skinray.model import build_model
from skinray.predict import Enhancer
from skinray.synth import skin_image
from skinray.train import _check_init

FACE_CIEDE_BOUND = 7.0  # measured 5.4 with the shipped model (MODEL.md); a palette-only model: 9.1


def test_the_shipped_model_loads_by_name_and_says_what_it_is():
    loaded = checkpoint.load(checkpoint.BUNDLED)
    assert loaded.config.model.arch == "light"
    meta = checkpoint.read_metadata(str(checkpoint.BUNDLED_DIR))
    assert meta["bundled"]["command"].startswith(("make model", "skinray synth", "skinray train"))
    assert "synthetic" in meta["bundled"]["trained_on"] and meta["bundled"].get("data_licence", "") != ""
    card = (checkpoint.BUNDLED_DIR / "MODEL.md").read_text()
    assert "Training log" in card and "Evaluation" in card
    assert (checkpoint.BUNDLED_DIR / checkpoint.MODEL_FILE).stat().st_size < 8 * 2**20, "a few MB"


def test_the_shipped_model_leaves_a_clean_photo_nearly_unchanged():
    photo = skin_image(99, 3, 256)
    out = Enhancer.from_checkpoint(checkpoint.BUNDLED, device="cpu").enhance(photo)
    mse = np.mean((out.astype(float) - photo) ** 2)
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-10)) > 33, "a good photo comes back close to itself"


def test_the_shipped_model_barely_changes_a_real_face_photo():
    """A real, well-exposed portrait (scikit-image's bundled `astronaut`, face region): a model
    that knew only the synthetic skin palette moved it by CIEDE2000 9 (brightened and warmed it);
    trained with natural variation of good photos, the shipped one must stay near a
    just-noticeable difference."""
    from skimage import data

    from skinray.colour import mean_ciede2000

    face = np.ascontiguousarray(data.astronaut()[0:256, 100:356])
    out = Enhancer.from_checkpoint(checkpoint.BUNDLED, device="cpu").enhance(face)
    assert mean_ciede2000(out, face) < FACE_CIEDE_BOUND


def _saved(tmp_path, name="run", **overrides):
    cfg = load_config(overrides={"model.width": 8, "train.name": name, **overrides})
    torch.manual_seed(0)
    return cfg, checkpoint.save(tmp_path / name, build_model(cfg.model), cfg,
                                {"epoch": 1, "val_loss": 0.1, "train_images": 10, "val_images": 4},
                                [{"epoch": 0, "train_loss": 0.2, "val_loss": 0.2, "val_psnr": 20.0,
                                  "val_psnr_input": 18.0, "val_ssim": 0.8, "epoch_seconds": 3.0}])


def test_bundle_copies_the_model_with_its_provenance(tmp_path, capsys):
    _, source = _saved(tmp_path)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"data": "held", "images": 3, "size": 64,
                                                                "summary": {"models": {}}}))
    (tmp_path / "eval" / "report.md").write_text("# skinray evaluation\n\n## Restoration\n\nrows\n")
    dest = bundle.bundle(str(source), str(tmp_path / "eval"), "make model X=1", "3 synthetic photos",
                         dest=tmp_path / "pkg", data_licence="CC-0 (most), CC-BY-NC (some)")
    meta = checkpoint.read_metadata(str(dest))
    assert meta["bundled"]["command"] == "make model X=1" and meta["bundled"]["evaluation"]["images"] == 3
    assert meta["bundled"]["trained_on"].startswith("3 synthetic photos: ")
    card = (dest / "MODEL.md").read_text()
    assert "make model X=1" in card and "| 1 | 0.2000 |" in card and "### Restoration" in card
    assert "Training data licence: CC-0 (most), CC-BY-NC (some)." in card
    assert cli.main(["info", str(dest)]) == 0
    printed = capsys.readouterr().out
    assert "trained on 3 synthetic photos: " in printed and "data licence  CC-0 (most), CC-BY-NC (some)" in printed
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(checkpoint.load(str(dest)).model(x), checkpoint.load(str(source)).model(x))


def test_a_missing_bundled_model_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "BUNDLED_DIR", tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="bundled model is missing.*--model"):
        checkpoint.load("bundled")


def test_train_init_must_name_the_same_model(tmp_path):
    cfg, source = _saved(tmp_path)
    _check_init(cfg.replace({"train.init": str(source)}), None)  # same model: fine
    with pytest.raises(SkinrayError, match=r"model.width: 8 there, 16 here"):
        _check_init(cfg.replace({"train.init": str(source), "model.width": 16}), None)


def test_real_photos_for_the_harm_check_come_from_scikit_image(tmp_path):
    from skinray import images

    written = bundle.write_real_photos(str(tmp_path))
    assert len(written) == 4
    shapes = {p.name: images.decode(p.read_bytes()).shape for p in tmp_path.iterdir()}
    assert shapes["astronaut_face.png"] == (256, 256, 3) and shapes["astronaut.png"] == (512, 512, 3)
