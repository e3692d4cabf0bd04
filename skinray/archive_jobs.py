"""Archive jobs as Ray Jobs: what the endpoint's ``/v1/batch`` submits to the cluster's job
manager (the Jobs API of ``ray job submit``: state in the GCS, logs, ``ray job stop``, the
dashboard), and how a job looks through the API. The job itself is :mod:`skinray.archive`, run by
``jobs/enhance.py``; the HTTP routes are in :mod:`skinray.serving`."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import stat
from typing import Optional

import ray

from skinray import archive, paths, storage
from skinray.config import EnhanceConfig
from skinray.errors import SkinrayError

JOB_TAG = "skinray-batch"  # metadata["skinray"] of the jobs an endpoint submits
JOB_STATES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")  # Ray's JobStatus names
JOB_ID = re.compile(r"skinray-batch-[0-9a-f]{16}")  # the ids the endpoint issues (new_job_id)
PROGRESS_MAX_BYTES = 64 * 1024  # a progress report is a few hundred bytes


def new_job_id() -> str:
    import uuid

    return f"skinray-batch-{uuid.uuid4().hex[:16]}"


def valid_job_id(job_id: str) -> bool:
    return bool(JOB_ID.fullmatch(job_id))


class BadReport(ValueError):
    """A job's progress report that is not one skinray wrote (shape, size, a link)."""


def _counts(value) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
            k in archive.STATUSES and type(v) is int and v >= 0 for k, v in value.items()):
        raise BadReport(f"counts must map {', '.join(archive.STATUSES)} to counts")
    return value


def parse_progress(data: bytes) -> dict:
    """A progress report (archive.ProgressReport's JSON) checked against its schema: numbers
    where numbers go, known statuses only; :class:`BadReport` otherwise."""
    if len(data) > PROGRESS_MAX_BYTES:
        raise BadReport(f"{len(data)} bytes, over {PROGRESS_MAX_BYTES}")
    try:
        report = json.loads(data)
    except ValueError as exc:
        raise BadReport(f"not JSON ({exc})") from None
    if not isinstance(report, dict):
        raise BadReport("not a JSON object")
    for key, kinds in (("started", (int, float)), ("total", (int,)), ("manifest_uri", (str,))):
        if type(report.get(key)) not in kinds or (key == "total" and report[key] < 0):
            raise BadReport(f"{key!r} missing or of the wrong type")
    return {"started": float(report["started"]), "total": report["total"], "counts": _counts(report.get("counts")),
            "manifest_uri": report["manifest_uri"][:2000]}


def read_progress(output: str, s3_endpoint: Optional[str], job_id: str = "") -> bytes:
    """The bytes of the job's own progress report, OUTPUT/_skinray/jobs/<id>/progress.json
    (``job_id`` given: the jobs the endpoint submits since issue 23), else the shared
    OUTPUT/_skinray/progress.json. Local: ``output`` is the path resolved when the job was
    submitted; no folder below it and not the file may be a symlink (the file's content would
    be another file's), and the file must be a regular one."""
    parts = [archive.REPORT_DIR] + (["jobs", job_id] if job_id else []) + [archive.PROGRESS_FILE]
    if storage.is_s3(output):
        return storage.read_bytes(storage.join(output, *parts), storage.S3Options.from_env(s3_endpoint))
    path = os.path.join(output, *parts)
    fd = os.open(output, os.O_RDONLY | os.O_DIRECTORY)  # missing: not started yet (OSError)
    try:  # the output as resolved at submission; below it no link is followed
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            nfd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.ENOENT:
            raise
        raise BadReport(f"{path}: a symbolic link or not a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise BadReport(f"{path}: not a regular file")
        return handle.read(PROGRESS_MAX_BYTES + 1)


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
    (OUTPUT/_skinray/jobs/<id>/progress.json, read from the output resolved at submission, checked
    against its schema; done = ok + skipped-existing), the manifest when finished. A report
    that is not skinray's is named in ``report_error``, never trusted."""
    meta = info.metadata or {}
    state = info.status.value if hasattr(info.status, "value") else str(info.status)
    job = {"id": info.submission_id, "state": state, "input": meta.get("input"), "output": meta.get("output"),
           "counts": {}, "total": None, "done": 0, "failed": 0, "error": None, "manifest_uri": None,
           "report_error": None,
           "created": (info.start_time or 0) / 1000 or None, "finished": (info.end_time or 0) / 1000 or None}
    try:
        own = info.submission_id if meta.get("resolved_output") else ""  # jobs with their own report
        report = parse_progress(read_progress(meta.get("resolved_output") or meta.get("output", ""), s3_endpoint,
                                              own))
        if job["created"] is None or report["started"] >= job["created"] - 5:  # not an earlier run's
            counts = report["counts"]
            job.update(counts=counts, total=report["total"],
                       done=counts.get("ok", 0) + counts.get("skipped-existing", 0),
                       failed=counts.get("failed", 0) + counts.get("not-image", 0))
            if state == "SUCCEEDED":
                job["manifest_uri"] = report["manifest_uri"]
    except BadReport as exc:
        job["report_error"] = f"{archive.REPORT_DIR}/{archive.PROGRESS_FILE} is not a skinray progress report: {exc}"
    except (SkinrayError, OSError, ValueError):
        pass  # not started yet, or the output is not readable from this replica
    if state == "FAILED":
        job["error"] = _job_error(client, info.submission_id, info)
    elif state == "STOPPED":
        job["error"] = "stopped (DELETE /v1/batch/{id} or ray job stop)"
    return job
