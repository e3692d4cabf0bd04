"""The command line: user errors are one line and exit status 2, before any Ray work."""

import subprocess
import sys
import time

import pytest

from skinray.cli import main

SKINRAY = [sys.executable, "-m", "skinray.cli"]


def _run(*args, timeout=120):
    return subprocess.run([*SKINRAY, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-1"], "train.lr: must be > 0"),
    (["--loss", "mse"], "train.loss: unknown 'mse'"),
    (["--set", "degrade.jitter_fraction=2"], "degrade.jitter_fraction"),
    (["--image-size", "8", "--loss", "ssim"], "SSIM window"),
])
def test_invalid_config_is_rejected_before_ray_starts(flags, message, tmp_path):
    started = time.time()
    result = _run("train", "--data", str(tmp_path), *flags)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "Started a local Ray" not in result.stderr + result.stdout
    assert time.time() - started < 60


def test_missing_folder_is_one_line(tmp_path):
    result = _run("train", "--data", str(tmp_path / "nowhere"), "--epochs", "1")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nowhere: no such folder" in result.stderr


def test_empty_dataset_says_what_to_do(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    result = _run("train", "--data", str(tmp_path), "--epochs", "1")
    assert result.returncode == 2 and "found 0 training and 0 validation images" in result.stderr


def test_missing_bucket_is_one_line(s3_endpoint, aws_env):
    result = _run("train", "--data", "s3://no-such-bucket/images", "--s3-endpoint", s3_endpoint)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "s3://no-such-bucket/images: the bucket does not exist" in result.stderr


def test_synth_then_ingest_writes_a_manifest(tmp_path):
    assert _run("synth", str(tmp_path / "imgs"), "--count", "12", "--size", "32").returncode == 0
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    result = _run("ingest", str(tmp_path / "imgs"), "--out", str(tmp_path / "m.parquet"), "--val-fraction", "0.3")
    assert result.returncode == 0, result.stderr
    assert "1 unreadable skipped" in result.stdout and "broken.jpg" in result.stderr
    import pyarrow.parquet as pq
    table = pq.read_table(tmp_path / "m.parquet")
    assert table.num_rows == 12 and set(table["split"].to_pylist()) == {"train", "val"}


def test_serve_refuses_an_open_public_endpoint_and_an_empty_key_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SKINRAY_API_KEY", raising=False)
    assert main(["serve", "--model", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "without an API key" in capsys.readouterr().err
    (tmp_path / "key").write_text("\n")
    assert main(["serve", "--model", str(tmp_path), "--api-key-file", str(tmp_path / "key")]) == 2
    assert "is empty" in capsys.readouterr().err
