"""`skinray tune`: two tiny trials of Ray Tune (ASHA) over Ray Train runs."""

from __future__ import annotations

import json

import pytest
import yaml

from skinray import checkpoint
from skinray.config import Config
from skinray.tune import run

pytestmark = pytest.mark.integration


def test_tune_two_tiny_trials(ray_local, skin_dir, tmp_path):
    cfg = Config().replace({"data.source": str(skin_dir), "data.image_size": 32, "train.epochs": 2,
                            "train.workers": 1, "train.batch_size": 8, "train.storage": str(tmp_path),
                            "train.name": "search"})
    summary = run(cfg, trials=2, grace=1)
    trials = json.loads((tmp_path / "search" / "trials.json").read_text())
    assert len(trials) == len(summary.trials) == 2
    finished = [t for t in trials if t["val_psnr"] is not None]
    assert finished and all(1 <= t["epochs"] <= 2 for t in finished)
    best = max(finished, key=lambda t: t["val_psnr"])
    assert summary.best_metrics["val_psnr"] == best["val_psnr"]
    # The exported best loads like any model, and carries the sampled hyperparameters.
    loaded = checkpoint.load(summary.best_uri)
    for key, value in best["config"].items():
        section, field = key.split(".")
        assert getattr(getattr(loaded.config, section), field) == value
    assert loaded.metrics["val_psnr"] == pytest.approx(best["val_psnr"])
    saved = Config.from_dict(yaml.safe_load((tmp_path / "search" / "best_config.yaml").read_text()))
    assert saved == loaded.config
    assert sorted(p.name for p in (tmp_path / "search").glob("trial-*")) and (tmp_path / "search" / "best").is_dir()
