"""The commands show skinray's own progress and results; Ray's lines go to a log file whose path
is printed once, and -v shows them on the terminal instead."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skinray import synth

pytestmark = pytest.mark.integration

SKINRAY = [sys.executable, "-m", "skinray.cli"]
RAY_LINES = re.compile(r"Execution plan|Starting execution of Dataset|pid=\d+|core_worker\.cc|Token authentication|"
                       r"TrainingReport|Reporting training result|Checkpoint successfully created")


def _run(args: list[str], tmp_path: Path, **env: str) -> tuple[str, str]:
    result = subprocess.run([*SKINRAY, *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "SKINRAY_LOG_DIR": str(tmp_path / "logs"), **env})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout, result.stderr


def _log_path(stderr: str) -> Path:
    paths = re.findall(r"^\[skinray\] Ray's messages: (\S+) \(-v shows them here\)$", stderr, re.M)
    assert len(paths) == 1, stderr
    return Path(paths[0])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    synth.write_dataset(str(root), count=2, size=48, seed=5)
    return root


def test_enhance_on_ray_is_quiet_and_names_its_log(photos, tmp_path):
    out, err = _run(["enhance", str(photos), str(tmp_path / "out"), "--ray"], tmp_path)
    assert not RAY_LINES.search(out + err), out + err
    assert all(line.startswith("[skinray] ") for line in (out + err).splitlines()), out + err
    assert "[skinray] enhanced 2 files" in out
    log = _log_path(err)
    assert log.parent == tmp_path / "logs" and log.name.startswith("skinray-enhance-")
    assert RAY_LINES.search(log.read_text()), "Ray's lines are in the log file"


def test_verbose_shows_rays_lines(photos, tmp_path):
    out, err = _run(["enhance", str(photos), str(tmp_path / "out"), "--ray", "-v"], tmp_path)
    assert "Execution plan" in out + err and "Ray's messages" not in err
    assert "[skinray] enhanced 2 files" in out
    assert not (tmp_path / "logs").exists()


def test_training_reports_progress_within_an_epoch(tmp_path):
    synth.write_dataset(str(tmp_path / "data"), count=12, size=40, seed=2)
    out, err = _run(["train", "--data", str(tmp_path / "data"), "--storage", str(tmp_path / "runs"),
                     "--epochs", "1", "--image-size", "32", "--batch-size", "2", "--workers", "1",
                     "--set", "data.val_fraction=0.25", "--set", "model.width=8"],
                    tmp_path, SKINRAY_PROGRESS_EVERY_S="0")
    assert not RAY_LINES.search(out + err), out + err
    steps = re.findall(r"^\[skinray\] epoch 1/1 step (\d+)/(\d+) loss=-?\d+\.\d+ \d+\.\d img/s$", out, re.M)
    assert steps and int(steps[0][0]) == 1 and int(steps[-1][1]) >= len(steps), out
    assert re.search(r"^\[skinray\] epoch 1/1 train_loss=", out, re.M)
    assert out.rstrip().splitlines()[-1].startswith("[skinray] best model: "), "nothing after the summary"
    _log_path(err)
