"""Faults injected into real runs (issue 12 item 6): a model actor of a running archive job
killed, the S3 server stopped for a few seconds mid-job and mid-checkpoint, a full disk under
the output, and a soak of the endpoint with good and bad bodies mixed."""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from skinray import archive, checkpoint, images, storage, synth
from skinray.config import Config, EnhanceConfig, ModelConfig, load_config
from skinray.errors import SkinrayError
from skinray.model import build_model

pytestmark = pytest.mark.integration
OUTAGE_S = 3.0  # the S3 server is away this long
REPORT = ["_skinray/manifest.parquet", "_skinray/progress.json", "_skinray/summary.json"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(width=8))
    return checkpoint.save(
        tmp_path_factory.mktemp("model") / "best", build_model(cfg.model), cfg, {"epoch": 0}
    )


def _manifest(output: Path | str, s3=None) -> dict[str, dict]:
    data = storage.read_bytes(storage.join(str(output), "_skinray", "manifest.parquet"), s3)
    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), "one report row per input"
    return {r["key"]: r for r in rows}


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --- a. a model actor of a running archive job dies ------------------------------------------


def _enhance_actors() -> list:
    import ray
    from ray.util.state import list_actors

    job = ray.get_runtime_context().get_job_id()
    return [
        a
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=10000, detail=True)
        if (a.repr_name or "").startswith("MapWorker(") and a.job_id == job
    ]  # Ray Data's map actors


def test_archive_job_survives_a_killed_model_actor(ray_local, model_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    names = [Path(u).name for u in synth.write_dataset(str(src), 60, size=160, seed=5)]
    cfg = EnhanceConfig(
        model=str(model_dir), input=str(src), output=str(out), workers=2, batch_size=2
    )
    killed: dict = {}
    result: dict = {}

    def job() -> None:
        try:
            result["summary"] = archive.run(cfg, execution="ray")
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 300
    while thread.is_alive() and not killed and time.monotonic() < deadline:
        written = [n for n in os.listdir(out) if n.endswith(".jpg")] if out.is_dir() else []
        actors = _enhance_actors() if written else []
        if actors:  # the job is under way: an actor dies as a crashed worker would
            os.kill(actors[0].pid, signal.SIGKILL)
            killed.update(pid=actors[0].pid, written=len(written))
        time.sleep(0.05)
    thread.join(600)
    assert killed, "the job ended before an actor could be killed (make it longer)"
    assert 0 < killed["written"] < len(names), killed
    assert "error" not in result, f"the job failed after its actor died: {result.get('error')}"
    summary = result["summary"]
    assert summary.counts["ok"] == len(names) and summary.total == len(names), summary.line()
    rows = _manifest(out)
    assert sorted(rows) == sorted(names)
    assert all(r["status"] == "ok" and r["owned"] for r in rows.values()), [
        r for r in rows.values() if r["status"] != "ok"
    ]
    assert _files(out) == sorted(names + REPORT), "one output per input, no temporary files"
    for name in names:
        assert images.decode((out / name).read_bytes()).shape == (160, 160, 3)


def test_a_batch_retried_after_its_actor_died_mid_write_keeps_its_own_outputs(model_dir, tmp_path):
    """Ray re-runs the whole batch of an actor that died: the outputs it had already written are
    found with the very bytes the retry encodes (ok, not 'a file skinray did not write'); a file
    with other bytes that appeared meanwhile is still never replaced."""
    names = [Path(u).name for u in synth.write_dataset(str(tmp_path / "in"), 3, size=40, seed=1)]
    cfg = EnhanceConfig(
        model=str(model_dir), input=str(tmp_path / "in"), output=str(tmp_path / "out")
    )
    todo, _ = archive.plan(cfg, None)

    def attempt() -> dict:
        decoded = archive.read_decode(archive._numpy_batch(todo), max_pixels=cfg.max_pixels, s3=None)
        return archive.encode_write(decoded, quality=cfg.quality, s3=None)

    first = attempt()
    assert list(first["status"]) == ["ok"] * 3
    written = {n: (tmp_path / "out" / n).read_bytes() for n in names}
    (tmp_path / "out" / names[2]).write_bytes(b"another program's file")
    retry = attempt()  # the same batch again, as Ray retries it
    assert list(retry["status"]) == ["ok", "ok", "failed"], list(retry["reason"])
    assert "did not write" in retry["reason"][2]
    assert all((tmp_path / "out" / n).read_bytes() == written[n] for n in names[:2])
    assert (tmp_path / "out" / names[2]).read_bytes() == b"another program's file"


# --- b. the S3 server goes away for a few seconds --------------------------------------------


class Moto:
    """A moto server of this test's own on a fixed loopback port that can be stopped and started
    again (its buckets live in this process and survive)."""

    def __init__(self, port: int):
        from moto.server import ThreadedMotoServer

        self.port, self.server_class = port, ThreadedMotoServer
        self.server = None
        self.outages: list[tuple[float, float]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = self.server_class(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server = None

    def outage(self, seconds: float) -> threading.Thread:
        """Stop now, start again after ``seconds`` (in a thread)."""
        began = time.monotonic()
        self.stop()

        def later():
            time.sleep(seconds)
            self.start()
            self.outages.append((began, time.monotonic()))

        thread = threading.Thread(target=later)
        thread.start()
        return thread


@pytest.fixture
def moto(aws_env, free_port):
    server = Moto(free_port())
    server.start()
    yield server
    if server.server is not None:
        server.stop()


def test_s3_filesystem_pickles_with_its_retry_strategy():
    """Ray ships the filesystem to Train workers pickled; pyarrow's own pickling drops
    retry_strategy, so skinray's comes back as the one built from the same options."""
    import pickle

    import ray.cloudpickle

    fs, _ = storage.resolve(
        "s3://bucket/key", storage.S3Options(endpoint="http://127.0.0.1:9", region="us-east-1")
    )
    assert pickle.loads(pickle.dumps(fs)) is fs
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(fs)) is fs


def _when_keys(moto: Moto, bucket: str, prefix: str, predicate, timeout: float = 600) -> list[str]:
    """Poll the bucket (boto3, outside skinray) until ``predicate(keys)``; returns the keys."""
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        if predicate(keys):
            return keys
        time.sleep(0.02)
    raise AssertionError(f"s3://{bucket}/{prefix}: condition not met in {timeout}s")


def _bucket(moto: Moto, name: str) -> str:
    import boto3

    boto3.session.Session().client("s3", endpoint_url=moto.endpoint, region_name="us-east-1").create_bucket(
        Bucket=name
    )
    return name


@pytest.mark.parametrize("execution", ["local", "ray"])
def test_archive_job_rides_out_an_s3_outage(moto, model_dir, execution, request):
    """In-process, and on Ray, whose actors get the S3 filesystem pickled (pyarrow's pickling
    dropped the retry strategy: the actors gave up after ~1.7 s and rows failed)."""
    if execution == "ray":
        request.getfixturevalue("ray_local")
    s3 = storage.S3Options(endpoint=moto.endpoint, region="us-east-1")
    bucket = _bucket(moto, f"faults-archive-{execution}")
    names = [
        u.rsplit("/", 1)[1]
        for u in synth.write_dataset(f"s3://{bucket}/in", 40, size=96, seed=2, s3=s3)
    ]
    cfg = EnhanceConfig(
        model=str(model_dir), input=f"s3://{bucket}/in", output=f"s3://{bucket}/out", batch_size=2
    )
    result: dict = {}

    def job() -> None:
        try:
            result["summary"] = archive.run(cfg, s3, execution=execution)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc
        result["ended"] = time.monotonic()

    thread = threading.Thread(target=job)
    thread.start()
    before = _when_keys(moto, bucket, "out/", lambda keys: any(k.endswith(".jpg") for k in keys))
    restart = moto.outage(OUTAGE_S)
    thread.join(600)
    restart.join()
    written_before = sum(k.endswith(".jpg") for k in before)
    assert written_before < len(names), "the outage began while the job was writing"
    assert result["ended"] > moto.outages[0][1], "the job went on after the server came back"
    assert "error" not in result, (
        f"the job did not ride out a {OUTAGE_S}s outage: {result.get('error')}"
    )
    assert result["summary"].counts["ok"] == len(names), result["summary"].line()
    rows = _manifest(f"s3://{bucket}/out", s3)
    assert sorted(rows) == sorted(names) and all(r["status"] == "ok" for r in rows.values())
    outputs = storage.list_files(f"s3://{bucket}/out", s3)
    assert sorted(e.key for e in outputs if not e.key.startswith("_skinray/")) == sorted(names)
    for entry in outputs:
        if entry.key.endswith(".jpg"):
            assert images.decode(storage.read_bytes(entry.uri, s3)).shape == (96, 96, 3)


def test_training_checkpoints_ride_out_an_s3_outage(ray_local, moto, skin_dir):
    from skinray.train import fit

    s3 = storage.S3Options(endpoint=moto.endpoint, region="us-east-1")
    bucket = _bucket(moto, "faults-train")
    cfg = load_config(
        overrides={
            "data.image_size": 32,
            "train.batch_size": 8,
            "model.width": 8,
            "data.source": str(skin_dir),
            "train.storage": f"s3://{bucket}/runs",
            "train.name": "outage",
            "train.epochs": 3,
            "train.workers": 1,
            "train.max_failures": 0,  # a failed upload must not hide behind a restart
            "storage.s3_endpoint": moto.endpoint,
        }
    )
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = fit(cfg)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    # The first checkpoint's first file is up: the rest of it, and the next epochs' checkpoints,
    # are uploaded into the outage.
    before = _when_keys(
        moto,
        bucket,
        "runs/outage/",
        lambda keys: any(k.startswith("runs/outage/epoch_") for k in keys),
    )
    restart = moto.outage(OUTAGE_S)
    thread.join(900)
    restart.join()
    assert not any(k.startswith("runs/outage/best/") for k in before), (
        "the outage began mid-training"
    )
    assert "error" not in result, (
        f"training did not ride out a {OUTAGE_S}s outage: {result.get('error')}"
    )
    summary = result["summary"]
    assert [h["epoch"] for h in summary.history] == [0, 1, 2]
    loaded = checkpoint.load(summary.best_uri, s3=s3)
    assert loaded.metrics["epoch"] in (0, 1, 2)
    keys = [e.key for e in storage.list_files(f"s3://{bucket}/runs/outage", s3)]
    kept = sorted({k.split("/")[0] for k in keys if k.startswith("epoch_")})
    for (
        name
    ) in kept:  # a checkpoint Ray Train reported is whole, including those uploaded into the outage
        assert {
            f"{name}/{n}"
            for n in (checkpoint.MODEL_FILE, checkpoint.META_FILE, checkpoint.STATE_FILE)
        } <= set(keys), (name, keys)
        checkpoint.load(f"s3://{bucket}/runs/outage/{name}", s3=s3)
    last = kept[-1]
    assert checkpoint.check_training_state(f"s3://{bucket}/runs/outage/{last}", s3) == 2, (
        "the last checkpoint is whole and resumable"
    )


# --- c. the output's disk is full ------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and the right to mount)."""
    if os.geteuid() != 0:
        pytest.skip(
            "a full disk needs a small tmpfs, and mounting one needs root (not running as root)"
        )
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _noise_pngs(folder: Path, count: int, side: int = 256) -> list[str]:
    """Incompressible photos: each output is ~100+ KB, so a few fill 1 MiB."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            folder / f"p{i:02d}.png"
        )
    return [f"p{i:02d}.png" for i in range(count)]


def test_full_disk_fails_the_rows_that_did_not_fit_and_a_rerun_finishes(
    model_dir, tmp_path, small_disk
):
    names = _noise_pngs(tmp_path / "in", 20)
    out = small_disk / "out"
    cfg = EnhanceConfig(
        model=str(model_dir), input=str(tmp_path / "in"), output=str(out), batch_size=4
    )
    first = archive.run(cfg, execution="local")

    rows = _manifest(out)
    assert sorted(rows) == names
    ok = sorted(k for k, r in rows.items() if r["status"] == "ok")
    failed = {k: r["reason"] for k, r in rows.items() if r["status"] == "failed"}
    assert ok and failed and len(ok) + len(failed) == len(names), first.line()
    assert all(
        "No space left on device" in reason and k in reason for k, reason in failed.items()
    ), failed
    assert _files(out) == sorted(ok + REPORT), "no partial or temporary file of a failed write"
    for name in ok:
        assert images.decode((out / name).read_bytes()).shape == (256, 256, 3)
    written = {name: (out / name).stat().st_mtime_ns for name in ok}

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # space freed
    second = archive.run(cfg, execution="local")
    assert second.counts["skipped-existing"] == len(ok) and second.counts["ok"] == len(failed), (
        second.line()
    )
    assert {name: (out / name).stat().st_mtime_ns for name in ok} == written, (
        "finished images are not redone"
    )
    assert all(r["status"] in ("ok", "skipped-existing") for r in _manifest(out).values())
    assert _files(out) == sorted(names + REPORT)


def test_disk_too_full_for_the_report_says_so_and_which_images_failed(
    model_dir, tmp_path, small_disk
):
    names = _noise_pngs(tmp_path / "in", 3)
    out = small_disk / "out"
    out.mkdir()
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        while os.write(fd, b"\1" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    cfg = EnhanceConfig(model=str(model_dir), input=str(tmp_path / "in"), output=str(out))
    with pytest.raises(SkinrayError) as err:
        archive.run(cfg, execution="local")
    message = str(err.value)
    assert "No space left on device" in message and "manifest.parquet" in message, message
    assert "3 failed" in message and all(name in message for name in names), message
    assert _files(out) == [], "nothing partial left behind"

    filler.unlink()
    again = archive.run(cfg, execution="local")
    assert again.counts["ok"] == len(names), again.line()


# --- d. a soak of the endpoint ---------------------------------------------------------------


def _soak_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("skinray_soak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_endpoint_soak_has_no_5xx_and_flat_memory(ray_local, model_dir):
    from ray import serve

    soak = _soak_module()
    url, pid = soak.start_endpoint(str(model_dir), app="soak")
    try:
        summary = soak.soak(url, pid, requests=300, clients=16, warmup=60)
    finally:
        serve.shutdown()
    print(f"[soak] {soak.line(summary)}")
    assert summary["5xx"] == 0, summary["codes"]
    assert summary["client_errors"] == {} and summary["wrong"] == {}, summary
    assert set(summary["codes"]) == {"200", "400", "413", "415"}, (
        "good and bad bodies both reached the replica"
    )
    assert summary["growth"] < 0.5, "replica memory grows with requests"
