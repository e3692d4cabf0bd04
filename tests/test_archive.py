"""The archive job's batching (skinray/archive.py): by count and by bytes of input."""

import numpy as np

from skinray.archive import batches
from skinray.config import BATCH_BYTES


def _rows(*sizes: int) -> list[dict]:
    return [{"key": f"{i}.jpg", "bytes_in": size} for i, size in enumerate(sizes)]


def test_small_photos_share_a_batch_up_to_the_count_and_large_ones_do_not():
    small = batches(_rows(*[40_000] * 150), max_files=64)
    assert [len(b) for b in small] == [64, 64, 22]
    phone = 3 << 20  # 12 MP phone JPEGs: a batch stops at BATCH_BYTES of input
    large = batches(_rows(*[phone] * 5), max_files=64)
    assert [len(b) for b in large] == [BATCH_BYTES // phone] * 2 + [5 - 2 * (BATCH_BYTES // phone)]
    assert all(sum(r["bytes_in"] for r in b) <= BATCH_BYTES for b in large)


def test_every_row_once_in_order_and_an_oversized_file_alone():
    rows = _rows(10, BATCH_BYTES * 2, 10, 10)
    out = batches(rows, max_files=64)
    assert [len(b) for b in out] == [1, 1, 2]
    assert [r for b in out for r in b] == rows
    assert batches([], max_files=8) == []


def test_manifest_and_summary_carry_each_photos_triage(tmp_path):
    import json

    import pyarrow.parquet as pq
    from PIL import Image

    from skinray import archive, degrade, synth
    from skinray.config import EnhanceConfig

    src = tmp_path / "in"
    src.mkdir()
    clean = synth.skin_image(0, 0, 128)
    blurred = np.clip(degrade.down_up(clean / 255.0, 3.0) * 255 + 0.5, 0, 255).astype(np.uint8)
    Image.fromarray(clean).save(src / "clean.png")
    Image.fromarray(blurred).save(src / "blurred.png")
    (src / "notes.txt").write_text("not a photo")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    summary = archive.run(EnhanceConfig(input=str(src), output=str(tmp_path / "out")), execution="local")
    rows = {r["key"]: r for r in pq.read_table(summary.manifest_uri).to_pylist()}
    assert rows["clean.png"]["verdict"] == "good" and rows["clean.png"]["reasons"] == ""
    assert rows["blurred.png"]["verdict"] == "retake" and "blurred" in rows["blurred.png"]["reasons"]
    assert rows["blurred.png"]["blur_factor"] >= 2.5 and rows["clean.png"]["change_mean"] < 1
    for key, status in (("notes.txt", "not-image"), ("broken.jpg", "failed")):
        assert rows[key]["status"] == status and rows[key]["verdict"] == "" and np.isnan(rows[key]["kelvin"])
    written = json.loads((tmp_path / "out/_skinray/summary.json").read_text())
    assert written["verdicts"] == {"good": 1, "corrected": 0, "retake": 1}
    assert "(2 ok, 0 skipped-existing, 1 failed, 1 not-image; 1 good, 0 corrected, 1 retake)" in summary.line()
