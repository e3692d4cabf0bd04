"""The path policy: where an archive job may read and write, applied after resolution.

One parse of every location (:func:`parse`), one resolution (:func:`locate`: local paths through
``realpath``), one containment rule (:func:`under`) and one overlap rule (:func:`check_separate`),
used by the archive job (``skinray enhance``, ``jobs/enhance.py``) and by ``POST /v1/batch``.

- ``file://`` URIs and local paths: a query or fragment (``?``, ``#``) is refused, never dropped;
  ``file://host/...`` is refused (another host's path). Paths are made absolute and their
  symlinks resolved before any check, so ``ROOT/link -> /elsewhere`` is ``/elsewhere``.
- ``s3://bucket/prefix``: keys are taken literally. Under a roots policy, a prefix with an
  empty, ``.`` or ``..`` segment is refused (servers and proxies disagree on what it names).
- At open time the job checks again: local files are opened by walking from ``/`` one component
  at a time with ``O_NOFOLLOW`` (:func:`read_file`, :func:`write_file`), so a symlink that
  appears after the check (anywhere on the path) cannot lead out; the opened file's path is the
  checked path. Only ``--follow-symlinks`` (never through the endpoint) reads through links.
- Listing (:func:`list_local`) does not follow symlinks unless asked; with ``follow_symlinks``
  every folder is listed once (loops and repeats detected by device and inode). Links,
  dangling links, loops, special files and file names that are not UTF-8 come back as entries
  with a ``problem`` (the job gives them ``failed`` rows and goes on).
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from dataclasses import dataclass
from typing import Iterable, Optional

from skinray.errors import StorageError


class PathPolicyError(StorageError):
    """A location is refused by the path policy (outside the roots, ambiguous, or a link)."""


class OverlapError(PathPolicyError):
    """The output would be, contain or lie inside the input: originals could be overwritten."""


class OutputExistsError(StorageError):
    """A file skinray did not write is in the way of an output; it is never replaced."""


@dataclass(frozen=True)
class Location:
    """A parsed location. ``kind`` is ``local`` or ``s3``; ``path`` is an absolute path (local;
    symlinks resolved when it comes from :func:`locate`) or ``bucket/prefix`` (S3, literal)."""

    kind: str
    path: str

    @property
    def uri(self) -> str:
        return self.path if self.kind == "local" else f"s3://{self.path}"

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0] if self.kind == "s3" else ""

    def join(self, key: str) -> str:
        """The location of ``key`` (a '/'-separated relative key) below this one."""
        if self.kind == "local":
            return os.path.join(self.path, *key.split("/")) if key else self.path
        return f"s3://{self.path}/{key}" if key else self.uri


def parse(uri: str) -> Location:
    """Syntax only (no filesystem access): the one reading of a location string."""
    if not isinstance(uri, str) or not uri:
        raise PathPolicyError("empty location: name a folder, file:///path or s3://bucket/prefix")
    if "\x00" in uri:
        raise PathPolicyError(f"{uri!r}: a NUL byte in a location")
    if uri.startswith("s3://"):
        path = uri[len("s3://"):].rstrip("/")
        if not path or path.startswith("/"):
            raise PathPolicyError(f"{uri}: an S3 URI needs a bucket, as in s3://bucket/prefix")
        return Location("s3", path)
    if uri.startswith("file://"):
        rest = uri[len("file://"):]
        if not rest.startswith("/"):
            raise PathPolicyError(f"{uri}: file://HOST/... names a path on another host; use file:///path")
        path = rest
    elif "://" in uri:
        raise PathPolicyError(f"{uri}: unsupported scheme; use a local path, file:// or s3://")
    else:
        path = uri
    for char, name in (("?", "query"), ("#", "fragment")):
        if char in path:
            raise PathPolicyError(f"{uri}: a local path or file:// URI may not contain {char!r} "
                                  f"(it would read as a URL {name}); rename the folder")
    return Location("local", os.path.abspath(path))


def locate(uri: str) -> Location:
    """:func:`parse`, then local paths resolved with their symlinks (``realpath``; the parts that
    do not exist yet are kept as written, normalised)."""
    loc = parse(uri)
    if loc.kind == "local":
        return Location("local", os.path.realpath(loc.path))
    return loc


def _plain_s3(loc: Location, uri: str) -> None:
    segments = loc.path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise PathPolicyError(f"{uri}: an S3 prefix with an empty, '.' or '..' segment is ambiguous; "
                              f"name the prefix plainly")


def under(loc: Location, root: Location) -> bool:
    """Whether ``loc`` is ``root`` or lies below it (whole segments: /data is not under /dat)."""
    if loc.kind != root.kind:
        return False
    if root.kind == "local" and root.path == "/":
        return True
    return loc.path == root.path or loc.path.startswith(root.path + "/")


def overlapping(a: Location, b: Location) -> bool:
    return under(a, b) or under(b, a)


def check_separate(src: Location, dst: Location, input_uri: str, output_uri: str) -> None:
    """Refuse an output equal to, inside or containing the input (after resolution; S3: the same
    bucket with overlapping prefixes): the job would write over or among the originals."""
    if overlapping(src, dst):
        how = ("is the input" if src == dst else "lies inside the input" if under(dst, src)
               else "contains the input")
        raise OverlapError(f"output {output_uri!r} {how} {input_uri!r} (resolved: {dst.uri} and {src.uri}); "
                           f"outputs never go among the originals: choose an output folder outside the input")


@dataclass(frozen=True)
class Roots:
    """The roots an endpoint's archive jobs may use: ``read_write`` (inputs and new outputs) and
    ``overwrite`` (where ``overwrite: true`` may replace outputs skinray wrote before). ``None``
    as ``read_write`` means no policy (the CLI); an empty tuple turns jobs off."""

    read_write: Optional[tuple[str, ...]]
    overwrite: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.read_write is None or bool(self.read_write)


def _resolve_roots(roots: Iterable[str]) -> list[tuple[str, Location]]:
    resolved = []
    for root in roots:
        loc = locate(root)
        if loc.kind == "s3":
            _plain_s3(loc, root)
        resolved.append((root, loc))
    return resolved


def check_roots_config(roots: Roots) -> None:
    """At start-up: every root parses, and every overwrite root lies under a read/write root."""
    rw = _resolve_roots(roots.read_write or ())
    for raw, loc in _resolve_roots(roots.overwrite):
        if not any(under(loc, r) for _, r in rw):
            raise PathPolicyError(f"batch_writable_roots: {raw!r} is not under any of batch_roots "
                                  f"{list(roots.read_write or [])}")


def check_job(input_uri: str, output_uri: str, roots: Optional[Roots], overwrite: bool = False,
              follow_symlinks: bool = False) -> tuple[Location, Location]:
    """Resolve a job's input and output and apply the whole policy; returns both locations.

    Raises :class:`PathPolicyError` (outside the roots, overwrite outside the writable roots,
    ambiguous location) or :class:`OverlapError` (output among the originals)."""
    src, dst = locate(input_uri), locate(output_uri)
    if roots is not None and roots.read_write is not None:
        if not roots.read_write:
            raise PathPolicyError("archive jobs are turned off (no batch_roots)")
        if follow_symlinks:
            raise PathPolicyError("follow_symlinks is not allowed under batch_roots (a link could lead out)")
        rw = _resolve_roots(roots.read_write)
        for name, raw, loc in (("input", input_uri, src), ("output", output_uri, dst)):
            if loc.kind == "s3":
                _plain_s3(loc, raw)
            if not any(under(loc, r) for _, r in rw):
                shown = f" (resolves to {loc.uri})" if loc.uri != raw.rstrip("/") else ""
                raise PathPolicyError(f"{name} {raw!r}{shown} is outside the allowed roots "
                                      f"{list(roots.read_write)}")
        if overwrite and not any(under(dst, r) for _, r in _resolve_roots(roots.overwrite)):
            raise PathPolicyError(f"overwrite is only allowed under batch_writable_roots "
                                  f"{list(roots.overwrite)}; output {output_uri!r} is not under one")
    check_separate(src, dst, input_uri, output_uri)
    return src, dst


# --- opening files without following links --------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _link_refused(path: str, part: str) -> PathPolicyError:
    return PathPolicyError(f"{path}: {part!r} on the way is a symbolic link or not a folder; "
                           f"links are not followed (it may have appeared after the job was checked)")


def _open_dir(path: str, create: bool = False) -> int:
    """A descriptor of folder ``path`` (absolute), reached from ``/`` without following any
    symlink; with ``create``, missing folders are made on the way."""
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise PathPolicyError(f"{path}: '..' in a resolved path")
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _link_refused(path, part) from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_file(path: str, follow_symlinks: bool = False) -> bytes:
    """The bytes of a regular file at an absolute path. Without ``follow_symlinks`` no component
    of the path may be a symlink (checked as it is opened). FIFOs and devices are refused."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        if follow_symlinks:
            fd = os.open(path, flags)
        else:
            parent, name = os.path.split(path)
            dfd = _open_dir(parent)
            try:
                fd = os.open(name, flags | os.O_NOFOLLOW, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _link_refused(path, name) from None
                raise
            finally:
                os.close(dfd)
    except FileNotFoundError:
        raise StorageError(f"{path}: no such file") from None
    except PathPolicyError:
        raise
    except OSError as exc:
        raise StorageError(f"{path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise StorageError(f"{path}: not a regular file")
        os.set_blocking(handle.fileno(), True)
        return handle.read()


def write_file(path: str, data: bytes, replace: bool = False) -> None:
    """Write a whole file at an absolute path: a temporary sibling, then renamed into place
    (never a partial file at ``path``). Folders are created and walked without following links.
    Without ``replace`` an existing entry at ``path`` (file or link) is never replaced:
    :class:`OutputExistsError`."""
    parent, name = os.path.split(path)
    try:
        dfd = _open_dir(parent, create=True)
    except PathPolicyError:
        raise
    except OSError as exc:
        raise StorageError(f"{path}: {exc.strerror}") from None
    tmp = f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o666, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if replace:
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link, never follows it
            else:
                try:
                    os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                except FileExistsError:
                    raise OutputExistsError(f"{path}: a file skinray did not write is in the way; "
                                            f"not replaced") from None
                except OSError as exc:  # filesystems without hard links: check, then rename
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                        raise
                    try:
                        os.stat(name, dir_fd=dfd, follow_symlinks=False)
                        raise OutputExistsError(f"{path}: a file skinray did not write is in the way; "
                                                f"not replaced")
                    except FileNotFoundError:
                        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        finally:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
    except (OutputExistsError, PathPolicyError):
        raise
    except OSError as exc:
        raise StorageError(f"{path}: {exc.strerror}") from None
    finally:
        os.close(dfd)


# --- listing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listed:
    """One entry under a listed root: ``key`` relative ('/'-separated), ``path`` to open,
    ``size`` in bytes, and ``problem`` (why it cannot be used) or ``None``."""

    key: str
    path: str
    size: int = 0
    problem: Optional[str] = None


def _link_problem(path: bytes) -> Optional[str]:
    """None when the link resolves, else why not (dangling, loop, unreadable)."""
    try:
        os.stat(path)
        return None
    except FileNotFoundError:
        return f"dangling symbolic link (-> {os.fsdecode(os.readlink(path))!r}, which does not exist)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        return f"symbolic link that cannot be followed ({exc.strerror})"


def _decode_name(name: bytes) -> tuple[str, bool]:
    try:
        return name.decode("utf-8"), True
    except UnicodeDecodeError:
        return name.decode("utf-8", "backslashreplace"), False


def _stat_root(root: str) -> os.stat_result:
    try:
        return os.stat(os.fsencode(root))
    except FileNotFoundError:
        raise StorageError(f"{root}: no such folder or prefix") from None
    except OSError as exc:
        raise StorageError(f"{root}: {exc.strerror}") from None


def _entry_stat(entry: os.DirEntry, follow_symlinks: bool) -> tuple[Optional[os.stat_result], Optional[str]]:
    """(stat, None) of an entry (of a link's target when links are followed), or (None, why not)."""
    try:
        if entry.is_symlink():
            problem = _link_problem(entry.path)
            if problem is None and not follow_symlinks:
                problem = "symbolic link, not followed (--follow-symlinks follows links)"
            if problem is not None:
                return None, problem
            return os.stat(entry.path), None
        return entry.stat(follow_symlinks=False), None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"


def _revisit_problem(ident: tuple[int, int], ancestors: frozenset, seen: dict) -> Optional[str]:
    """Why a folder reached again (through a link) is not listed again, or None if it is new."""
    if ident in ancestors:
        return f"symbolic link loop (leads back to {seen.get(ident) or 'the listed folder'!r})"
    if ident in seen:
        return f"folder already listed as {seen[ident]!r} (reached again through a link)"
    return None


def _scan_folder(folder: bytes, prefix: str, ancestors: frozenset, seen: dict, follow_symlinks: bool,
                 out: list[Listed], stack: list) -> None:
    """List one folder's entries into ``out``; push its subfolders not listed yet onto ``stack``."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        out.append(Listed(prefix.rstrip("/") or ".", os.fsdecode(folder), 0,
                          f"folder cannot be listed ({exc.strerror})"))
        return
    for entry in entries:
        name, ok = _decode_name(entry.name)
        key, path = prefix + name, os.fsdecode(entry.path)
        if not ok:
            out.append(Listed(key, path, 0, "file name is not valid UTF-8 (its bytes are shown escaped); "
                                            "rename it to enhance it"))
            continue
        st, problem = _entry_stat(entry, follow_symlinks)
        if problem is not None:
            out.append(Listed(key, path, 0, problem))
        elif stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            problem = _revisit_problem(ident, ancestors, seen)
            if problem is not None:
                out.append(Listed(key, path, 0, problem))
            else:
                seen[ident] = key
                stack.append((entry.path, key + "/", ancestors | {ident}))
        elif stat.S_ISREG(st.st_mode):
            out.append(Listed(key, path, st.st_size))
        else:
            out.append(Listed(key, path, 0, "not a regular file (FIFO, socket or device)"))


def list_local(root: str, follow_symlinks: bool = False) -> list[Listed]:
    """Every entry under a local folder (absolute, resolved), sorted by key; a file root lists
    itself. Never raises for one bad entry: it becomes a :class:`Listed` with a problem."""
    top = _stat_root(root)
    if stat.S_ISREG(top.st_mode):
        return [Listed(os.path.basename(root), root, top.st_size)]
    if not stat.S_ISDIR(top.st_mode):
        raise StorageError(f"{root}: not a folder or a regular file")
    out: list[Listed] = []
    seen = {(top.st_dev, top.st_ino): ""}  # folder identity -> key where it was listed
    stack: list[tuple[bytes, str, frozenset]] = [(os.fsencode(root), "", frozenset({(top.st_dev, top.st_ino)}))]
    while stack:
        folder, prefix, ancestors = stack.pop()
        _scan_folder(folder, prefix, ancestors, seen, follow_symlinks, out, stack)
    out.sort(key=lambda e: e.key)
    return out
