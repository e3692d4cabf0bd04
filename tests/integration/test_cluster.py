"""A real local multi-node cluster (head + worker node, separate processes, token auth on):
the smoke train job, then the enhance job, submitted through the job server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skinray import checkpoint, images, synth

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(free_port):
    # One CPU on the head: Train's two 1-CPU workers cannot both fit there, so at least one
    # always runs on the worker node.
    # Own ports throughout, the job agent's included: the session's local Ray may hold the defaults.
    ports = {"GCS_PORT": str(free_port()), "DASHBOARD_PORT": str(free_port()), "AGENT_PORT": str(free_port()),
             "HEAD_CPUS": "1"}
    env = {**os.environ, **ports, "VENV": str(Path(sys.executable).parents[1])}
    started = subprocess.run(["bash", str(REPO / "cluster/local/start.sh")], env=env, capture_output=True,
                             text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    address = f"http://127.0.0.1:{ports['DASHBOARD_PORT']}"
    assert address in started.stdout
    yield address, env
    stopped = subprocess.run(["bash", str(REPO / "cluster/local/stop.sh")], env=env, capture_output=True,
                             text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr


def _client(address: str):
    """A job client that sends the cluster's token (written by `ray start` to ~/.ray/auth_token),
    as `RAY_AUTH_MODE=token` makes Ray's own clients do; this process imported Ray without it."""
    from ray.job_submission import JobSubmissionClient

    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})


def _submit(address: str, entrypoint: str) -> str:
    """Submit, retrying while a just-started node's job agent is not up yet."""
    deadline = time.time() + 90
    while True:
        try:
            return _client(address).submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(2)


def _run_job(address: str, entrypoint: str, timeout: float = 600, job: str | None = None) -> str:
    from ray.job_submission import JobStatus

    client = _client(address)
    job = job or _submit(address, entrypoint)
    deadline = time.time() + timeout
    status = client.get_job_status(job)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} and time.time() < deadline:
        time.sleep(2)
        status = client.get_job_status(job)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    return logs


def test_train_then_enhance_jobs_on_a_two_node_cluster(cluster, tmp_path):
    cluster, _ = cluster
    synth.write_dataset(str(tmp_path / "data"), 30, size=48)
    logs = _run_job(cluster, f"python jobs/train.py --config jobs/configs/smoke.yaml "
                             f"--set data.source={tmp_path / 'data'} --set train.storage={tmp_path / 'runs'}")
    best = tmp_path / "runs" / "smoke" / "best"
    assert f"best model: {best}" in logs
    # Each line once, although the head and the worker node share this machine's log folder.
    said = [line for line in logs.splitlines() if line.startswith("[skinray] ")]
    assert len(said) > 3 and len(said) == len(set(said)), logs[-4000:]
    assert checkpoint.load(best).config.train.name == "smoke"

    logs = _run_job(cluster, f"python jobs/enhance.py --model {tmp_path / 'runs' / 'smoke'} "
                             f"{tmp_path / 'data'} {tmp_path / 'enhanced'}")
    assert f"enhanced images in: {tmp_path / 'enhanced'}" in logs
    outputs = sorted((tmp_path / "enhanced").glob("*.jpg"))
    assert len(outputs) == 30
    assert images.decode(outputs[0].read_bytes()).shape == (48, 48, 3)


def test_unauthenticated_client_is_refused(cluster):
    import urllib.error
    import urllib.request

    cluster, _ = cluster
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{cluster}/api/jobs/", timeout=10)
    assert info.value.code in (401, 403)


def test_killed_worker_node_training_job_resumes_from_checkpoint(cluster, tmp_path):
    address, env = cluster
    synth.write_dataset(str(tmp_path / "data"), 30, size=48)
    runs = tmp_path / "runs"
    entrypoint = (f"python jobs/train.py --config jobs/configs/smoke.yaml --set data.source={tmp_path / 'data'} "
                  f"--set train.storage={runs} --set train.epochs=6 --set train.name=nodekill")
    job = _submit(address, entrypoint)
    marker = runs / "nodekill" / "epoch_0001" / checkpoint.META_FILE
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the job checkpointed before the node was killed"
    temp_dir = f"/tmp/skinray-ray-{env['GCS_PORT']}"
    killed = subprocess.run(["pkill", "-9", "-f", rf"{temp_dir}/session_.*/sockets/raylet\.1"])
    assert killed.returncode == 0, "the worker node's processes were found and killed"
    # A replacement node joins, as an autoscaler would provide one.
    subprocess.run(["bash", str(REPO / "cluster/local/add-worker.sh")], env=env, check=True, timeout=120)
    logs = _run_job(address, entrypoint, job=job)
    assert "resumed from checkpoint after epoch" in logs
    history = checkpoint.read_metadata(str(runs / "nodekill" / "best"))["history"]
    latest = sorted(p for p in (runs / "nodekill").glob("epoch_*"))[-1]
    epochs = [h["epoch"] for h in checkpoint.read_metadata(str(latest))["history"]]
    assert epochs == [0, 1, 2, 3, 4, 5] and history
