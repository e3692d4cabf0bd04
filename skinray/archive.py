"""Archive-scale enhancement: one streaming Ray Data job over a folder or bucket.

    list + plan (driver) -> CPU: one CpuStage actor per core (at least enhance.workers) takes a
                            batch from read + decode through the model to encode + write,
                            pixels never leaving its process
                         -> GPU: read + decode (CPU tasks) -> enhance (one GPU actor per worker,
                            batched) -> encode + write (CPU tasks)
                         -> report rows (driver; Ray Data's stats in EnhanceSummary.stats)

Small inputs (``execution="auto"``, what ``skinray enhance`` uses: at most
:data:`LOCAL_MAX_FILES` photos and :data:`LOCAL_MAX_BYTES` bytes to process, one model worker, no
named cluster) run the very same stages in this process, one batch after another, without
starting Ray: one photo takes about the time the model takes, not Ray's start-up. The outputs,
manifest and summary are the same (``summary.json`` says which ``execution`` ran).

Every input key gets one report row: ``ok``, ``skipped-existing`` (a valid output is already
there: re-runs resume), ``failed`` (with a reason) or ``not-image``. Outputs keep the input's
relative path; each is written whole (temporary file + rename locally, a single PUT on S3), so
no partial file is ever visible at a final key. The report goes to ``OUTPUT/_skinray/``.

Paths follow :mod:`skinray.paths`: input and output are resolved (symlinks included) and checked
once (roots, when the endpoint started the job; the output never equal to, inside or containing
the input), every local file is then opened without following links, listing does not follow
links unless ``follow_symlinks``, and an existing file at an output key is replaced only if an
earlier run wrote it (the ``owned`` column of its manifest).
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skinray import assess, checkpoint, images, paths, storage
from skinray.config import BATCH_BYTES, EnhanceConfig
from skinray.errors import SkinrayError, StorageError
from skinray.progress import ProgressLine, bar

REPORT_DIR = "_skinray"
EXECUTIONS = ("auto", "local", "ray")
# In-process below these (auto). Ray costs 5-10 s to start (issue 11) and then overlaps decoding
# and encoding with the model; in-process runs the same stages one after another. On 2 cores a
# 12 MP photo takes a few seconds through the model, so the overlap repays Ray's start-up only
# after several such photos: 8 files or 64 MiB (about eight 12 MP phone JPEGs) stay in-process.
LOCAL_MAX_FILES = 8
LOCAL_MAX_BYTES = 64 << 20
STATUSES = ("ok", "skipped-existing", "failed", "not-image")
REPORT_SCHEMA = pa.schema([
    ("key", pa.string()), ("output_key", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("bytes_in", pa.int64()), ("bytes_out", pa.int64()), ("width", pa.int32()), ("height", pa.int32()),
    ("seconds", pa.float64()),
    ("owned", pa.bool_()),  # the file at output_key was written by skinray (this run or an earlier one)
    ("colour", pa.string()),  # what decoding did to the colours: srgb, converted from <profile>, ...
    ("warning", pa.string()),  # something ignored on the way (a corrupt ICC profile, unreadable EXIF)
] + [(name, pa.string() if kind == "str" else pa.float64())  # the photo's triage (skinray/assess.py);
     for name, kind in assess.COLUMNS.items()])  # "" / NaN for photos not enhanced this run
_EXT = {"png": ".png", "jpeg": ".jpg"}


def output_key(key: str, fmt: str) -> str:
    """The output's relative key: the input's, with the extension of ``fmt`` unless 'same'.
    Raises ValueError for keys that would land outside the output folder."""
    norm = posixpath.normpath(key.replace("\\", "/"))
    if norm.startswith(("../", "/")) or norm in ("..", "."):
        raise ValueError(f"key {key!r} would escape the output folder")
    stem, ext = posixpath.splitext(norm)
    if fmt == "same":  # formats skinray reads but does not write (HEIC, AVIF) become JPEG
        return norm if ext.lower() in images.WRITE_EXTENSIONS else stem + _EXT["jpeg"]
    if fmt == "jpeg" and ext.lower() in (".jpg", ".jpeg"):
        return norm
    return stem + _EXT[fmt]


def encode_for(key: str, rgb: np.ndarray, quality: int, exif: bytes | None = None) -> bytes:
    """Encode in the format the output key's extension names (PNG for unknown extensions),
    tagged sRGB, with ``exif`` if given."""
    ext = posixpath.splitext(key)[1].lower()
    return images.encode(rgb, images.WRITE_EXTENSIONS.get(ext, "png"), quality, exif=exif)


def _row(key: str, out_key: str = "", status: str = "todo", reason: str = "", **extra: Any) -> dict[str, Any]:
    row = {"key": key, "output_key": out_key, "status": status, "reason": reason, "bytes_in": 0,
           "bytes_out": 0, "width": 0, "height": 0, "seconds": 0.0, "owned": False, "colour": "",
           "warning": "", **assess.empty_row()}
    row.update(extra)
    return row


def _read(location: str, s3, follow_symlinks: bool = False) -> bytes:
    """Bytes of an input or output: local files opened without following links."""
    if storage.is_s3(location):
        return storage.read_bytes(location, s3)
    return paths.read_file(location, follow_symlinks=follow_symlinks)


def _write(location: str, data: bytes, s3, replace: bool) -> None:
    if storage.is_s3(location):
        storage.write_bytes(location, data, s3)
    else:
        paths.write_file(location, data, replace=replace)


def _list(loc: paths.Location, s3, follow_symlinks: bool = False) -> list[paths.Listed]:
    if loc.kind == "local":
        return paths.list_local(loc.path, follow_symlinks)
    return [paths.Listed(e.key, e.uri, e.size) for e in storage.list_files(loc.uri, s3)]


def previous_outputs(dst: paths.Location, s3) -> set[str]:
    """Output keys that an earlier run wrote, from its manifest (none if there is no readable
    manifest: then nothing already there counts as skinray's)."""
    try:
        data = _read(dst.join(f"{REPORT_DIR}/manifest.parquet"), s3)
        table = pq.ParquetFile(pa.BufferReader(data)).read()  # not read_table: it imports pandas (0.7 s)
    except (SkinrayError, OSError, ValueError, pa.ArrowException):
        return set()
    rows = table.select([c for c in ("output_key", "status", "owned") if c in table.column_names]).to_pylist()
    if "owned" in table.column_names:
        return {r["output_key"] for r in rows if r["owned"] and r["output_key"]}
    return {r["output_key"] for r in rows if r["status"] == "ok" and r["output_key"]}  # older manifests


def list_inputs(src: paths.Location, s3, follow_symlinks: bool = False) -> tuple[list[paths.Listed], list[dict]]:
    """(the photos to read, final rows): one listing of the input, report folders left out; a
    file that cannot be listed safely is a ``failed`` row, one without an image extension a
    ``not-image`` row (the archive job and ``skinray assess`` alike)."""
    photos, final = [], []
    for entry in _list(src, s3, follow_symlinks):
        if entry.key.startswith(REPORT_DIR + "/"):
            continue
        if entry.problem:
            final.append(_row(entry.key, status="failed", reason=entry.problem, bytes_in=entry.size))
        elif not images.is_image_key(entry.key):
            final.append(_row(entry.key, status="not-image", reason="no image extension", bytes_in=entry.size))
        else:
            photos.append(entry)
    return photos, final


def plan(cfg: EnhanceConfig, s3: storage.S3Options | None, src: paths.Location | None = None,
         dst: paths.Location | None = None) -> tuple[list[dict], list[dict]]:
    """(rows to process, rows already final). Lists the input once and the output once."""
    if src is None or dst is None:
        src, dst = paths.check_job(cfg.input, cfg.output, None, cfg.overwrite, cfg.follow_symlinks)
    inputs, final = list_inputs(src, s3, cfg.follow_symlinks)
    existing: set[str] = set()
    if dst.kind == "local" and os.path.lexists(dst.path) or dst.kind == "s3" and storage.exists(dst.uri, s3):
        existing = {e.key for e in _list(dst, s3)}
    ours = previous_outputs(dst, s3) if existing else set()
    todo = []
    for entry in inputs:
        try:
            out_key = output_key(entry.key, cfg.format)
        except ValueError as exc:
            final.append(_row(entry.key, status="failed", reason=str(exc), bytes_in=entry.size))
            continue
        present, owned = out_key in existing, out_key in ours
        if present and not owned and cfg.overwrite:
            final.append(_row(entry.key, out_key, status="failed", bytes_in=entry.size,
                              reason=f"output {out_key!r} exists and no earlier skinray run wrote it "
                                     f"(overwrite replaces only skinray's outputs): not replaced"))
            continue
        todo.append({**_row(entry.key, out_key, bytes_in=entry.size, owned=owned), "src": entry.path,
                     "dst": dst.join(out_key), "exists": present and not cfg.overwrite,
                     "replace": present and owned, "foreign": present and not owned})
    return todo, final


# ----------------------------------------------------------------------------- Ray Data stages


def read_decode(batch: dict[str, np.ndarray], *, max_pixels: int, s3,
                follow_symlinks: bool = False) -> dict[str, np.ndarray]:
    """CPU task: read and decode each input (or validate its existing output)."""
    n = len(batch["key"])
    pixels, status, reason = [b""] * n, list(batch["status"]), list(batch["reason"])
    colour, warning, exif = list(batch["colour"]), list(batch["warning"]), [b""] * n
    width, height = np.zeros(n, np.int32), np.zeros(n, np.int32)
    bytes_out, seconds = np.zeros(n, np.int64), np.zeros(n, np.float64)
    for i in range(n):
        started = time.perf_counter()
        try:
            if batch["exists"][i]:
                try:
                    existing = _read(str(batch["dst"][i]), s3)
                    width[i], height[i], _ = images.probe(existing, max_pixels)
                    status[i], bytes_out[i] = "skipped-existing", len(existing)
                    continue
                except SkinrayError as exc:
                    if batch["foreign"][i]:  # not ours: never replaced, whatever it holds
                        status[i], reason[i] = "failed", (
                            f"output {batch['output_key'][i]!r} exists, is not a valid image ({exc}) and no "
                            f"earlier skinray run wrote it: not replaced")
                        continue
                    # an invalid output that skinray wrote is redone
            decoded = images.decode_photo(_read(str(batch["src"][i]), s3, follow_symlinks), max_pixels)
            height[i], width[i] = decoded.rgb.shape[:2]
            pixels[i] = decoded.rgb.tobytes()
            colour[i], warning[i], exif[i] = decoded.colour, decoded.warning, decoded.exif or b""
        except SkinrayError as exc:
            status[i], reason[i] = "failed", str(exc)
        finally:
            seconds[i] += time.perf_counter() - started
    return {**batch, "pixels": np.array(pixels, dtype=object), "status": np.array(status, dtype=object),
            "reason": np.array(reason, dtype=object), "width": width, "height": height,
            "bytes_out": bytes_out, "seconds": seconds, "colour": np.array(colour, dtype=object),
            "warning": np.array(warning, dtype=object), "exif": np.array(exif, dtype=object)}


def _read_decode_files(batch: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
    """CPU task of GPU jobs: :func:`read_decode` on one batch of files (a Ray Data ``files`` row)."""
    return read_decode(_unpack(batch), **kwargs)


class EnhanceStage:
    """Actor: holds one Enhancer (loaded once) and enhances the decoded images of each batch."""

    def __init__(self, model_uri: str, s3, tile: int, margin: int, loaded=None, device: str | None = None,
                 precision: str = "auto"):
        from skinray.predict import Enhancer

        if loaded is not None:  # in-process: the model the job already loaded
            self.enhancer = Enhancer(loaded, device or "cpu", tile=tile, margin=margin, precision=precision)
        else:
            self.enhancer = Enhancer.from_checkpoint(model_uri, device, s3=s3, tile=tile, margin=margin,
                                                     precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        todo = [i for i, s in enumerate(batch["status"]) if s == "todo"]
        arrays = [np.frombuffer(batch["pixels"][i], np.uint8).reshape(int(batch["height"][i]),
                                                                      int(batch["width"][i]), 3) for i in todo]
        pixels = list(batch["pixels"])
        status, reason = list(batch["status"]), list(batch["reason"])
        triage = {name: list(batch[name]) for name in assess.COLUMNS}
        try:  # enhanced and assessed from one pass of the model
            for i, out, a in zip(todo, *assess.assess_batch(self.enhancer, arrays)):
                pixels[i] = out.tobytes()
                for name, value in a.row().items():
                    triage[name][i] = value
        except Exception as exc:  # a model failure fails these rows, not the archive job
            for i in todo:
                status[i], reason[i] = "failed", f"enhance: {type(exc).__name__}: {exc}"
        seconds = np.array(batch["seconds"], np.float64)
        if todo:
            seconds[todo] += (time.perf_counter() - started) / len(todo)
        return {**batch, "pixels": np.array(pixels, dtype=object), "status": np.array(status, dtype=object),
                "reason": np.array(reason, dtype=object), "seconds": seconds,
                **{name: np.array(values, dtype=object if assess.COLUMNS[name] == "str" else np.float64)
                   for name, values in triage.items()}}


class CpuStage:
    """Actor of CPU jobs: a batch's whole path in one process (read + decode, enhance, encode +
    write), one actor per CPU. Decoded pixels never cross processes (no object-store copy, no
    pickling of 3 bytes per pixel twice), and each actor is busy on its CPU all the time.
    (GPU jobs keep decoding and encoding in CPU tasks, so the GPU only runs the model.)
    In-process runs use the very same object, so both paths give the same bytes."""

    def __init__(self, cfg: EnhanceConfig, s3, loaded=None, threads: int | None = None):
        from skinray.predict import cpu_threads

        self.cfg, self.s3 = cfg, s3
        self.stage = EnhanceStage(cfg.model, s3, cfg.tile, cfg.tile_margin, loaded=loaded, device="cpu",
                                  precision=cfg.precision)
        # As many images or tiles at once as the CPUs held (a Ray actor: its num_cpus), each on
        # one torch thread: same kernels, same bytes, whatever the count.
        self.stage.enhancer.threads = threads or cpu_threads()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cfg = self.cfg
        batch = _unpack(batch) if "files" in batch else batch  # a Ray Data row of files, or the rows in-process
        batch = read_decode(batch, max_pixels=cfg.max_pixels, s3=self.s3, follow_symlinks=cfg.follow_symlinks)
        return encode_write(self.stage(batch), quality=cfg.quality, s3=self.s3, strip_metadata=cfg.strip_metadata)


def encode_write(batch: dict[str, np.ndarray], *, quality: int, s3,
                 strip_metadata: bool = False) -> dict[str, np.ndarray]:
    """CPU task: encode each enhanced image by its output extension (tagged sRGB, with the
    input's EXIF unless ``strip_metadata``) and write it whole."""
    status, reason = list(batch["status"]), list(batch["reason"])
    bytes_out, seconds = np.array(batch["bytes_out"], np.int64), np.array(batch["seconds"], np.float64)
    owned = np.array(batch["owned"], bool)
    for i, state in enumerate(status):
        if state != "todo":
            continue
        started = time.perf_counter()
        try:
            rgb = np.frombuffer(batch["pixels"][i], np.uint8).reshape(int(batch["height"][i]),
                                                                      int(batch["width"][i]), 3)
            exif = None if strip_metadata else (bytes(batch["exif"][i]) or None)
            data = encode_for(str(batch["output_key"][i]), rgb, quality, exif)
            try:
                _write(str(batch["dst"][i]), data, s3, replace=bool(batch["replace"][i]))
            except paths.OutputExistsError:  # appeared since planning: ours if its bytes are these
                if _read(str(batch["dst"][i]), s3) != data:  # (Ray retried this batch after its
                    raise  # actor died mid-way: encoding is deterministic), else someone else's
            status[i], bytes_out[i], owned[i] = "ok", len(data), True
        except (SkinrayError, OSError, ValueError) as exc:
            status[i], reason[i] = "failed", f"write: {exc}"
        seconds[i] += time.perf_counter() - started
    return {**{name: batch[name] for name in ("key", "output_key", "bytes_in", "width", "height", "colour",
                                              "warning", *assess.COLUMNS)},
            "status": np.array(status, dtype=object),
            "reason": np.array(reason, dtype=object), "bytes_out": bytes_out, "seconds": seconds,
            "owned": owned}


# ----------------------------------------------------------------------------- the job


@dataclass
class EnhanceSummary:
    counts: dict[str, int]
    total: int
    seconds: float
    images_per_s: float
    model_id: str
    manifest_uri: str
    summary_uri: str
    rows: list[dict] = field(default_factory=list, repr=False)
    stats: str = field(default="", repr=False)  # Ray Data's per-operator stats (Ray runs only)
    verdicts: dict[str, int] = field(default_factory=dict)  # photos enhanced this run, by triage verdict

    def line(self) -> str:
        parts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in STATUSES)
        verdicts = ", ".join(f"{self.verdicts.get(v, 0)} {v}" for v in assess.VERDICTS)
        return (f"enhanced {self.total} files in {self.seconds:.1f}s ({parts}; {verdicts}); "
                f"{self.images_per_s:.2f} img/s; report {self.manifest_uri}")


ProgressCallback = Callable[[dict[str, int], int], None]  # (counts by status, total)


class _Progress:
    def __init__(self, total: int, every_s: float = 10.0, callback: ProgressCallback | None = None):
        self.total, self.every_s, self.callback = total, every_s, callback
        self.started = self.last_callback = time.time()
        self.counts = dict.fromkeys(STATUSES, 0)
        self.line = ProgressLine(every_s)

    def add(self, statuses) -> None:
        for s in statuses:
            self.counts[s] = self.counts.get(s, 0) + 1
        done = sum(self.counts.values())
        now = time.time()
        if self.callback and (now - self.last_callback >= 1.0 or done == self.total):
            self.last_callback = now
            self.callback(dict(self.counts), self.total)
        if self.line.due() or done == self.total:
            rate = done / max(now - self.started, 1e-9)
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            self.line.update(f"[skinray] enhance {bar(done, self.total) + ' ' if self.line.live else ''}"
                             f"{done}/{self.total} (ok {self.counts['ok']}, skipped "
                             f"{self.counts['skipped-existing']}, failed {self.counts['failed']}, not-image "
                             f"{self.counts['not-image']}) {rate:.1f} files/s ETA {eta:.0f}s", final=done == self.total)


PROGRESS_FILE = "progress.json"  # OUTPUT/_skinray/progress.json: the running job's own report
JOB_ID_ENV = "SKINRAY_JOB_ID"  # set by the endpoint for its jobs: their own copy of the report


def job_report_dir() -> str:
    """``_skinray/jobs/<id>`` for an endpoint's job (the id in SKINRAY_JOB_ID, of the shape the
    endpoint issues), else "": each job's progress and summary under its own name, so that a
    later job on the same output never replaces an earlier one's."""
    import re

    job_id = os.environ.get(JOB_ID_ENV, "")
    return f"{REPORT_DIR}/jobs/{job_id}" if re.fullmatch(r"skinray-batch-[0-9a-f]{16}", job_id) else ""


class ProgressReport:
    """Writes ``OUTPUT/_skinray/progress.json`` as the job goes: at once (total known, nothing
    done), then at most every ``every_s`` and at the end, each time whole. ``started`` (epoch
    seconds) tells a reader an earlier run's file from this one's. Readers: the endpoint's
    ``GET /v1/batch/{id}``. Best effort: a failed write never stops the job."""

    def __init__(self, dst: paths.Location, s3, total: int, then: ProgressCallback | None = None,
                 every_s: float = 2.0):
        own = job_report_dir()
        self.uri, self.s3, self.then, self.every_s = dst.join(f"{REPORT_DIR}/{PROGRESS_FILE}"), s3, then, every_s
        self.uris = [self.uri] + ([dst.join(f"{own}/{PROGRESS_FILE}")] if own else [])
        self.manifest_uri = dst.join(f"{own or REPORT_DIR}/manifest.parquet")
        self.started, self.last = time.time(), 0.0
        self(dict.fromkeys(STATUSES, 0), total)

    def __call__(self, counts: dict[str, int], total: int) -> None:
        now, finished = time.time(), sum(counts.values()) >= total
        if finished or now - self.last >= self.every_s:
            self.last = now
            report = json.dumps({"started": self.started, "updated": now, "total": total, "counts": counts,
                                 "finished": finished, "manifest_uri": self.manifest_uri}).encode()
            for uri in self.uris:
                try:
                    _write(uri, report, self.s3, replace=True)
                except (SkinrayError, OSError) as exc:
                    print(f"[skinray] progress report {uri} not written: {exc}", file=sys.stderr, flush=True)
        if self.then:
            self.then(counts, total)


def wait_for_resources(cfg: EnhanceConfig, poll_s: float = 1.0) -> None:
    """Wait (at most ``cfg.resource_wait_s``) until the cluster has what the model actors ask
    for (``workers`` GPUs with ``gpu``, else ``workers`` CPUs); then fail with a clear error
    rather than leave the job waiting forever. An autoscaling cluster may add nodes meanwhile."""
    import ray

    need = {"GPU": float(cfg.workers)} if cfg.gpu else {"CPU": float(cfg.workers)}
    deadline = time.monotonic() + cfg.resource_wait_s
    while True:
        have = ray.cluster_resources()
        if all(have.get(k, 0.0) >= v for k, v in need.items()):
            return
        if time.monotonic() >= deadline:
            what = ", ".join(f"{v:g} {k}" for k, v in need.items())
            has = ", ".join(f"{have.get(k, 0.0):g} {k}" for k in need)
            hint = ("run without gpu, or on a cluster with GPU workers" if cfg.gpu
                    else "lower enhance.workers")
            raise SkinrayError(f"enhance: the model actors need {what} ({cfg.workers} workers"
                               f"{', gpu' if cfg.gpu else ''}) but the cluster has {has} after waiting "
                               f"{cfg.resource_wait_s:g}s (enhance.resource_wait_s); {hint}")
        time.sleep(poll_s)


def choose_execution(cfg: EnhanceConfig, todo: list[dict], execution: str = "auto",
                     ray_address: str | None = None) -> str:
    """'local' or 'ray': ``execution`` unless 'auto'; auto is local for a small input (see
    LOCAL_MAX_FILES / LOCAL_MAX_BYTES) with one model worker and no cluster named (neither
    ``ray_address`` nor RAY_ADDRESS, which ``ray job submit`` sets: jobs/enhance.py on a cluster
    stays on the cluster's workers)."""
    if execution not in EXECUTIONS:
        raise SkinrayError(f"enhance: unknown execution {execution!r}; choose from {EXECUTIONS}")
    if execution != "auto":
        return execution
    small = len(todo) <= LOCAL_MAX_FILES and sum(int(r["bytes_in"]) for r in todo) <= LOCAL_MAX_BYTES
    cluster = ray_address or os.environ.get("RAY_ADDRESS")
    return "local" if small and cfg.workers == 1 and not cluster else "ray"


def _numpy_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows -> the column batch Ray Data's ``batch_format="numpy"`` hands the stages."""
    batch = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        textual = any(isinstance(v, (str, bytes)) for v in values)
        batch[name] = np.array(values, dtype=object) if textual else np.array(values)
    return batch


def batches(todo: list[dict], max_files: int, max_bytes: int = BATCH_BYTES) -> list[list[dict]]:
    """Consecutive rows in batches of at most ``max_files`` files and ``max_bytes`` of input (a
    larger file is a batch of its own): many small photos share a call, large ones do not."""
    out: list[list[dict]] = []
    size = 0
    for row in todo:
        if not out or len(out[-1]) >= max_files or size + int(row["bytes_in"]) > max_bytes:
            out.append([])
            size = 0
        out[-1].append(row)
        size += int(row["bytes_in"])
    return out


def _unpack(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Ray Data batch of ``files`` rows (each one batch of :func:`batches`, as JSON) -> that
    batch's rows as columns."""
    return _numpy_batch([row for files in batch["files"] for row in json.loads(files)])


def _report_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    columns = {name: batch[name].tolist() if isinstance(batch[name], np.ndarray) else list(batch[name])
               for name in REPORT_SCHEMA.names}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _local_batches(todo: list[dict], cfg: EnhanceConfig, s3, loaded):
    """The Ray Data stages, called in this process on one batch after another."""
    if cfg.gpu:
        import torch

        if not torch.cuda.is_available():
            raise SkinrayError("enhance: gpu was asked for but torch sees no CUDA device here; run without "
                               "--gpu, or with --ray on a cluster with GPU workers")
    from skinray.predict import one_torch_thread

    if cfg.gpu:
        stage = EnhanceStage(cfg.model, s3, cfg.tile, cfg.tile_margin, loaded=loaded, device="cuda",
                             precision=cfg.precision)

        def fused(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            batch = read_decode(batch, max_pixels=cfg.max_pixels, s3=s3, follow_symlinks=cfg.follow_symlinks)
            return encode_write(stage(batch), quality=cfg.quality, s3=s3, strip_metadata=cfg.strip_metadata)
    else:
        fused = CpuStage(cfg, s3, loaded=loaded)  # the Ray job's CPU actor, here with all the cores
    with one_torch_thread():  # as in the Ray actor; the cores work on different tiles instead
        for rows in batches(todo, cfg.batch_size):
            yield _report_rows(fused(_numpy_batch(rows)))


def _ray_batches(todo: list[dict], cfg: EnhanceConfig, s3, ray_address: str | None,
                 stats: list[str] | None = None):
    """The streaming Ray Data job over ``todo``; appends Ray Data's stats to ``stats`` at the end."""
    import ray.data

    from skinray.runtime import init_ray

    init_ray(ray_address)
    wait_for_resources(cfg)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.wait_for_min_actors_s = max(1, int(cfg.resource_wait_s))  # the actors, once resources exist
    # One row per batch of files (batches(): by count and by bytes), one batch per call: each
    # stage gets the files of one batch (batch_size=1 on the rows, then whole blocks).
    items = [{"files": json.dumps(rows)} for rows in batches(todo, cfg.batch_size)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1000)))
    if cfg.gpu:  # CPU tasks decode and encode; the GPU actors only run the model
        ds = ds.map_batches(_read_decode_files, batch_format="numpy", batch_size=1,
                            fn_kwargs={"max_pixels": cfg.max_pixels, "s3": s3,
                                       "follow_symlinks": cfg.follow_symlinks})
        ds = ds.map_batches(EnhanceStage, batch_format="numpy", batch_size=None,
                            fn_constructor_kwargs={"model_uri": cfg.model, "s3": s3, "tile": cfg.tile,
                                                   "margin": cfg.tile_margin, "precision": cfg.precision,
                                                   "device": "cuda"},
                            compute=ray.data.ActorPoolStrategy(size=cfg.workers), num_gpus=1, num_cpus=0)
        ds = ds.map_batches(encode_write, batch_format="numpy", batch_size=None,
                            fn_kwargs={"quality": cfg.quality, "s3": s3, "strip_metadata": cfg.strip_metadata})
    else:  # one CpuStage actor per CPU does the whole path (at least enhance.workers of them)
        actors = max(cfg.workers, _cluster_cpus(ray_address))
        ds = ds.map_batches(CpuStage, batch_format="numpy", batch_size=1,
                            fn_constructor_kwargs={"cfg": cfg, "s3": s3},
                            compute=ray.data.ActorPoolStrategy(min_size=cfg.workers, max_size=actors,
                                                               initial_size=actors),
                            num_cpus=1)
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield batch.select(REPORT_SCHEMA.names).to_pylist()
    if stats is not None:
        stats.append(ds.stats())  # Ray Data's per-operator figures (wall, CPU, rows, memory)


def _cluster_cpus(ray_address: str | None) -> int:
    """CPUs for model actors: those of the cluster free now (Serve replicas and other jobs keep
    theirs), or at most this machine's cores for the local Ray (which counts each core twice,
    see runtime.init_ray: one actor per core, not two)."""
    import ray

    cpus = int(ray.available_resources().get("CPU", 0))
    if not (ray_address or os.environ.get("RAY_ADDRESS")):
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, cpus)


def _enhance_all(todo: list[dict], cfg: EnhanceConfig, s3, model, execution: str, ray_address: str | None,
                 progress: _Progress, stats: list[str]) -> list[dict]:
    """Run the pipeline (``local`` or ``ray``) over ``todo``: the report rows, counted into
    ``progress`` as each batch comes back."""
    rows: list[dict] = []
    if not todo:
        return rows
    batches = (_local_batches(todo, cfg, s3, model) if execution == "local"
               else _ray_batches(todo, cfg, s3, ray_address, stats))
    for new in batches:
        rows.extend(new)
        progress.add(r["status"] for r in new)
    return rows


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def table_of(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Report rows as an Arrow table of ``schema`` (NaN kept as NaN, None as null), through
    Arrow's C++ JSON reader: ``pa.Table.from_pylist`` (and every ``pa.array``) imports pandas,
    0.5-1 s of a one-photo command that never uses it."""
    if not rows:
        return schema.empty_table()
    from pyarrow import json as pajson

    lines = "\n".join(json.dumps({name: row[name] for name in schema.names}, default=_plain) for row in rows)
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    return pajson.read_json(pa.BufferReader(lines.encode()), parse_options=options).select(schema.names)


def _write_manifest(manifest_uri: str, rows: list[dict], counts: dict[str, int], s3) -> None:
    """The report's rows as Parquet, sorted by key; if it cannot be written (e.g. a full disk),
    the error carries the counts and the failed keys instead."""
    table = table_of(sorted(rows, key=lambda r: r["key"]), REPORT_SCHEMA)  # sort_by imports pyarrow.compute (0.2 s)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    try:
        _write(manifest_uri, sink.getvalue().to_pybytes(), s3, replace=True)
    except SkinrayError as exc:  # e.g. a full disk: the report's counts and failures go in the error
        failed = [f"{r['key']} ({r['reason']})" for r in rows if r["status"] == "failed"]
        parts = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
        raise StorageError(f"enhance: the report was not written: {exc}; {len(rows)} files ({parts})"
                           + (f"; failed: {'; '.join(failed[:10])}" + (" ..." if len(failed) > 10 else "")
                              if failed else "")
                           + "; outputs written are whole and a re-run skips them") from None


def _write_report(cfg: EnhanceConfig, s3, dst, rows: list[dict], model, started_at: str, seconds: float,
                  execution: str, stats: list[str]) -> EnhanceSummary:
    """Write the manifest and summary.json under the output's report folder; the run's summary."""
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    verdicts = {v: sum(r["verdict"] == v for r in rows) for v in assess.VERDICTS}
    manifest_uri = dst.join(f"{REPORT_DIR}/manifest.parquet")
    summary_uri = dst.join(f"{REPORT_DIR}/summary.json")
    _write_manifest(manifest_uri, rows, counts, s3)
    summary = EnhanceSummary(counts=counts, total=len(rows), seconds=seconds,
                             images_per_s=counts["ok"] / seconds if seconds > 0 else 0.0,
                             model_id=model.model_id, manifest_uri=manifest_uri, summary_uri=summary_uri, rows=rows,
                             stats="".join(stats), verdicts=verdicts)
    data = json.dumps({
        "input": cfg.input, "output": cfg.output, "model": cfg.model, "model_id": model.model_id,
        "counts": counts, "verdicts": verdicts, "total": len(rows), "seconds": seconds,
        "images_per_s": summary.images_per_s,
        "started": started_at, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "format": cfg.format, "quality": cfg.quality, "strip_metadata": cfg.strip_metadata,
        "execution": execution,
    }, indent=2).encode()
    _write(summary_uri, data, s3, replace=True)
    own = job_report_dir()
    if own:  # this job's own copies: a later job on the same output replaces only the shared ones
        _write_manifest(dst.join(f"{own}/manifest.parquet"), rows, counts, s3)
        _write(dst.join(f"{own}/summary.json"), data, s3, replace=True)
    return summary


def run(cfg: EnhanceConfig, s3: storage.S3Options | None = None, ray_address: str | None = None,
        on_progress: ProgressCallback | None = None, roots: paths.Roots | None = None,
        execution: str = "ray") -> EnhanceSummary:
    """Enhance every image under ``cfg.input`` into ``cfg.output``; write the report.

    ``on_progress(counts, total)`` is called at most once a second and once at the end.
    ``roots`` (the endpoint's) confines input and output; the checks are made here, where the
    job runs, on the paths as this node resolves them. ``execution``: ``ray`` (the Ray Data
    job), ``local`` (the same stages in this process, no Ray) or ``auto`` (local for a small
    input: :func:`choose_execution`)."""
    cfg.validate()
    if execution not in EXECUTIONS:
        raise SkinrayError(f"enhance: unknown execution {execution!r}; choose from {EXECUTIONS}")
    src, dst = paths.check_job(cfg.input, cfg.output, roots, cfg.overwrite, cfg.follow_symlinks)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    started = time.time()
    model = checkpoint.load(cfg.model, s3=s3, inference=True)  # fail fast, before Ray, on a bad model URI
    todo, final = plan(cfg, s3, src, dst)
    progress = _Progress(len(todo) + len(final),
                         callback=ProgressReport(dst, s3, len(todo) + len(final), then=on_progress))
    progress.add(r["status"] for r in final)
    execution = choose_execution(cfg, todo, execution, ray_address)
    stats: list[str] = []
    rows = list(final) + _enhance_all(todo, cfg, s3, model, execution, ray_address, progress, stats)
    return _write_report(cfg, s3, dst, rows, model, started_at, time.time() - started, execution, stats)
