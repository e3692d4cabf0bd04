"""A job's progress report as the endpoint reads it (issue 23 items 5 and 7): only the job's own
file under the output resolved at submission, never through a link, checked against its schema."""

from __future__ import annotations

import json

import pytest

from skinray import archive, archive_jobs
from skinray.archive_jobs import BadReport, parse_progress, read_progress

JOB = "skinray-batch-0123456789abcdef"
GOOD = {"started": 1.5, "updated": 2.0, "total": 3, "counts": {"ok": 2, "failed": 1}, "finished": True,
        "manifest_uri": "/o/_skinray/manifest.parquet"}


def _own(out):
    folder = out / archive.REPORT_DIR / "jobs" / JOB
    folder.mkdir(parents=True)
    return folder / archive.PROGRESS_FILE


def test_the_jobs_own_report_is_read_and_checked(tmp_path):
    _own(tmp_path).write_text(json.dumps(GOOD))
    (tmp_path / archive.REPORT_DIR / archive.PROGRESS_FILE).write_text('{"started": "x"}')  # another job's
    report = parse_progress(read_progress(str(tmp_path), None, JOB))
    assert report["total"] == 3 and report["counts"] == {"ok": 2, "failed": 1}


@pytest.mark.parametrize("content, words", [
    ('{"started": "x"}', "'started'"), ("[1, 2]", "not a JSON object"), ("{", "not JSON"),
    (json.dumps({**GOOD, "counts": {"ok": -1}}), "counts"), (json.dumps({**GOOD, "counts": {"pwned": 1}}), "counts"),
    (json.dumps({**GOOD, "total": "3"}), "'total'"), (" " * 70_000, "bytes, over"),
])
def test_a_report_of_another_shape_is_refused(tmp_path, content, words):
    _own(tmp_path).write_text(content)
    with pytest.raises(BadReport, match=words):
        parse_progress(read_progress(str(tmp_path), None, JOB))


@pytest.mark.parametrize("where", ["file", "folder", "report_dir"])
def test_links_are_not_followed(tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / archive.PROGRESS_FILE).write_text(json.dumps(GOOD))
    out = tmp_path / "out"
    if where == "report_dir":
        out.mkdir()
        (out / archive.REPORT_DIR).symlink_to(outside)
    elif where == "folder":
        (out / archive.REPORT_DIR / "jobs").mkdir(parents=True)
        (out / archive.REPORT_DIR / "jobs" / JOB).symlink_to(outside)
    else:
        _own(out).symlink_to(outside / archive.PROGRESS_FILE)
    with pytest.raises(BadReport, match="symbolic link"):
        read_progress(str(out), None, JOB)


def test_job_ids_and_per_job_report_folder(monkeypatch):
    assert archive_jobs.valid_job_id(archive_jobs.new_job_id())
    for bad in (JOB + "?a=b", JOB + "#", "../" + JOB, "raysubmit_123", JOB.upper()):
        assert not archive_jobs.valid_job_id(bad)
    monkeypatch.setenv(archive.JOB_ID_ENV, JOB)
    assert archive.job_report_dir() == f"_skinray/jobs/{JOB}"
    monkeypatch.setenv(archive.JOB_ID_ENV, "../../etc")
    assert archive.job_report_dir() == ""
