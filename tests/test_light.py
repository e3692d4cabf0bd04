"""The light model's numpy inference (skinray.light) against its torch module, and the
checkpoint read without PyTorch: the one-photo command imports neither torch, scipy nor pandas."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from skinray import checkpoint, lut
from skinray.config import Config, ModelConfig
from skinray.errors import CheckpointError
from skinray.light import LightTables, thumbnail
from skinray.model import build_model
from skinray.synth import skin_image


def _trained_looking_light(seed: int = 0):
    """A light model whose every layer matters: random weights, output layer included."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="light")).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.predict[-1].weight, std=0.05)
        model.predict[-1].bias.copy_(torch.tensor([-0.3, 0.4, 0.3, 1.0]))
    return model


def _photos():
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(300, 400), (64, 64), (48, 70), (777, 1000), (20, 20)]):
        photo = skin_image(i, i, max(h, w))[:h, :w]
        yield np.clip(photo * rng.uniform(0.4, 1.3, 3), 0, 255).astype(np.uint8)  # casts and exposures


def test_numpy_twin_predicts_the_torch_modules_numbers_and_tables():
    model = _trained_looking_light()
    twin = LightTables.from_module(model)
    for photo in _photos():
        planes = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
        thumb = lut.thumbnail(planes, model.thumbnail_size)
        np.testing.assert_allclose(thumbnail(photo, twin.thumbnail_size), thumb[0].numpy(), atol=1e-5)
        with torch.no_grad():
            params = model.colour_params(thumb)
            tables = model.channel_tables(params).numpy()
            gains = model.gains(params).numpy()
        mine = twin.colour_params(thumb.numpy())
        np.testing.assert_allclose(mine, params.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(twin.gains(mine), gains, rtol=1e-4)
        assert np.abs(twin.channel_tables(mine).astype(int) - tables).max() <= 1
        assert (twin.channel_tables(mine) == tables).mean() > 0.99
    assert not (tables == np.arange(256)).all(), "the trained-looking model corrects"


def test_numpy_twin_of_an_untrained_model_is_exactly_the_identity():
    from skinray.model import count_parameters

    module = build_model(ModelConfig(arch="light"))
    twin = LightTables.from_module(module)
    assert count_parameters(twin) == count_parameters(module) > 100_000
    params = twin.params_of(skin_image(0, 1, 128))
    assert twin.confidence(params)[0] == 0.5 and not params[0, :3].any()
    np.testing.assert_array_equal(twin.channel_tables(params), np.tile(np.arange(256, dtype=np.uint8), (3, 1)))


def test_checkpoint_read_without_torch_equals_torch_load(tmp_path):
    model = _trained_looking_light(1)
    cfg = Config(model=ModelConfig(arch="light"))
    checkpoint.save(tmp_path / "run", model, cfg, {"epoch": 1})
    raw = (tmp_path / "run" / checkpoint.MODEL_FILE).read_bytes()
    state = checkpoint.read_state(raw, "model.pt")
    expected = torch.load(tmp_path / "run" / checkpoint.MODEL_FILE, weights_only=True)
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value.numpy())
    loaded = checkpoint.load(tmp_path / "run", inference=True)
    assert isinstance(loaded.model, LightTables) and loaded.model_id == checkpoint.load(tmp_path / "run").model_id
    photo = skin_image(0, 2, 200)
    np.testing.assert_array_equal(loaded.model.params_of(photo), LightTables.from_module(model).params_of(photo))


def test_torch_free_reader_refuses_pickles_that_would_build_objects(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"head.0.weight": torch.zeros(1), "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused: it holds Python objects") as info:
        checkpoint.read_state((tmp_path / "evil.pt").read_bytes(), str(tmp_path / "evil.pt"))
    assert "weights_only" not in str(info.value)
    with pytest.raises(CheckpointError, match="not a PyTorch weights file"):
        checkpoint.read_state(b"not a zip", "model.pt")


@pytest.mark.integration  # runs the skinray command in a subprocess
def test_one_photo_command_imports_neither_torch_scipy_nor_pandas(tmp_path):
    """`skinray enhance` of a folder with the bundled (light) model: none of the three imports
    that were 3-4 s of a one-photo run before a single pixel was read."""
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(skin_image(0, 1, 300)).save(tmp_path / "in" / "a.jpg", quality=90)
    code = ("import sys\nfrom skinray.cli import main\n"
            f"code = main(['enhance', {str(tmp_path / 'in')!r}, {str(tmp_path / 'out')!r}])\n"
            "heavy = sorted(m for m in ('torch', 'scipy', 'pandas') if m in sys.modules)\n"
            "print('HEAVY', heavy)\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout, done.stdout[-500:]
    assert (tmp_path / "out" / "a.jpg").is_file() and (tmp_path / "out" / "_skinray" / "manifest.parquet").is_file()
