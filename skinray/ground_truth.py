"""What an ISIC-layout folder says about its photos besides the pixels: the lesion mask and five
dermoscopic attributes of each photo (the ISIC 2018 challenge, Tasks 1 and 2).

A photo ``ISIC_<id>.jpg`` has the lesion mask ``ISIC_<id>_segmentation.png`` (Task 1's name),
looked for, first found wins: in the masks folder given (``skinray ingest --masks DIR``), beside
the photo, anywhere else under the source (e.g. its own ``*GroundTruth*`` folder), in a folder
beside the source whose name contains ``GroundTruth`` (the challenge's
``ISIC2018_Task1_Training_GroundTruth`` next to ``ISIC2018_Task1-2_Training_Input``).

Its attributes (:data:`ATTRIBUTES`) come from an attribute file (``--attributes FILE``: lines
``ISIC_0000000 00010``, the id and five bits in :data:`ATTRIBUTES` order), else from Task 2's
masks ``ISIC_<id>_attribute_<name>.png`` (found where masks are, or in ``--attributes DIR``): an
attribute is present when its mask has any non-zero pixel. Unknown is None.

Annotation files (masks, ``_superpixels``, anything under a ``*GroundTruth*`` folder) are never
photos: :func:`is_annotation`.
"""

from __future__ import annotations

import io
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from skinray import images, storage
from skinray.errors import SkinrayError

# Task 2's attributes, in the order of the bits of an attribute file (and of the manifest's columns)
ATTRIBUTES = ("globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks")
_ANNOTATION = re.compile(r"^(?P<id>.+?)_(?:segmentation|superpixels|attribute_(?P<attr>[a-z_]+))$")
_BITS = re.compile(r"[01]{%d}" % len(ATTRIBUTES))


def _stem(key: str) -> str:
    return posixpath.splitext(posixpath.basename(key))[0]


def is_annotation(key: str) -> bool:
    """True for a mask or other annotation image (``<id>_segmentation``, ``<id>_superpixels``,
    ``<id>_attribute_<name>``, or any file under a folder whose name contains GroundTruth)."""
    folders = key.split("/")[:-1]
    return bool(_ANNOTATION.match(_stem(key))) or any("groundtruth" in f.lower() for f in folders)


@dataclass
class Annotations:
    """Masks and attributes found for a source's photos, by photo id (the file name's stem)."""

    given: dict[str, str] = field(default_factory=dict)  # id -> mask URI, from --masks
    beside: dict[tuple[str, str], str] = field(default_factory=dict)  # (folder key, id) -> mask URI
    found: dict[str, str] = field(default_factory=dict)  # id -> mask URI, elsewhere
    attribute_masks: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {attribute: URI}
    attribute_rows: dict[str, tuple[bool, ...]] = field(default_factory=dict)  # id -> bits, from a file
    notes: list[str] = field(default_factory=list)  # problems (reported, not fatal)

    def mask_uri(self, key: str) -> str | None:
        """The lesion mask of the photo at ``key`` (a key under the source), or None."""
        pid = _stem(key)
        return self.given.get(pid) or self.beside.get((posixpath.dirname(key), pid)) or self.found.get(pid)

    def attributes(self, key: str, s3: storage.S3Options | None = None) -> dict[str, bool | None]:
        """{attribute: present?} of the photo at ``key``; None where nothing says. Reads Task 2's
        masks (call it from a worker thread)."""
        pid = _stem(key)
        if pid in self.attribute_rows:
            return dict(zip(ATTRIBUTES, self.attribute_rows[pid]))
        uris = self.attribute_masks.get(pid, {})
        return {name: _any_pixel(uris[name], s3) if name in uris else None for name in ATTRIBUTES}

    def add(self, entries: list[storage.FileEntry], source_keys: bool = False, given: bool = False) -> int:
        """Index the annotation files among ``entries``: keys under the source (``source_keys``),
        under ``--masks`` (``given``) or elsewhere. Returns how many were masks or attribute masks."""
        n = 0
        for entry in entries:
            match = _ANNOTATION.match(_stem(entry.key))
            if not match or not images.is_image_key(entry.key):
                continue
            pid, attr = match["id"], match["attr"]
            if attr in ATTRIBUTES:
                self.attribute_masks.setdefault(pid, {})[attr] = entry.uri
            elif attr is None and entry.key.endswith(f"{pid}_segmentation{posixpath.splitext(entry.key)[1]}"):
                if given:
                    self.given.setdefault(pid, entry.uri)
                elif source_keys:
                    self.beside.setdefault((posixpath.dirname(entry.key), pid), entry.uri)
                    self.found.setdefault(pid, entry.uri)
                else:
                    self.found.setdefault(pid, entry.uri)
            else:
                continue
            n += 1
        return n


def _any_pixel(uri: str, s3: storage.S3Options | None) -> bool | None:
    """Whether the mask at ``uri`` has a non-zero pixel; None if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(storage.read_bytes(uri, s3))) as img:
            return img.getbbox() is not None
    except (SkinrayError, OSError, ValueError):
        return None


def read_attribute_file(uri: str, s3: storage.S3Options | None, notes: list[str]) -> dict[str, tuple[bool, ...]]:
    """{id: five booleans} of an attribute file (lines ``ISIC_0000000 00010``; blank lines and
    ``#`` comments skipped). Lines of another shape are noted, not fatal; an unreadable file is."""
    try:
        text = storage.read_bytes(uri, s3).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SkinrayError(f"--attributes {uri}: not a text file (byte {exc.start}); expected lines like "
                           f"'ISIC_0000000 00010' ({', '.join(ATTRIBUTES)})") from None
    rows, bad = {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 2 or not _BITS.fullmatch(parts[1]):
            bad.append(f"line {number}")
            continue
        rows[posixpath.splitext(parts[0])[0]] = tuple(c == "1" for c in parts[1])
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        notes.append(f"{posixpath.basename(uri)}: {len(bad)} lines are not '<id> <{len(ATTRIBUTES)} bits>', "
                     f"ignored ({shown})")
    return rows


def _parent(uri: str) -> str | None:
    """The folder/prefix that holds ``uri``, or None at a bucket or filesystem root."""
    trimmed = uri.rstrip("/")
    if storage.is_s3(trimmed) and trimmed.count("/") <= 2:
        return None
    if not storage.is_s3(trimmed) and not trimmed.startswith("file://"):  # a relative path has a parent too
        parent = str(Path(trimmed).resolve().parent)
        return parent if parent != str(Path(trimmed).resolve()) else None
    parent = posixpath.dirname(trimmed)
    return parent if parent and parent != trimmed and not parent.endswith(":") else None


def sibling_ground_truth(source: str, s3: storage.S3Options | None) -> list[str]:
    """Folders beside ``source`` whose name contains GroundTruth (case-insensitive)."""
    import pyarrow.fs as pafs

    parent = _parent(source)
    if parent is None:
        return []
    try:
        fs, root = storage.resolve(parent, s3)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    except (SkinrayError, OSError, ValueError):
        return []
    name = posixpath.basename(source.rstrip("/"))
    return [storage.join(parent, posixpath.basename(i.path)) for i in infos
            if i.type == pafs.FileType.Directory and "groundtruth" in posixpath.basename(i.path).lower()
            and posixpath.basename(i.path) != name]


def find(source: str, entries: list[storage.FileEntry], s3: storage.S3Options | None = None,
         masks: str | None = None, attributes: str | None = None) -> Annotations:
    """The masks and attributes for the photos under ``source`` (its listing: ``entries``), from
    the source itself, GroundTruth folders beside it, ``masks`` (a folder) and ``attributes`` (an
    attribute file, or a folder of Task 2 masks). A folder given that holds no annotation is an
    error; an unreadable one too."""
    found = Annotations()
    for folder in sibling_ground_truth(source, s3):
        found.add(storage.list_files(folder, s3))
    found.add(entries, source_keys=True)
    if masks:
        if not found.add(storage.list_files(masks, s3), given=True):
            raise SkinrayError(f"--masks {masks}: no masks named <id>_segmentation.png (or "
                               f"<id>_attribute_<name>.png) there")
    if attributes:
        listed = storage.list_files(attributes, s3)
        if len(listed) == 1 and listed[0].uri.rstrip("/") == attributes.rstrip("/"):
            found.attribute_rows = read_attribute_file(attributes, s3, found.notes)
        elif not found.add(listed):
            raise SkinrayError(f"--attributes {attributes}: a folder without <id>_attribute_<name>.png masks; "
                               f"give an attribute file (lines 'ISIC_0000000 00010') or Task 2's mask folder")
    return found
