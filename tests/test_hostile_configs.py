"""Configs and checkpoints that cannot explode (issue 23 item 9 and 'also noticed'): a YAML alias
bomb, a huge ill-typed value, a skinray.json with absurd sizes, a pickled weights file."""

from __future__ import annotations

import json
import time

import pytest
import torch

from skinray import checkpoint
from skinray.config import load_config
from skinray.errors import CheckpointError, ConfigError
from skinray.model import build_model


def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines.append("train:\n  lr: *a8")  # 10^9 leaves once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - started < 2
    assert "aliases" in str(info.value) and len(str(info.value)) < 1000


def test_a_huge_ill_typed_value_gives_a_short_message(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("train:\n  lr: [" + ", ".join(["[1, 2, 3, 4, 5, 6]"] * 2_000) + "]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "train" in str(info.value) and "lr" in str(info.value) and len(str(info.value)) < 1000


def _saved(tmp_path):
    cfg = load_config(overrides={"model.width": 8, "train.name": "ck"})
    return checkpoint.save(tmp_path / "ckpt", build_model(cfg.model), cfg, {"epoch": 1})


def test_checkpoint_config_out_of_range_is_refused_before_building(tmp_path):
    directory = _saved(tmp_path)
    meta = json.loads((directory / checkpoint.META_FILE).read_text())
    meta["config"]["model"]["lut_bases"] = 100_000_000  # tried to allocate 51 GB
    (directory / checkpoint.META_FILE).write_text(json.dumps(meta))
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=r"model.lut_bases.*\[1, 256\]"):
        checkpoint.load(directory)
    assert time.monotonic() - started < 5


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_pickled_weights_are_refused_in_skinrays_words(tmp_path):
    directory = _saved(tmp_path)
    marker = tmp_path / "marker"
    torch.save({"w": _RunsCode(marker)}, directory / checkpoint.MODEL_FILE)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(directory)
    message = str(info.value)
    assert "refused" in message and "run code" in message and checkpoint.MODEL_FILE in message
    assert "weights_only" not in message, "never PyTorch's advice to turn the protection off"
    assert not marker.exists()
