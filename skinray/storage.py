"""URIs to filesystems: the one module that lists, reads and writes data and checkpoints.

A location is a local path (the default), ``file:///abs/path`` or ``s3://bucket/prefix`` on any
S3-compatible endpoint. The endpoint comes from an explicit option (``storage.s3_endpoint``),
else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else AWS itself. Credentials come from
the standard AWS variables, the profile or instance profile. The region comes from the standard
chain: an explicit option (``storage.s3_region``), else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``,
else the ``region`` of the profile in use (``AWS_PROFILE``, else ``default``, in
``AWS_CONFIG_FILE`` or ``~/.aws/config``); else, on AWS itself, each bucket's own region (looked
up once per bucket), and us-east-1 for an S3-compatible endpoint. pyarrow's S3 filesystem ignores
the endpoint variables, so this module passes ``endpoint_override`` itself; Ray Data and Ray Train
get the same filesystem object from :func:`resolve`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from skinray.errors import StorageError

S3_RETRY_ATTEMPTS = 10  # see _s3_filesystem: retries span about 25 s


@dataclass(frozen=True)
class S3Options:
    endpoint: str | None = None
    region: str | None = None  # None: each bucket's own region (AWS itself), see resolve()

    @classmethod
    def from_config(cls, cfg) -> "S3Options":
        """The options of a config's ``storage`` section (:class:`skinray.config.StorageConfig`)."""
        return cls.from_env(cfg.s3_endpoint, cfg.s3_region)

    @classmethod
    def from_env(cls, endpoint: str | None = None, region: str | None = None) -> "S3Options":
        """The options a user set, completed from the environment: the endpoint from
        ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; the region from ``AWS_REGION`` /
        ``AWS_DEFAULT_REGION``, else the AWS profile's, else us-east-1 for an S3-compatible
        endpoint (MinIO, Ceph, moto take any) and None on AWS (the bucket's own region)."""
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            try:
                region = _env_profile_region()
            except StorageError:  # a missing profile is reported where S3 is used (resolve)
                region = None
        if not region and endpoint:
            region = "us-east-1"
        return cls(endpoint=endpoint or None, region=region or None)


def _env_profile_region() -> str | None:
    profile, default_profile = os.environ.get("AWS_PROFILE"), os.environ.get("AWS_DEFAULT_PROFILE")
    config_file = os.environ.get("AWS_CONFIG_FILE")
    if not (profile or default_profile or os.path.exists(os.path.expanduser(config_file or "~/.aws/config"))):
        return None  # no profile named and no config file: no region there (and no botocore import, 0.13 s)
    return profile_region(profile, default_profile, config_file)


@functools.lru_cache(maxsize=8)
def profile_region(profile: str | None, default_profile: str | None, config_file: str | None) -> str | None:
    """The ``region`` of the AWS profile in use, as botocore (the AWS CLI, boto3) reads it: the
    profile named by ``AWS_PROFILE`` (else ``AWS_DEFAULT_PROFILE``, else ``default``) in
    ``AWS_CONFIG_FILE`` (else ``~/.aws/config``). The arguments are those variables (the cache
    key); botocore reads them from the environment itself."""
    import botocore.exceptions
    import botocore.session

    try:
        return botocore.session.Session().get_config_variable("region") or None
    except botocore.exceptions.ProfileNotFound:
        raise StorageError(f"AWS_PROFILE={profile or default_profile}: no such profile in "
                           f"{config_file or '~/.aws/config'} (or the credentials file)") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise StorageError(f"AWS config {config_file or '~/.aws/config'}: {exc}") from None


@functools.lru_cache(maxsize=64)
def bucket_region(bucket: str) -> str:
    """The region of an AWS bucket (one HEAD request, pyarrow's ``resolve_s3_region``); us-east-1
    when it cannot be asked (the request that follows then says what is wrong)."""
    try:
        return pafs.resolve_s3_region(bucket)
    except (OSError, ValueError):
        return "us-east-1"


@dataclass(frozen=True)
class FileEntry:
    key: str  # path relative to the listed root, '/'-separated
    uri: str  # full URI of the file
    size: int  # bytes


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with '/' (works for local paths, file:// and s3://)."""
    if is_s3(uri) or uri.startswith("file://"):
        return posixpath.join(uri.rstrip("/"), *parts)
    return str(Path(uri, *parts))


class _S3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem, pickled as the :class:`S3Options` it was built from. pyarrow's
    own pickling drops ``retry_strategy``: Ray Train workers got a copy that gave up within a
    second of a lost connection (a checkpoint file's upload failed during a 3 s outage of the S3
    server, and only Ray Train's own re-upload saved the checkpoint)."""

    def __init__(self, options: S3Options, **kwargs):
        super().__init__(**kwargs)
        self._skinray_options = options

    def __reduce__(self):
        return _s3_filesystem, (self._skinray_options,)


@functools.lru_cache(maxsize=16)
def _s3_filesystem(options: S3Options) -> pafs.S3FileSystem:
    kwargs: dict = {
        "region": options.region,
        "connect_timeout": 10,
        "request_timeout": 60,
        # Connection errors, timeouts, 5xx and throttling are retried after 25 ms, 50 ms, ... 12.8 s:
        # an endpoint away for up to ~25 s (a restart, a network blip) costs a pause, not the job
        # or the checkpoint. Standard(3) gave up after ~1.7 s (tests/test_faults.py stops the
        # S3 server for 3 s mid-job and mid-checkpoint). Not-found and access errors fail at once.
        "retry_strategy": pafs.AwsDefaultS3RetryStrategy(max_attempts=S3_RETRY_ATTEMPTS),
    }
    if options.endpoint:
        parsed = urlparse(options.endpoint)
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        kwargs["scheme"] = parsed.scheme or "https"
    return _S3FileSystem(options, **kwargs)


def resolve(uri: str, s3: S3Options | None = None) -> tuple[pafs.FileSystem, str]:
    """URI -> (pyarrow filesystem, path inside it). Local paths become absolute.

    The URI is read by :func:`skinray.paths.parse`, the one parser: a ``?`` or ``#`` in a local
    path or ``file://`` URI is refused (never silently dropped), ``file://host/`` is refused, S3
    keys are literal."""
    from skinray import paths

    loc = paths.parse(uri)
    if loc.kind == "s3":
        options = s3 or S3Options.from_env()
        if options.region is None:  # AWS with no region set anywhere: the bucket's own
            options = replace(options, region=_env_profile_region() or (
                "us-east-1" if options.endpoint else bucket_region(loc.path.split("/", 1)[0])))
        return _s3_filesystem(options), loc.path
    return pafs.LocalFileSystem(), loc.path


def _explain(uri: str, exc: BaseException) -> StorageError:
    """Turn a filesystem exception into one line that names the URI and what to do."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    upper = text.upper()
    if "NO_SUCH_BUCKET" in upper or "NOSUCHBUCKET" in upper or "BUCKET DOES NOT EXIST" in upper:
        hint = "the bucket does not exist: check the name and the endpoint"
    elif "ACCESS_DENIED" in upper or "ACCESSDENIED" in upper or "FORBIDDEN" in upper or "INVALIDACCESSKEY" in upper \
            or "SIGNATURE" in upper:
        hint = "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the instance profile"
    elif "COULDN'T CONNECT" in upper or "CONNECTION" in upper or "RESOLVE" in upper or "TIMEOUT" in upper:
        hint = "cannot reach the S3 endpoint: check AWS_ENDPOINT_URL or storage.s3_endpoint"
    elif isinstance(exc, FileNotFoundError) or "NOT FOUND" in upper or "NOSUCHKEY" in upper:
        hint = "no such file or prefix"
    else:
        hint = text
    return StorageError(f"{uri}: {hint}")


def list_files(uri: str, s3: S3Options | None = None) -> list[FileEntry]:
    """Every file under a folder/prefix, sorted by key. A missing location is an error."""
    fs, root = resolve(uri, s3)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            return [FileEntry(key=posixpath.basename(root), uri=uri, size=info.size or 0)]
        if info.type == pafs.FileType.NotFound:
            bucket = root.split("/", 1)[0]
            if is_s3(uri) and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise StorageError(f"{uri}: the bucket does not exist: check the name and the endpoint")
            raise StorageError(f"{uri}: no such folder or prefix")
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except StorageError:
        raise
    except (OSError, ValueError) as exc:
        raise _explain(uri, exc) from None
    entries = []
    base = uri.rstrip("/")
    for item in infos:
        if item.type != pafs.FileType.File:
            continue
        # Object keys are kept verbatim (no normalisation: "a/../b" stays as stored).
        key = item.path[len(root):].lstrip("/") if not isinstance(fs, pafs.LocalFileSystem) \
            else Path(item.path).relative_to(root).as_posix()
        entries.append(FileEntry(key=key, uri=f"{base}/{key}" if is_s3(uri) else join(uri, key),
                                 size=item.size or 0))
    entries.sort(key=lambda e: e.key)
    return entries


def read_bytes(uri: str, s3: S3Options | None = None) -> bytes:
    fs, path = resolve(uri, s3)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as exc:
        raise _explain(uri, exc) from None


def write_bytes(uri: str, data: bytes, s3: S3Options | None = None) -> None:
    """Write a whole file. Never leaves a partial file at ``uri``: locally it writes a temporary
    sibling and renames it; an S3 PUT only becomes visible once complete."""
    fs, path = resolve(uri, s3)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        else:
            with fs.open_output_stream(path) as stream:
                stream.write(data)
    except (OSError, ValueError) as exc:
        raise _explain(uri, exc) from None


def exists(uri: str, s3: S3Options | None = None) -> bool:
    fs, path = resolve(uri, s3)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except (OSError, ValueError) as exc:
        raise _explain(uri, exc) from None
