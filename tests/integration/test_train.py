"""Real Ray Train runs: local folder and S3 (moto server), bad files, resume, dead worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from skinray import checkpoint, storage, synth
from skinray.config import load_config
from skinray.predict import Enhancer
from skinray.train import fit

pytestmark = pytest.mark.integration
SKINRAY = [sys.executable, "-m", "skinray.cli"]
TINY = {"data.image_size": 32, "train.batch_size": 8, "model.width": 8}


def _history(run: Path) -> list[dict]:
    latest = sorted(p for p in run.glob("epoch_*") if p.is_dir())[-1]
    return json.loads((latest / checkpoint.META_FILE).read_text())["history"]


def test_local_run_trains_checkpoints_and_counts_bad_files(ray_local, skin_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(skin_dir, data_dir)
    (data_dir / "zero.jpg").write_bytes(b"")
    big = tmp_path / "big"
    synth.write_dataset(str(big), 1, size=256)
    whole = (big / "skin_00000.jpg").read_bytes()
    for i in range(3):  # truncated JPEGs pass the header probe and fail in the pipeline
        (data_dir / f"truncated_{i}.jpg").write_bytes(whole[: len(whole) // 2])
    cfg = load_config(overrides={**TINY, "data.source": str(data_dir), "train.storage": str(tmp_path / "runs"),
                                 "train.name": "local", "train.epochs": 2, "train.workers": 2, "train.keep": 1})
    summary = fit(cfg)

    assert [h["epoch"] for h in summary.history] == [0, 1]
    for h in summary.history:
        assert np.isfinite([h["train_loss"], h["val_loss"], h["val_psnr"], h["val_ssim"]]).all()
        # Equal sharding over 2 workers may leave out up to one row per split per epoch.
        assert 2 <= h["skipped"] <= 3, "truncated files are skipped and counted every epoch"
        assert 41 <= h["train_images"] + h["val_images"] + h["skipped"] <= 43
    assert [k for k, _ in summary.skipped_files] == ["zero.jpg"]
    run = tmp_path / "runs" / "local"
    assert len([p for p in run.glob("epoch_*") if p.is_dir()]) <= 2, "best-k (1) plus the latest are kept"
    enhancer = Enhancer.from_checkpoint(str(run), device="cpu")
    assert enhancer.loaded.uri == summary.best_uri
    assert enhancer.enhance(synth.skin_image(0, 1, 48)).shape == (48, 48, 3), "any size at inference"


def test_s3_to_s3_run_through_moto(ray_local, skin_dir, s3_endpoint, s3, bucket):
    fs, prefix = storage.resolve(f"s3://{bucket}/images", s3)
    pafs.copy_files(str(skin_dir), prefix, destination_filesystem=fs)
    cfg = load_config(overrides={**TINY, "data.source": f"s3://{bucket}/images",
                                 "train.storage": f"s3://{bucket}/runs", "train.name": "s3run",
                                 "train.epochs": 1, "train.workers": 1, "storage.s3_endpoint": s3_endpoint})
    summary = fit(cfg)
    assert summary.best_uri == f"s3://{bucket}/runs/s3run/best"
    loaded = checkpoint.load(summary.best_uri, s3=s3)
    assert loaded.config.data.source == f"s3://{bucket}/images"
    assert len(loaded.fingerprint) == 64
    keys = [e.key for e in storage.list_files(f"s3://{bucket}/runs/s3run", s3)]
    assert any(k.startswith("epoch_0000/") for k in keys)


def _worker_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"RayTrainWorker" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_dead_worker_restarts_from_checkpoint(ray_local, skin_dir, tmp_path):
    cfg = load_config(overrides={**TINY, "data.source": str(skin_dir), "train.storage": str(tmp_path / "runs"),
                                 "train.name": "killed", "train.epochs": 4, "train.workers": 2,
                                 "train.max_failures": 2})
    killed = []

    def kill_a_worker_after_first_checkpoint():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if (tmp_path / "runs" / "killed" / "epoch_0000" / checkpoint.META_FILE).exists():
                pids = _worker_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_a_worker_after_first_checkpoint, daemon=True)
    watcher.start()
    summary = fit(cfg)
    watcher.join(timeout=1)
    assert killed, "a Train worker process was killed mid-run"
    epochs = [h["epoch"] for h in summary.history]
    assert epochs == [0, 1, 2, 3], "the run finished every epoch once, resuming after the failure"


def test_killed_run_resumes_from_its_checkpoint(skin_dir, tmp_path):
    storage_dir = tmp_path / "runs"
    args = [*SKINRAY, "train", "--data", str(skin_dir), "--storage", str(storage_dir), "--name", "resume",
            "--epochs", "5", "--image-size", "32", "--batch-size", "8", "--workers", "1",
            "--set", "model.width=8"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    marker = storage_dir / "resume" / "epoch_0001" / checkpoint.META_FILE
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), "the first run wrote a checkpoint"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (storage_dir / "resume" / "best").exists(), "killed before finishing"

    second = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert "resumed from checkpoint after epoch" in output
    assert "epoch 1/5" not in output, "epochs already done are not trained again"
    assert [h["epoch"] for h in _history(storage_dir / "resume")] == [0, 1, 2, 3, 4]


# Resume is explicit: a re-run resumes only the same model on the same data and degradations.

@pytest.fixture(scope="module")
def stored_run(ray_local, tmp_path_factory):
    """A finished 1-epoch run on 16 tiny photos; each test resumes a copy of it."""
    root = tmp_path_factory.mktemp("stored")
    synth.write_dataset(str(root / "data"), count=16, size=48, seed=3)
    overrides = {**TINY, "data.source": str(root / "data"), "train.storage": str(root / "runs"),
                 "train.name": "same", "train.epochs": 1, "train.workers": 1}
    return root, overrides, fit(load_config(overrides=overrides))


def _copy_of(stored_run, tmp_path) -> dict:
    root, overrides, _ = stored_run
    shutil.copytree(root / "runs", tmp_path / "runs")
    return {**overrides, "train.storage": str(tmp_path / "runs")}


def test_rerun_with_another_width_stops_before_ray_with_one_line(stored_run, tmp_path):
    overrides = _copy_of(stored_run, tmp_path)
    args = [*SKINRAY, "train", "--data", overrides["data.source"], "--storage", overrides["train.storage"],
            "--name", "same", "--epochs", "2", "--image-size", "32", "--batch-size", "8", "--workers", "1",
            "--set", "model.width=16"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("skinray: error:")]
    assert len(errors) == 1 and "model.width 8 there, 16 here" in errors[0] and "--name" in errors[0], run.stderr
    assert "Ray" not in run.stdout + run.stderr.replace(errors[0], ""), "stopped before Ray started"
    assert not (tmp_path / "runs" / "same" / "epoch_0001").exists()


def test_rerun_on_another_dataset_stops_before_ray(stored_run, tmp_path, monkeypatch):
    from skinray import runtime
    from skinray.errors import SkinrayError

    overrides = _copy_of(stored_run, tmp_path)
    synth.write_dataset(str(tmp_path / "other"), count=16, size=48, seed=4)
    monkeypatch.setattr(runtime, "init_ray", lambda *a, **k: pytest.fail("Ray was started"))
    with pytest.raises(SkinrayError, match=r"data fingerprint .* there .* here .*--name NEW.*"
                                           r"--set train.resume=force") as info:
        fit(load_config(overrides={**overrides, "data.source": str(tmp_path / "other"), "train.epochs": 2}))
    assert "\n" not in str(info.value)
    with pytest.raises(SkinrayError, match=r"degrade.blur_prob 0.3 there, 0.1 here"):
        fit(load_config(overrides={**overrides, "degrade.blur_prob": 0.1}))


def test_resume_force_continues_on_another_dataset(stored_run, tmp_path, capsys):
    overrides = _copy_of(stored_run, tmp_path)
    synth.write_dataset(str(tmp_path / "other"), count=16, size=48, seed=4)
    summary = fit(load_config(overrides={**overrides, "data.source": str(tmp_path / "other"),
                                         "train.epochs": 2, "train.resume": "force"}))
    assert [h["epoch"] for h in summary.history] == [0, 1]
    assert summary.history[0]["epoch_seconds"] == stored_run[2].history[0]["epoch_seconds"], "epoch 0 kept"
    assert "train.resume=force: resuming run 'same'" in capsys.readouterr().out


def test_unchanged_rerun_with_more_epochs_and_another_lr_resumes(stored_run, tmp_path):
    overrides = _copy_of(stored_run, tmp_path)
    summary = fit(load_config(overrides={**overrides, "train.epochs": 2, "train.lr": 0.001}))
    assert [h["epoch"] for h in summary.history] == [0, 1]
    assert summary.history[0]["epoch_seconds"] == stored_run[2].history[0]["epoch_seconds"], "epoch 0 kept"
