"""ISIC archives: a folder as the ISIC archive's `isic image download` writes it (ISIC_<id>.jpg
files, metadata.csv with isic_id, attribution, copyright_license, ..., lesion_id, patient_id,
attribution.txt, licenses/) is split by lesion, else patient, else file name."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from skinray import cli, data, ground_truth, ingest, synth
from skinray.config import load_config
from skinray.errors import ConfigError, SkinrayError

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
    old = manifest.table.drop_columns(["group", "mask_uri", *ground_truth.ATTRIBUTES])
    pq.write_table(old, tmp_path / "old.parquet")
    again = ingest.read_manifest(str(tmp_path / "old.parquet"))
    assert again.table["group"].to_pylist() == again.table["key"].to_pylist()
    assert again.table["mask_uri"].null_count == again.table["streaks"].null_count == 4, "unknown, not false"
    assert again.fingerprint() == manifest.fingerprint()


# ------------------------------------------------ ISIC 2018 layout: masks, attributes, test split
BITS = {0: "00010", 1: "10011", 2: "01010", 3: "00000", 4: "11111", 5: "00100", 6: "00001", 7: "10000",
        8: "01000"}


def _photo(path: Path, index: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synth.skin_image(0, index, 32)).save(path, "JPEG")


def _mask(path: Path, on: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 10:22] = 255 if on else 0
    Image.fromarray(mask).save(path)


def _copy_layout(root: Path) -> dict[str, str]:
    """The ISIC 2018 copy's layout: data512/{train,val,test}/ISIC_<id>.jpg, masks in a
    *GroundTruth* folder elsewhere, an attribute file; photo 9's mask lies beside it instead and
    it has no attribute row. Returns {photo id: split}."""
    splits = {i: "train" if i < 6 else "val" if i < 8 else "test" for i in range(10)}
    for i, split in splits.items():
        _photo(root / "data512" / split / f"ISIC_{i:07d}.jpg", i)
        if i < 9:
            _mask(root / "images" / "512ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{i:07d}_segmentation.png")
    _mask(root / "data512" / "test" / "ISIC_0000009_segmentation.png")
    (root / "data512" / "train" / "images_onehot_train.txt").write_text("not a photo\n")
    lines = [f"ISIC_{i:07d} {bits}" for i, bits in BITS.items()] + ["ISIC_0000099 00001", "garbled line"]
    (root / "images-onehot.txt").write_text("\n".join(lines) + "\n")
    return {f"ISIC_{i:07d}": split for i, split in splits.items()}


def test_isic_copy_layout_gives_masks_attributes_and_a_test_split(tmp_path, capsys):
    splits = _copy_layout(tmp_path)
    out = tmp_path / "isic.parquet"
    assert cli.main(["ingest", str(tmp_path / "data512"), "--out", str(out), "--masks",
                     str(tmp_path / "images" / "512ISIC2018_Task1_Training_GroundTruth"),
                     "--attributes", str(tmp_path / "images-onehot.txt")]) == 0
    printed = capsys.readouterr().out
    assert "6 train, 2 val, 2 test" in printed and "1 masks/annotation images (not photos)" in printed
    assert "10 photos with a lesion mask, 9 with their 5 attributes" in printed
    rows = {Path(r["key"]).stem: r for r in ingest.read_manifest(str(out)).table.to_pylist()}
    assert set(rows) == set(splits), "masks and text files are not photos"
    assert {pid: r["split"] for pid, r in rows.items()} == splits, "the folder decides the split"
    assert rows["ISIC_0000003"]["mask_uri"].endswith("GroundTruth/ISIC_0000003_segmentation.png")
    assert rows["ISIC_0000009"]["mask_uri"] == str(tmp_path / "data512" / "test" / "ISIC_0000009_segmentation.png")
    for i, bits in BITS.items():
        assert [rows[f"ISIC_{i:07d}"][name] for name in ground_truth.ATTRIBUTES] == [b == "1" for b in bits]
    assert all(rows["ISIC_0000009"][name] is None for name in ground_truth.ATTRIBUTES), "no row: unknown"
    notes = "\n".join(ingest.build_manifest(str(tmp_path / "data512"), 0.3,
                                            attributes=str(tmp_path / "images-onehot.txt")).notes)
    assert "1 lines are not '<id> <5 bits>', ignored (line 11)" in notes
    assert "1 rows name no photo, ignored (ISIC_0000099)" in notes

    # training straight from the folder splits the same way, and never sees the test split
    cfg = load_config(overrides={"data.source": str(tmp_path / "data512")})
    tables = data.training_tables(ingest.load_or_build_manifest(cfg), cfg)
    assert {Path(k).stem for k in tables["train"]["key"].to_pylist()} == {p for p, s in splits.items() if s == "train"}
    assert {Path(k).stem for k in tables["val"]["key"].to_pylist()} == {p for p, s in splits.items() if s == "val"}


def test_challenge_layout_finds_ground_truth_folders_and_task2_masks(tmp_path, monkeypatch):
    """The ISIC 2018 challenge's own folders, no flags: masks in a GroundTruth folder beside the
    input folder, Task 2's attribute masks (an attribute is present if any pixel is set),
    superpixel images beside the photos."""
    photos = tmp_path / "ISIC2018_Task1-2_Training_Input"
    for i in range(4):
        _photo(photos / f"ISIC_{i:07d}.jpg", i)
        _mask(photos / f"ISIC_{i:07d}_superpixels.png")
        _mask(tmp_path / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{i:07d}_segmentation.png")
        for name in ground_truth.ATTRIBUTES:
            _mask(tmp_path / "ISIC2018_Task2_Training_GroundTruth_v3" / f"ISIC_{i:07d}_attribute_{name}.png",
                  on=(name == "streaks") == (i == 1))
    manifest = ingest.build_manifest(str(photos), 0.5)
    assert manifest.table.num_rows == 4 and manifest.annotation_files == 4 and manifest.annotated() == (4, 4)
    rows = {Path(r["key"]).stem: r for r in manifest.table.to_pylist()}
    assert rows["ISIC_0000001"]["streaks"] and not rows["ISIC_0000001"]["globules"]
    assert rows["ISIC_0000002"]["globules"] and not rows["ISIC_0000002"]["streaks"]
    monkeypatch.chdir(tmp_path)  # the source named relative to here: its GroundTruth siblings still found
    assert ingest.build_manifest(photos.name, 0.5).annotated() == (4, 4)
    # the parent folder: the GroundTruth folders are under the source now, still no photos there
    parent = ingest.build_manifest(str(tmp_path), 0.5)
    assert parent.table.num_rows == 4 and parent.annotated() == (4, 4)
    assert set(parent.table["split"].to_pylist()) <= {"train", "val"}, "no split folders: hashed"


def test_hashed_test_split_never_meets_train_nor_moves_validation(tmp_path):
    root = tmp_path / "isic"
    rows = _isic_folder(root, lesions=60)
    without = ingest.build_manifest(str(root), 0.2)
    manifest = ingest.build_manifest(str(root), 0.2, test_fraction=0.2)
    split = dict(zip(manifest.table["key"].to_pylist(), manifest.table["split"].to_pylist()))
    lesions = _splits_by(manifest, rows, "lesion_id")
    assert all(len(s) == 1 for s in lesions.values()), "a lesion is in two splits"
    assert 0.08 < manifest.count("test") / len(split) < 0.35
    before = dict(zip(without.table["key"].to_pylist(), without.table["split"].to_pylist()))
    assert all(split[k] == "val" for k, s in before.items() if s == "val"), "val did not move"
    assert all(before[k] == "train" for k, s in split.items() if s == "test"), "test comes from train only"
    cfg = load_config(overrides={"data.source": str(root), "data.val_fraction": 0.2, "data.test_fraction": 0.2})
    tables = data.training_tables(ingest.load_or_build_manifest(cfg), cfg)
    used = set(tables["train"]["key"].to_pylist()) | set(tables["val"]["key"].to_pylist())
    assert used and not used & {k for k, s in split.items() if s == "test"}, "training never reads test"


def test_split_by_folder_or_hash(tmp_path):
    splits = _copy_layout(tmp_path)
    _photo(tmp_path / "data512" / "extra" / "ISIC_0000050.jpg", 50)
    with pytest.raises(SkinrayError, match=r"split by folder, but 1 photos are under no.*extra/ISIC_0000050"):
        ingest.build_manifest(str(tmp_path / "data512"), 0.3, split_by="folder")
    auto = ingest.build_manifest(str(tmp_path / "data512"), 0.3)
    assert auto.count("test") == 2 and auto.table.num_rows == len(splits) + 1
    hashed = ingest.build_manifest(str(tmp_path / "data512"), 0.3, split_by="hash")
    assert hashed.count("test") == 0 and hashed.count("val") > 0
    with pytest.raises(ConfigError, match="data.split_by"):
        load_config(overrides={"data.split_by": "lesion"}).validate()


def test_ground_truth_prefix_beside_an_s3_source(tmp_path, s3, bucket):
    import pyarrow.fs as pafs

    from skinray import storage

    for i in range(3):
        _photo(tmp_path / "Input" / f"ISIC_{i:07d}.jpg", i)
        _mask(tmp_path / "Task1_GroundTruth" / f"ISIC_{i:07d}_segmentation.png")
    fs, prefix = storage.resolve(f"s3://{bucket}/isic", s3)
    pafs.copy_files(str(tmp_path), prefix, destination_filesystem=fs)
    manifest = ingest.build_manifest(f"s3://{bucket}/isic/Input", 0.5, s3=s3)
    assert manifest.table.num_rows == 3 and manifest.annotated() == (3, 0)
    assert sorted(manifest.table["mask_uri"].to_pylist()) == [
        f"s3://{bucket}/isic/Task1_GroundTruth/ISIC_{i:07d}_segmentation.png" for i in range(3)]
