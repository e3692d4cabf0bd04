"""skinray.ray.EnhanceImages in a real map_batches on a local Ray: the docs' example as written,
and rows of arrays with one unreadable photo."""

import re

import numpy as np
import pytest

from skinray import synth
from tests.test_api import DOCS, doc_blocks

pytestmark = pytest.mark.integration


def test_docs_ray_data_example_runs_as_written(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in doc_blocks(ray=False) + doc_blocks(ray=True):
        exec(compile(block, str(DOCS), "exec"), namespace)
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and all("photo" in row and "'error': ''" in row for row in rows), printed
    assert all(re.search(r"'verdict': '(good|corrected|retake)'", row) for row in rows)


def test_rows_of_arrays_get_enhanced_arrays_and_assessment_columns(ray_local):
    import ray

    from skinray.ray import EnhanceImages

    photos = [synth.skin_image(0, i, 64) for i in range(3)] + [np.zeros((5, 5, 2), np.uint8)]
    ds = ray.data.from_items([{"id": i, "image": p} for i, p in enumerate(photos)])
    out = ds.map_batches(EnhanceImages, batch_size=4, concurrency=1).take_all()
    out.sort(key=lambda r: r["id"])
    for row, photo in zip(out[:3], photos):
        assert row["enhanced"].shape == photo.shape and row["enhanced"].dtype == np.uint8
        assert row["verdict"] in ("good", "corrected") and row["error"] == ""
        assert row["change_mean"] >= 0 and row["light_source"] == "model"  # the bundled light model
    bad = out[3]
    assert bad["verdict"] == "" and "(H, W, 3)" in bad["error"] and np.isnan(bad["kelvin"])


def test_assess_as_a_ray_data_job_gives_the_in_process_rows(ray_local, tmp_path):
    from PIL import Image

    from skinray import triage

    for i in range(3):
        Image.fromarray(synth.skin_image(0, i, 64)).save(tmp_path / f"p{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    on_ray = triage.run(str(tmp_path), execution="ray")
    local = triage.run(str(tmp_path), execution="local")
    assert on_ray.execution == "ray" and on_ray.counts == local.counts and on_ray.verdicts == local.verdicts
    fields = ("key", "status", "reason", "verdict", "reasons", "width", "height")
    assert [tuple(r[f] for f in fields) for r in on_ray.rows] == [tuple(r[f] for f in fields) for r in local.rows]
    for a, b in zip(on_ray.rows, local.rows):  # the same numbers (NaN where not assessed)
        assert np.allclose([a["change_mean"], a["kelvin"]], [b["change_mean"], b["kelvin"]], equal_nan=True)
