"""ISIC archives: a folder as the ISIC archive's `isic image download` writes it (ISIC_<id>.jpg
files, metadata.csv with isic_id, attribution, copyright_license, ..., lesion_id, patient_id,
attribution.txt, licenses/) is split by lesion, else patient, else file name."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from skinray import cli, ingest
from skinray.config import load_config

COLUMNS = ["isic_id", "attribution", "copyright_license", "age_approx", "anatom_site_general",
           "diagnosis_1", "image_type", "lesion_id", "patient_id", "sex"]


def _jpeg(index: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (120 + index % 100, 90, 70 + index % 50)).save(buf, "JPEG")
    return buf.getvalue()


def _isic_folder(root: Path, lesions: int = 40, per_lesion: int = 4, start: int = 0) -> list[dict]:
    """``lesions`` lesions with ``per_lesion`` photos each, two lesions a patient; then 6 photos
    with a patient id only and 4 with neither. Returns the metadata rows written."""
    root.mkdir(parents=True, exist_ok=True)
    rows, n = [], start * 1000
    for lesion in range(start, start + lesions):
        for _ in range(per_lesion):
            rows.append({"lesion_id": f"IL_{lesion:07d}", "patient_id": f"IP_{lesion // 2:07d}"})
    rows += [{"lesion_id": "", "patient_id": f"IP_9{i % 2:06d}"} for i in range(6)]
    rows += [{"lesion_id": "", "patient_id": ""} for _ in range(4)]
    for row in rows:
        row.update(isic_id=f"ISIC_{n:07d}", attribution="Anonymous", copyright_license="CC-0",
                   age_approx="45", anatom_site_general="posterior torso", diagnosis_1="Benign",
                   image_type="dermoscopic", sex="female")
        (root / f"{row['isic_id']}.jpg").write_bytes(_jpeg(n))
        n += 1
    _write_csv(root / "metadata.csv", rows)
    (root / "attribution.txt").write_text("Anonymous")
    (root / "licenses").mkdir(exist_ok=True)
    (root / "licenses" / "CC-0.txt").write_text("CC0 1.0 Universal")
    return rows


def _write_csv(path: Path, rows: list[dict], columns=COLUMNS) -> None:
    with path.open("w", newline="", encoding="utf8") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _splits_by(manifest: ingest.Manifest, rows: list[dict], column: str) -> dict[str, set[str]]:
    split = dict(zip(manifest.table["key"].to_pylist(), manifest.table["split"].to_pylist()))
    out = defaultdict(set)
    for row in rows:
        key = f"{row['isic_id']}.jpg"
        if row[column] and key in split:
            out[row[column]].add(split[key])
    return out


def test_no_lesion_in_both_splits_and_ingest_matches_training(tmp_path, capsys):
    root = tmp_path / "isic"
    rows = _isic_folder(root)
    # split by file name, as before, photos of one lesion would land in both splits
    by_key = defaultdict(set)
    for row in rows:
        if row["lesion_id"]:
            by_key[row["lesion_id"]].add(ingest.split_of(f"{row['isic_id']}.jpg", 0.3))
    assert any(len(s) == 2 for s in by_key.values()), "the test data would not show a leak"

    manifest = ingest.build_manifest(str(root), 0.3, seed=0)
    assert manifest.table.num_rows == len(rows) and manifest.notes == []
    lesions = _splits_by(manifest, rows, "lesion_id")
    assert len(lesions) == 40 and all(len(s) == 1 for s in lesions.values()), "a lesion is in both splits"
    assert {next(iter(s)) for s in lesions.values()} == {"train", "val"}
    patient_only = _splits_by(manifest, [r for r in rows if not r["lesion_id"]], "patient_id")
    assert all(len(s) == 1 for s in patient_only.values())
    assert manifest.groups() == {"lesion": 40, "patient": 2, "key": 4}

    out = tmp_path / "m.parquet"
    assert cli.main(["ingest", str(root), "--out", str(out), "--val-fraction", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "40 lesions, 2 patients" in printed
    ingested = pq.read_table(out)
    # training straight from the folder (no ingest) builds the same split
    cfg = load_config(overrides={"data.source": str(root), "data.val_fraction": 0.3})
    direct = ingest.load_or_build_manifest(cfg)
    assert sorted(zip(ingested["key"].to_pylist(), ingested["split"].to_pylist())) == \
        sorted(zip(direct.table["key"].to_pylist(), direct.table["split"].to_pylist()))
    assert ingest.read_manifest(str(out)).fingerprint() == direct.fingerprint()


def test_adding_images_moves_no_existing_one(tmp_path):
    root = tmp_path / "isic"
    rows = _isic_folder(root, lesions=20)
    before = ingest.build_manifest(str(root), 0.3)
    # a later download: more photos of the same lesions and new lesions, one metadata.csv for all
    more = _isic_folder(tmp_path / "more", lesions=20, start=10)
    for row in more:
        (root / f"{row['isic_id']}.jpg").write_bytes((tmp_path / "more" / f"{row['isic_id']}.jpg").read_bytes())
    _write_csv(root / "metadata.csv", rows + more)
    after = ingest.build_manifest(str(root), 0.3)
    old = dict(zip(before.table["key"].to_pylist(), before.table["split"].to_pylist()))
    new = dict(zip(after.table["key"].to_pylist(), after.table["split"].to_pylist()))
    assert len(new) == len(old) + len(more) and all(new[k] == v for k, v in old.items())
    assert all(len(s) == 1 for s in _splits_by(after, rows + more, "lesion_id").values())


def test_bad_metadata_rows_are_reported_not_fatal(tmp_path, caplog):
    root = tmp_path / "isic"
    rows = _isic_folder(root, lesions=10)
    extra = [{"isic_id": "ISIC_9999999", "lesion_id": "IL_9999999", "patient_id": ""},  # no image
             {"isic_id": "", "lesion_id": "IL_0000001", "patient_id": ""}]  # no isic_id
    _write_csv(root / "metadata.csv", rows[1:] + extra)  # rows[0]: an image without a row
    manifest = ingest.build_manifest(str(root), 0.3)
    assert manifest.table.num_rows == len(rows), "every readable image is kept"
    notes = "\n".join(manifest.notes)
    assert "1 images have no row, split by file name (ISIC_0000000.jpg)" in notes
    assert "1 rows have no image beside it, ignored (ISIC_9999999)" in notes
    assert "1 rows without an isic_id ignored (line " in notes
    assert all(n.startswith("metadata.csv: ") for n in manifest.notes)
    assert "ISIC_9999999" in caplog.text, "the problems are logged as warnings too"
    group = dict(zip(manifest.table["key"].to_pylist(), manifest.table["group"].to_pylist()))
    assert group["ISIC_0000000.jpg"] == "ISIC_0000000.jpg" and group["ISIC_0000001.jpg"] == "lesion:IL_0000000"


def test_metadata_without_the_id_or_group_columns_splits_by_key(tmp_path):
    root = tmp_path / "isic"
    rows = _isic_folder(root, lesions=5)
    _write_csv(root / "metadata.csv", rows, columns=["attribution", "lesion_id"])
    manifest = ingest.build_manifest(str(root), 0.3)
    assert manifest.table.num_rows == len(rows)
    assert manifest.notes == [f"metadata.csv: no isic_id column (columns: attribution, lesion_id); its "
                              f"{len(rows)} images are split by file name"]
    _write_csv(root / "metadata.csv", rows, columns=["isic_id", "sex"])
    assert "no lesion_id or patient_id column" in ingest.build_manifest(str(root), 0.3).notes[0]
    (root / "metadata.csv").write_bytes(b"isic_id,lesion_id\n\xff\xfe,IL_1\n")
    assert "not UTF-8 text" in ingest.build_manifest(str(root), 0.3).notes[0]
    assert set(ingest.build_manifest(str(root), 0.3).table["group"].to_pylist()) == \
        {f"{r['isic_id']}.jpg" for r in rows}


def test_manifest_written_before_groups_still_reads(tmp_path):
    root = tmp_path / "plain"
    root.mkdir()
    for i in range(4):
        (root / f"p{i}.jpg").write_bytes(_jpeg(i))
    manifest = ingest.build_manifest(str(root), 0.5)
    old = manifest.table.drop_columns(["group"])
    pq.write_table(old, tmp_path / "old.parquet")
    again = ingest.read_manifest(str(tmp_path / "old.parquet"))
    assert again.table["group"].to_pylist() == again.table["key"].to_pylist()
    assert again.fingerprint() == manifest.fingerprint()
