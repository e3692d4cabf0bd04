"""The manifest: which images a dataset holds and which split each is in (``skinray ingest``,
or built on the fly when training from a folder or prefix).

Manifest columns: ``key`` (path under the source), ``uri``, ``size_bytes``, ``sha256`` of the
content, ``split`` (``train``/``val``/``test``), ``width``, ``height``, ``format``, ``group``,
``mask_uri`` (the lesion mask, or null) and one nullable boolean per dermoscopic attribute
(:data:`skinray.ground_truth.ATTRIBUTES`; where they are found: :mod:`skinray.ground_truth`).
Manifests written before a column existed read with it null.

The split: a photo under a top-level ``train/``, ``val/`` or ``test/`` folder takes that split
(``split_by`` auto or folder: the ISIC copy's layout); otherwise a hash of (seed, group), so
adding images never moves existing ones between splits: ``test_fraction`` of groups go to test,
``val_fraction`` to val. The test split is never trained on nor used to pick a model. The group
is the image's lesion (``lesion:ID``), else its patient (``patient:ID``), as a ``metadata.csv``
beside it says (the layout of the ISIC archive's ``isic image download``: one row per
``isic_id``, the image being ``ISIC_ID.<ext>`` in the same folder), else its key: photos of one
lesion never land in two splits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from skinray import ground_truth, images, storage
from skinray.config import MAX_PIXELS, Config
from skinray.errors import SkinrayError

log = logging.getLogger("skinray.ingest")

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("uri", pa.string()), ("size_bytes", pa.int64()), ("sha256", pa.string()),
    ("split", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()),
    ("group", pa.string()), ("mask_uri", pa.string()),
    *[(name, pa.bool_()) for name in ground_truth.ATTRIBUTES],
])
SPLITS = ("train", "val", "test")  # test: never trained on, never used to pick a model
_OPTIONAL = ("mask_uri", *ground_truth.ATTRIBUTES)  # null in manifests written before they existed
METADATA_FILE = "metadata.csv"  # written by the ISIC archive's CLI beside the images it downloads
_ID_COLUMN, _GROUP_COLUMNS = "isic_id", (("lesion_id", "lesion"), ("patient_id", "patient"))


def split_of(key: str, val_fraction: float, seed: int = 0, test_fraction: float = 0.0) -> str:
    """'val' for a stable ``val_fraction`` share of keys (or group ids), 'test' for another
    ``test_fraction`` share, else 'train'; depends only on (seed, key). Test is drawn from the
    other end of the hash: a test_fraction never moves a photo between val and another split."""
    digest = hashlib.sha256(f"split:{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "val" if u < val_fraction else "test" if u >= 1.0 - test_fraction else "train"


def folder_split(key: str) -> str | None:
    """The split named by the photo's top-level folder (``train/``, ``val/``, ``test/``), or None."""
    top = key.split("/", 1)[0] if "/" in key else ""
    return top if top in SPLITS else None


@dataclass(frozen=True)
class SplitRule:
    """How photos are split (``data.val_fraction``, ``test_fraction``, ``seed``, ``split_by``)."""

    val_fraction: float = 0.3
    seed: int = 0
    test_fraction: float = 0.0
    split_by: str = "auto"  # auto: the folder where it names a split, else the hash | folder | hash

    def split(self, key: str, group: str) -> str:
        folder = folder_split(key) if self.split_by != "hash" else None
        return folder or split_of(group, self.val_fraction, self.seed, self.test_fraction)

    def check(self, keys: list[str], source: str) -> None:
        """split_by folder: every photo must be under a train/, val/ or test/ folder."""
        outside = [k for k in keys if folder_split(k) is None]
        if self.split_by == "folder" and outside:
            raise SkinrayError(f"{source}: split by folder, but {len(outside)} photos are under no top-level "
                               f"train/, val/ or test/ folder ({_examples(outside)}); move them or split by hash")


def _examples(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _open_metadata(entry: storage.FileEntry, n_images: int, s3: storage.S3Options | None,
                   notes: list[str]) -> tuple[csv.DictReader, list[tuple[str, str]]] | None:
    """A CSV reader over ``entry`` and its (group column, kind) pairs, or None (with a note) when
    the file cannot be read or lacks the id or group columns."""
    name = entry.key
    try:
        text = storage.read_bytes(entry.uri, s3).decode("utf-8-sig")
    except SkinrayError as exc:
        notes.append(f"{name}: unreadable ({exc}); its {n_images} images are split by file name")
        return None
    except UnicodeDecodeError as exc:
        notes.append(f"{name}: not UTF-8 text (byte {exc.start}); its {n_images} images are split by "
                     f"file name")
        return None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    group_columns = [(c, kind) for c, kind in _GROUP_COLUMNS if c in columns]
    if _ID_COLUMN not in columns or not group_columns:
        wanted = _ID_COLUMN if _ID_COLUMN not in columns else "lesion_id or patient_id"
        notes.append(f"{name}: no {wanted} column (columns: {', '.join(columns) or 'none'}); its "
                     f"{n_images} images are split by file name")
        return None
    return reader, group_columns


def _metadata_rows(name: str, reader: csv.DictReader, group_columns: list[tuple[str, str]],
                   notes: list[str]) -> dict[str, str | None]:
    """{isic_id: group or None} of the file's rows (the first row of an id wins); rows without
    an id, conflicting duplicates and a malformed line are noted."""
    rows: dict[str, str | None] = {}
    bad_rows: list[str] = []
    try:
        for row in reader:
            isic_id = (row.get(_ID_COLUMN) or "").strip()
            if not isic_id:
                bad_rows.append(f"line {reader.line_num}")
                continue
            group = next((f"{kind}:{row[c].strip()}" for c, kind in group_columns
                          if (row.get(c) or "").strip()), None)
            if isic_id in rows and rows[isic_id] != group:
                notes.append(f"{name}: {isic_id} has two rows with other lesion/patient ids "
                             f"({rows[isic_id]}, {group}); the first is used")
                continue
            rows.setdefault(isic_id, group)
    except csv.Error as exc:
        notes.append(f"{name}: line {reader.line_num}: {exc}; rows from there on are not read")
    if bad_rows:
        notes.append(f"{name}: {len(bad_rows)} rows without an {_ID_COLUMN} ignored ({_examples(bad_rows)})")
    return rows


def _read_metadata(entry: storage.FileEntry, image_keys: list[str], s3: storage.S3Options | None,
                   groups: dict[str, str], notes: list[str]) -> None:
    """Group the images of ``entry``'s folder (``image_keys``) by the lesion, else patient, of
    their row in this ``metadata.csv``. Whatever is wrong with the file is added to ``notes``
    (the images concerned are split by their key), never raised."""
    name = entry.key
    opened = _open_metadata(entry, len(image_keys), s3, notes)
    if opened is None:
        return
    rows = _metadata_rows(name, *opened, notes)
    stems = {posixpath.splitext(posixpath.basename(k))[0]: k for k in image_keys}
    without_row = [k for stem, k in sorted(stems.items()) if stem not in rows]
    without_image = sorted(set(rows) - set(stems))
    if without_row:
        notes.append(f"{name}: {len(without_row)} images have no row, split by file name "
                     f"({_examples(without_row)})")
    if without_image:
        notes.append(f"{name}: {len(without_image)} rows have no image beside it, ignored "
                     f"({_examples(without_image)})")
    for key in image_keys:
        group = rows.get(posixpath.splitext(posixpath.basename(key))[0])
        if group:
            groups[key] = group


def group_images(entries: list[storage.FileEntry], image_keys: list[str],
                 s3: storage.S3Options | None = None) -> tuple[dict[str, str], list[str]]:
    """{image key: ``lesion:ID`` or ``patient:ID``} for the images that a ``metadata.csv`` in
    their own folder lists, and the problems found in those files (one line each)."""
    by_folder: dict[str, list[str]] = {}
    for key in image_keys:
        by_folder.setdefault(posixpath.dirname(key), []).append(key)
    groups: dict[str, str] = {}
    notes: list[str] = []
    for entry in entries:
        if posixpath.basename(entry.key) == METADATA_FILE:
            _read_metadata(entry, by_folder.get(posixpath.dirname(entry.key), []), s3, groups, notes)
    return groups, notes


@dataclass
class Manifest:
    table: pa.Table
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason) of unusable files
    ignored: int = 0  # files without an image extension
    notes: list[str] = field(default_factory=list)  # problems in metadata.csv / annotations (reported, not fatal)
    annotation_files: int = 0  # masks and other annotation images under the source (not photos)

    def count(self, split: str) -> int:
        return sum(1 for s in self.table.column("split").to_pylist() if s == split)

    def annotated(self) -> tuple[int, int]:
        """(photos with a lesion mask, photos with every attribute known)."""
        masks = self.table.num_rows - self.table.column("mask_uri").null_count
        known = [self.table.column(name).to_pylist() for name in ground_truth.ATTRIBUTES]
        return masks, sum(all(v is not None for v in row) for row in zip(*known))

    def groups(self) -> dict[str, int]:
        """How many lesions and patients the images were grouped by (images split by key: 'key')."""
        counts: dict[str, set] = {"lesion": set(), "patient": set(), "key": set()}
        for key, group in zip(self.table.column("key").to_pylist(), self.table.column("group").to_pylist()):
            kind = group.split(":", 1)[0] if group != key else "key"
            counts[kind if kind in counts else "key"].add(group)
        return {kind: len(ids) for kind, ids in counts.items()}

    def fingerprint(self) -> str:
        """sha256 over the sorted (key, content hash) pairs, and the group where it is not the key
        (a metadata.csv's lesion or patient): identifies the training data and its split."""
        rows = sorted(zip(self.table.column("key").to_pylist(), self.table.column("sha256").to_pylist(),
                          self.table.column("group").to_pylist()))
        return hashlib.sha256("\n".join(f"{k}:{h}" + (f":{g}" if g != k else "")
                                         for k, h, g in rows).encode()).hexdigest()


def build_manifest(source: str, val_fraction: float, seed: int = 0, s3: storage.S3Options | None = None,
                   max_pixels: int = MAX_PIXELS, threads: int = 16,
                   progress: Callable[[int, int], None] | None = None, *, test_fraction: float = 0.0,
                   split_by: str = "auto", masks: str | None = None, attributes: str | None = None) -> Manifest:
    """List the images under ``source`` (masks and other annotation images are not photos), read
    each once (content hash, header probe), find its mask and attributes
    (:func:`skinray.ground_truth.find`: ``masks`` a folder, ``attributes`` a file or folder) and
    assign its split (:class:`SplitRule`), by group (:func:`group_images`: the lesion or patient
    of a ``metadata.csv`` beside it, else the key). Unreadable or non-image files with an image
    extension are skipped with a warning; problems in metadata.csv files and annotations are
    warned about and kept in ``notes``."""
    rule = SplitRule(val_fraction, seed, test_fraction, split_by)
    entries = storage.list_files(source, s3)
    images_ = [e for e in entries if images.is_image_key(e.key)]
    candidates = [e for e in images_ if not ground_truth.is_annotation(e.key)]
    rule.check([e.key for e in candidates], source)
    groups, notes = group_images(entries, [e.key for e in candidates], s3)
    found = ground_truth.find(source, entries, s3, masks, attributes)
    notes += found.notes
    rows, skipped = _inspect_all(candidates, groups, found, rule, s3, max_pixels, threads, progress)
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    notes += _leaks(table) + _unmatched(found, table)
    for note in notes:
        log.warning("%s", note)
    return Manifest(table=table, skipped=skipped, ignored=len(entries) - len(images_), notes=notes,
                    annotation_files=len(images_) - len(candidates))


def _inspect_all(candidates: list[storage.FileEntry], groups: dict[str, str], found: ground_truth.Annotations,
                 rule: SplitRule, s3: storage.S3Options | None, max_pixels: int, threads: int,
                 progress: Callable[[int, int], None] | None) -> tuple[list[dict], list[tuple[str, str]]]:
    """The manifest rows of the readable ``candidates`` (read in ``threads`` threads) and the
    (key, reason) of the others."""
    def inspect(entry: storage.FileEntry) -> dict[str, Any] | tuple[str, str]:
        try:
            data = storage.read_bytes(entry.uri, s3)
            width, height, fmt = images.probe(data, max_pixels)
        except SkinrayError as exc:
            return entry.key, str(exc)
        group = groups.get(entry.key, entry.key)
        return {"key": entry.key, "uri": entry.uri, "size_bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "split": rule.split(entry.key, group),
                "width": width, "height": height, "format": fmt, "group": group,
                "mask_uri": found.mask_uri(entry.key), **found.attributes(entry.key, s3)}

    rows, skipped = [], []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, result in enumerate(pool.map(inspect, candidates), start=1):
            if isinstance(result, dict):
                rows.append(result)
            else:
                log.warning("skipping %s: %s", *result)
                skipped.append(result)
            if progress:
                progress(done, len(candidates))
    return rows, skipped


def _leaks(table: pa.Table) -> list[str]:
    """A note if photos of one lesion or patient are in more than one split (a folder split can do it)."""
    splits: dict[str, set[str]] = {}
    for key, group, split in zip(*(table.column(c).to_pylist() for c in ("key", "group", "split"))):
        if group != key:
            splits.setdefault(group, set()).add(split)
    leaked = sorted(g for g, s in splits.items() if len(s) > 1)
    return [f"{len(leaked)} lesions/patients have photos in more than one split folder ({_examples(leaked)}): "
            f"their validation or test figures are not held out"] if leaked else []


def _unmatched(found: ground_truth.Annotations, table: pa.Table) -> list[str]:
    """A note for attribute-file rows that name no photo."""
    stems = {posixpath.splitext(posixpath.basename(k))[0] for k in table.column("key").to_pylist()}
    extra = sorted(set(found.attribute_rows) - stems)
    return [f"attributes: {len(extra)} rows name no photo, ignored ({_examples(extra)})"] if extra else []


def write_manifest(manifest: Manifest, uri: str, s3: storage.S3Options | None = None) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(manifest.table, sink)
    storage.write_bytes(uri, sink.getvalue().to_pybytes(), s3)


def read_manifest(uri: str, s3: storage.S3Options | None = None) -> Manifest:
    try:
        table = pq.read_table(pa.BufferReader(storage.read_bytes(uri, s3)))
    except pa.ArrowInvalid as exc:
        raise SkinrayError(f"{uri}: not a Parquet manifest ({exc})") from None
    if "group" not in table.column_names:  # written before images were grouped: split by key
        table = table.append_column("group", table.column("key"))
    for name in _OPTIONAL:  # written before masks and attributes: unknown
        if name not in table.column_names:
            column = MANIFEST_SCHEMA.field(name)
            table = table.append_column(column, pa.nulls(table.num_rows, column.type))
    missing = [name for name in MANIFEST_SCHEMA.names if name not in table.column_names]
    if missing:
        raise SkinrayError(f"{uri}: manifest lacks columns {missing}; write it with `skinray ingest`")
    return Manifest(table=table.select(MANIFEST_SCHEMA.names))


def load_or_build_manifest(cfg: Config, s3: storage.S3Options | None = None) -> Manifest:
    """``data.source`` is a manifest (.parquet) or a folder/prefix to list on the fly."""
    if cfg.data.source.endswith(".parquet"):
        return read_manifest(cfg.data.source, s3)
    return build_manifest(cfg.data.source, cfg.data.val_fraction, cfg.data.seed, s3,
                          test_fraction=cfg.data.test_fraction, split_by=cfg.data.split_by)


# ----------------------------------------------------------------------------- Ray Data stage
