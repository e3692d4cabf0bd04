import numpy as np
import pyarrow.fs as pafs
import pytest
import torch

from skinray import checkpoint, storage
from skinray.config import load_config
from skinray.errors import CheckpointError
from skinray.model import build_model
from skinray.predict import Enhancer


def _saved(tmp_path, **overrides):
    cfg = load_config(overrides={"model.width": 8, "train.name": "ck", **overrides})
    model = build_model(cfg.model)
    optimizer = torch.optim.Adam(model.parameters())
    directory = checkpoint.save(tmp_path / "ckpt", model, cfg, {"epoch": 2, "val_loss": 0.1},
                                [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}], "f" * 64, optimizer, epoch=2)
    return cfg, model.eval(), directory


def test_round_trip_rebuilds_the_exact_model_without_ray(tmp_path):
    cfg, model, directory = _saved(tmp_path, **{"model.skip": "add"})
    loaded = checkpoint.load(directory)
    assert loaded.config == cfg and loaded.metrics["val_loss"] == 0.1 and len(loaded.history) == 3
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.model_id == "ck-e2-ffffffff"


def test_training_state_resumes_epoch_and_optimizer(tmp_path):
    cfg, _, directory = _saved(tmp_path)
    model = build_model(cfg.model)
    optimizer = torch.optim.Adam(model.parameters())
    next_epoch, history = checkpoint.load_training_state(directory, model, optimizer)
    assert next_epoch == 3 and len(history) == 3
    assert checkpoint.check_training_state(str(directory)) == 2


def test_training_state_is_data_that_loads_weights_only(tmp_path):
    _, _, directory = _saved(tmp_path)
    training = torch.load(directory / checkpoint.STATE_FILE, weights_only=True)
    assert training["epoch"] == 2 and type(training["epoch"]) is int
    assert set(training["optimizer"]) == {"state", "param_groups"}
    assert isinstance(torch.load(directory / checkpoint.MODEL_FILE, weights_only=True), dict)


class _RunsCode:
    """A pickle payload: unpickling it calls exec, which writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_training_state_that_would_run_code_is_refused(tmp_path):
    import pickle

    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_RunsCode(probe)))
    assert probe.exists(), "the payload is live: plain unpickling runs it"

    cfg, _, directory = _saved(tmp_path)
    marker = tmp_path / "marker"
    torch.save({"optimizer": _RunsCode(marker), "epoch": 2}, directory / checkpoint.STATE_FILE)
    model = build_model(cfg.model)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_training_state(directory, model, optimizer)
    message = str(info.value)
    assert str(directory / checkpoint.STATE_FILE) in message and "refused" in message
    assert "--name" in message and "train.init" in message, "says what to do"
    assert not marker.exists(), "nothing in the file was executed"
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.check_training_state(str(directory))  # the pre-flight check reads it the same way
    assert not marker.exists()


def test_training_state_of_the_wrong_shape_is_refused(tmp_path):
    cfg, _, directory = _saved(tmp_path)
    torch.save({"optimizer": {}, "epoch": 2.5}, directory / checkpoint.STATE_FILE)
    model = build_model(cfg.model)
    with pytest.raises(CheckpointError, match="integer epoch"):
        checkpoint.load_training_state(directory, model, torch.optim.Adam(model.parameters()))
    (directory / checkpoint.STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match="training_state.pt: missing"):
        checkpoint.check_training_state(str(directory))


def test_run_folder_resolves_to_best_and_export_drops_optimizer(tmp_path):
    _, _, directory = _saved(tmp_path)
    checkpoint.export(str(directory), str(tmp_path / "run" / "best"))
    assert not (tmp_path / "run" / "best" / checkpoint.STATE_FILE).exists()
    assert checkpoint.load(tmp_path / "run").uri.endswith("best")


def test_s3_checkpoint_loads(tmp_path, s3, bucket):
    _, model, directory = _saved(tmp_path)
    fs, prefix = storage.resolve(f"s3://{bucket}/run/best", s3)
    pafs.copy_files(str(directory), prefix, destination_filesystem=fs)
    enhancer = Enhancer.from_checkpoint(f"s3://{bucket}/run", device="cpu", s3=s3)
    weights = enhancer.model._w  # the light model's numpy twin, read without torch
    assert weights.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(weights[name], value.numpy())
    assert torch.equal(checkpoint.load(f"s3://{bucket}/run", s3=s3).model.head[0].weight, model.head[0].weight)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a skinray checkpoint"):
        checkpoint.load(tmp_path)
    _, _, directory = _saved(tmp_path)
    (directory / checkpoint.MODEL_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.pt"):
        checkpoint.load(directory)
