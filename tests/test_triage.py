"""skinray assess: the triage of a folder, its manifest and its HTML report (in-process)."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from skinray import degrade, synth
from skinray.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    src = tmp_path_factory.mktemp("photos")
    clean = synth.skin_image(0, 0, 128)
    u8 = lambda x: np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
    Image.fromarray(clean).save(src / "clean.png")
    Image.fromarray(u8(degrade.down_up(clean / 255.0, 3.0))).save(src / "blurred.png")
    Image.fromarray(u8(degrade.relight(clean / 255.0, 3500.0))).save(src / "warm.png")
    (src / "sub").mkdir()
    Image.fromarray(clean[:40, :40]).save(src / "sub/tiny.png")
    (src / "notes.txt").write_text("not a photo")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return src


def test_assess_writes_manifest_summary_and_a_report_grouped_by_verdict(photos, tmp_path, capsys):
    out = tmp_path / "triage"
    assert main(["assess", str(photos), "--out", str(out), "--local"]) == 0
    line = capsys.readouterr().out
    assert "assessed 6 files" in line and "(4 ok, 1 failed, 1 not-image; 1 good, 1 corrected, 2 retake)" in line
    rows = {r["key"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert (rows["blurred.png"]["verdict"], rows["blurred.png"]["reasons"]) == ("retake", "blurred")
    assert (rows["sub/tiny.png"]["verdict"], rows["sub/tiny.png"]["reasons"]) == ("retake", "too-small")
    assert rows["warm.png"]["verdict"] == "corrected" and rows["clean.png"]["verdict"] == "good"
    assert rows["broken.jpg"]["status"] == "failed" and rows["notes.txt"]["status"] == "not-image"
    assert json.loads((out / "summary.json").read_text())["verdicts"] == {"good": 1, "corrected": 1, "retake": 2}

    page = (out / "report.html").read_text()
    sections = {m.group(1): m.start() for m in re.finditer(r'<h2 id="(\w+)"', page)}
    assert list(sections) == ["retake", "corrected", "good", "unread"]
    retake = page[sections["retake"]:sections["corrected"]]
    assert "blurred.png" in retake and '<div class="reasons">blurred</div>' in retake and "too-small" in retake
    corrected = page[sections["corrected"]:sections["good"]]
    assert "warm.png" in corrected and 'alt="before"' in corrected and 'alt="after"' in corrected
    assert 'alt="after"' not in page[sections["good"]:]  # before / after only for corrected photos
    unread = page[sections["unread"]:]
    assert "broken.jpg" in unread and "notes.txt" in unread and "not a recognised image format" in unread


def test_assess_without_out_prints_one_line_per_file(photos, capsys):
    assert main(["assess", str(photos), "--local", "--set", "assess.blur_factor=5"]) == 0
    lines = dict(line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line)
    assert lines["blurred.png"] == "good" or lines["blurred.png"].startswith("corrected")  # threshold raised
    assert lines["sub/tiny.png"] == "retake (too-small)" and lines["notes.txt"].startswith("not-image")


def test_unknown_threshold_is_one_line(photos, capsys):
    assert main(["assess", str(photos), "--set", "assess.nope=1"]) == 2
    assert "assess.nope" in capsys.readouterr().err
