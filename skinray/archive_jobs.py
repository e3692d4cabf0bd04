"""Archive jobs as Ray Jobs: what the endpoint's ``/v1/batch`` submits to the cluster's job
manager (the Jobs API of ``ray job submit``: state in the GCS, logs, ``ray job stop``, the
dashboard), and how a job looks through the API. The job itself is :mod:`skinray.archive`, run by
``jobs/enhance.py``; the HTTP routes are in :mod:`skinray.serving`."""

from __future__ import annotations

import dataclasses
from typing import Optional

import ray

from skinray import archive, paths, storage
from skinray.config import EnhanceConfig
from skinray.errors import SkinrayError

JOB_TAG = "skinray-batch"  # metadata["skinray"] of the jobs an endpoint submits
JOB_STATES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")  # Ray's JobStatus names


def job_client():
    """A Jobs API client for the cluster this replica runs on (its dashboard, found through the
    GCS; ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS`` override). Ray's token auth applies: the
    client sends the cluster's token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``) like ``ray job submit`` does."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray.get_runtime_context().gcs_address)


def job_entrypoint(cfg: EnhanceConfig, roots: paths.Roots, s3_endpoint: Optional[str]) -> str:
    """The shell command of an archive job: ``jobs/enhance.py`` (the ``skinray enhance``
    arguments plus the endpoint's roots, checked again where the job runs)."""
    import shlex
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "jobs" / "enhance.py"
    command = [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m", "skinray.cli", "enhance"]
    # --ray-address auto: the cluster the job runs on (Ray sets RAY_ADDRESS for a job's driver)
    command += ["--model", cfg.model, "--ray-address", "auto", cfg.input, cfg.output]
    for f in dataclasses.fields(cfg):  # every other option of the job (EnhanceConfig's fields)
        if f.name not in ("model", "input", "output"):
            command += ["--set", f"enhance.{f.name}={getattr(cfg, f.name)}"]
    if s3_endpoint:
        command += ["--s3-endpoint", s3_endpoint]
    for root in roots.read_write or ():
        command += ["--batch-roots", root]
    for root in roots.overwrite:
        command += ["--batch-writable-roots", root]
    return shlex.join(command)


def _job_error(client, job_id: str, info) -> str:
    """Why a job failed: its last ``skinray: error:`` line, else its last log line, else Ray's message."""
    try:
        lines = [line.strip() for line in client.get_job_logs(job_id).splitlines() if line.strip()]
    except Exception:  # noqa: BLE001 - logs are a nicety
        lines = []
    ours = [line.split("skinray: error:", 1)[1].strip() for line in lines if "skinray: error:" in line]
    return (ours[-1] if ours else lines[-1] if lines else (info.message or ""))[:500]


def job_view(client, info, s3_endpoint: Optional[str]) -> dict:
    """A job as the API shows it: Ray's status, the counts of the job's own progress report
    (OUTPUT/_skinray/progress.json; done = ok + skipped-existing), the manifest when finished."""
    import json

    meta = info.metadata or {}
    state = info.status.value if hasattr(info.status, "value") else str(info.status)
    job = {"id": info.submission_id, "state": state, "input": meta.get("input"), "output": meta.get("output"),
           "counts": {}, "total": None, "done": 0, "failed": 0, "error": None, "manifest_uri": None,
           "created": (info.start_time or 0) / 1000 or None, "finished": (info.end_time or 0) / 1000 or None}
    try:
        uri = storage.join(meta.get("output", ""), archive.REPORT_DIR, archive.PROGRESS_FILE)
        report = json.loads(storage.read_bytes(uri, storage.S3Options.from_env(s3_endpoint)))
        if job["created"] is None or report.get("started", 0) >= job["created"] - 5:  # not an earlier run's
            counts = report.get("counts") or {}
            job.update(counts=counts, total=report.get("total"),
                       done=counts.get("ok", 0) + counts.get("skipped-existing", 0),
                       failed=counts.get("failed", 0) + counts.get("not-image", 0))
            if state == "SUCCEEDED":
                job["manifest_uri"] = report.get("manifest_uri")
    except (SkinrayError, OSError, ValueError):
        pass  # not started yet, or the output is not readable from this replica
    if state == "FAILED":
        job["error"] = _job_error(client, info.submission_id, info)
    elif state == "STOPPED":
        job["error"] = "stopped (DELETE /v1/batch/{id} or ray job stop)"
    return job
