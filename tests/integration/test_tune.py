"""`skinray tune`: two tiny trials of Ray Tune (ASHA) over Ray Train runs, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from skinray import checkpoint
from skinray.config import Config

pytestmark = pytest.mark.integration


def test_tune_two_tiny_trials_with_a_relative_storage(skin_dir, tmp_path):
    # --storage runs: relative to where the command runs, although each trial runs in a working
    # directory of Tune's own.
    result = subprocess.run(
        [sys.executable, "-m", "skinray.cli", "tune", "--data", str(skin_dir), "--storage", "runs",
         "--name", "search", "--trials", "2", "--grace", "1", "--epochs", "1", "--image-size", "32",
         "--workers", "1", "--batch-size", "8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "SKINRAY_LOG_DIR": str(tmp_path / "logs")})
    out, err = result.stdout, result.stderr
    assert result.returncode == 0, out[-3000:] + err[-3000:]
    # Quiet like the other commands: skinray's own lines only (no Ray Tune tables or trial status).
    assert all(line.startswith("[skinray] ") for line in (out + err).splitlines()), out + err
    run = tmp_path / "runs" / "search"
    assert f"[skinray] best model: {run / 'best'}" in out
    trials = json.loads((run / "trials.json").read_text())
    assert len(trials) == 2
    finished = [t for t in trials if t["val_psnr"] is not None]
    assert finished and all(t["epochs"] == 1 for t in finished)
    best = max(finished, key=lambda t: t["val_psnr"])
    # The exported best loads like any model, and carries the sampled hyperparameters.
    loaded = checkpoint.load(str(run / "best"))
    for key, value in best["config"].items():
        section, field = key.split(".")
        assert getattr(getattr(loaded.config, section), field) == value
    assert loaded.metrics["val_psnr"] == pytest.approx(best["val_psnr"])
    saved = Config.from_dict(yaml.safe_load((run / "best_config.yaml").read_text()))
    assert saved == loaded.config
    assert len(list(run.glob("trial-*"))) == 2 and not list(tmp_path.glob("*/working_dirs"))
