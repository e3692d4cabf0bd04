"""Archive-scale enhancement: one streaming Ray Data job over a folder or bucket.

    list + plan (driver) -> read + decode (CPU tasks) -> enhance (actor pool, batched, CPU/GPU)
                         -> encode + write (CPU tasks) -> report rows (driver)

Every input key gets one report row: ``ok``, ``skipped-existing`` (a valid output is already
there: re-runs resume), ``failed`` (with a reason) or ``not-image``. Outputs keep the input's
relative path; each is written whole (temporary file + rename locally, a single PUT on S3), so
no partial file is ever visible at a final key. The report goes to ``OUTPUT/_skinray/``.
"""

from __future__ import annotations

import json
import posixpath
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skinray import checkpoint, images, storage
from skinray.config import EnhanceConfig
from skinray.errors import SkinrayError

REPORT_DIR = "_skinray"
STATUSES = ("ok", "skipped-existing", "failed", "not-image")
REPORT_SCHEMA = pa.schema([
    ("key", pa.string()), ("output_key", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("bytes_in", pa.int64()), ("bytes_out", pa.int64()), ("width", pa.int32()), ("height", pa.int32()),
    ("seconds", pa.float64()),
])
_EXT = {"png": ".png", "jpeg": ".jpg"}


def output_key(key: str, fmt: str) -> str:
    """The output's relative key: the input's, with the extension of ``fmt`` unless 'same'.
    Raises ValueError for keys that would land outside the output folder."""
    norm = posixpath.normpath(key.replace("\\", "/"))
    if norm.startswith(("../", "/")) or norm in ("..", "."):
        raise ValueError(f"key {key!r} would escape the output folder")
    if fmt == "same":
        return norm
    stem, ext = posixpath.splitext(norm)
    if fmt == "jpeg" and ext.lower() in (".jpg", ".jpeg"):
        return norm
    return stem + _EXT[fmt]


def encode_for(key: str, rgb: np.ndarray, quality: int) -> bytes:
    """Encode in the format the output key's extension names (PNG for unknown extensions)."""
    ext = posixpath.splitext(key)[1].lower().lstrip(".")
    return images.encode(rgb, ext if ext in ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp") else "png",
                         quality)


def _row(key: str, out_key: str = "", status: str = "todo", reason: str = "", **extra: Any) -> dict[str, Any]:
    row = {"key": key, "output_key": out_key, "status": status, "reason": reason, "bytes_in": 0,
           "bytes_out": 0, "width": 0, "height": 0, "seconds": 0.0}
    row.update(extra)
    return row


def plan(cfg: EnhanceConfig, s3: storage.S3Options | None) -> tuple[list[dict], list[dict]]:
    """(rows to process, rows already final). Lists the input once and the output once."""
    inputs = storage.list_files(cfg.input, s3)
    existing: dict[str, int] = {}
    if storage.exists(cfg.output, s3):
        existing = {e.key: e.size for e in storage.list_files(cfg.output, s3)}
    todo, final = [], []
    for entry in inputs:
        if entry.key.startswith(REPORT_DIR + "/"):
            continue
        if not images.is_image_key(entry.key):
            final.append(_row(entry.key, status="not-image", reason="no image extension",
                              bytes_in=entry.size))
            continue
        try:
            out_key = output_key(entry.key, cfg.format)
        except ValueError as exc:
            final.append(_row(entry.key, status="failed", reason=str(exc), bytes_in=entry.size))
            continue
        todo.append({**_row(entry.key, out_key, bytes_in=entry.size), "src": entry.uri,
                     "dst": storage.join(cfg.output, out_key),
                     "exists": (not cfg.overwrite) and existing.get(out_key, 0) > 0})
    return todo, final


# ----------------------------------------------------------------------------- Ray Data stages


def read_decode(batch: dict[str, np.ndarray], *, max_pixels: int, s3) -> dict[str, np.ndarray]:
    """CPU task: read and decode each input (or validate its existing output)."""
    n = len(batch["key"])
    pixels, status, reason = [b""] * n, list(batch["status"]), list(batch["reason"])
    width, height = np.zeros(n, np.int32), np.zeros(n, np.int32)
    bytes_out, seconds = np.zeros(n, np.int64), np.zeros(n, np.float64)
    for i in range(n):
        started = time.perf_counter()
        try:
            if batch["exists"][i]:
                try:
                    existing = storage.read_bytes(str(batch["dst"][i]), s3)
                    width[i], height[i], _ = images.probe(existing, max_pixels)
                    status[i], bytes_out[i] = "skipped-existing", len(existing)
                    continue
                except SkinrayError:
                    pass  # an invalid output is redone
            rgb = images.decode(storage.read_bytes(str(batch["src"][i]), s3), max_pixels)
            height[i], width[i] = rgb.shape[:2]
            pixels[i] = rgb.tobytes()
        except SkinrayError as exc:
            status[i], reason[i] = "failed", str(exc)
        finally:
            seconds[i] += time.perf_counter() - started
    return {**batch, "pixels": np.array(pixels, dtype=object), "status": np.array(status, dtype=object),
            "reason": np.array(reason, dtype=object), "width": width, "height": height,
            "bytes_out": bytes_out, "seconds": seconds}


class EnhanceStage:
    """Actor: holds one Enhancer (loaded once) and enhances the decoded images of each batch."""

    def __init__(self, model_uri: str, s3, tile: int, margin: int):
        from skinray.predict import Enhancer

        self.enhancer = Enhancer.from_checkpoint(model_uri, s3=s3, tile=tile, margin=margin)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        todo = [i for i, s in enumerate(batch["status"]) if s == "todo"]
        arrays = [np.frombuffer(batch["pixels"][i], np.uint8).reshape(int(batch["height"][i]),
                                                                      int(batch["width"][i]), 3) for i in todo]
        pixels = list(batch["pixels"])
        status, reason = list(batch["status"]), list(batch["reason"])
        try:
            for i, out in zip(todo, self.enhancer.enhance_batch(arrays)):
                pixels[i] = out.tobytes()
        except Exception as exc:  # a model failure fails these rows, not the archive job
            for i in todo:
                status[i], reason[i] = "failed", f"enhance: {type(exc).__name__}: {exc}"
        seconds = np.array(batch["seconds"], np.float64)
        if todo:
            seconds[todo] += (time.perf_counter() - started) / len(todo)
        return {**batch, "pixels": np.array(pixels, dtype=object), "status": np.array(status, dtype=object),
                "reason": np.array(reason, dtype=object), "seconds": seconds}


def encode_write(batch: dict[str, np.ndarray], *, quality: int, s3) -> dict[str, np.ndarray]:
    """CPU task: encode each enhanced image by its output extension and write it whole."""
    status, reason = list(batch["status"]), list(batch["reason"])
    bytes_out, seconds = np.array(batch["bytes_out"], np.int64), np.array(batch["seconds"], np.float64)
    for i, state in enumerate(status):
        if state != "todo":
            continue
        started = time.perf_counter()
        try:
            rgb = np.frombuffer(batch["pixels"][i], np.uint8).reshape(int(batch["height"][i]),
                                                                      int(batch["width"][i]), 3)
            data = encode_for(str(batch["output_key"][i]), rgb, quality)
            storage.write_bytes(str(batch["dst"][i]), data, s3)
            status[i], bytes_out[i] = "ok", len(data)
        except (SkinrayError, OSError, ValueError) as exc:
            status[i], reason[i] = "failed", f"write: {exc}"
        seconds[i] += time.perf_counter() - started
    return {**{name: batch[name] for name in ("key", "output_key", "bytes_in", "width", "height")},
            "status": np.array(status, dtype=object),
            "reason": np.array(reason, dtype=object), "bytes_out": bytes_out, "seconds": seconds}


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

    def line(self) -> str:
        parts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in STATUSES)
        return (f"enhanced {self.total} files in {self.seconds:.1f}s ({parts}); "
                f"{self.images_per_s:.2f} img/s; report {self.manifest_uri}")


ProgressCallback = Callable[[dict[str, int], int], None]  # (counts by status, total)


class _Progress:
    def __init__(self, total: int, every_s: float = 10.0, callback: ProgressCallback | None = None):
        self.total, self.every_s, self.callback = total, every_s, callback
        self.started = self.last = self.last_callback = time.time()
        self.counts = dict.fromkeys(STATUSES, 0)

    def add(self, statuses) -> None:
        for s in statuses:
            self.counts[s] = self.counts.get(s, 0) + 1
        done = sum(self.counts.values())
        now = time.time()
        if self.callback and (now - self.last_callback >= 1.0 or done == self.total):
            self.last_callback = now
            self.callback(dict(self.counts), self.total)
        if now - self.last >= self.every_s or done == self.total:
            self.last = now
            rate = done / max(now - self.started, 1e-9)
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            print(f"[skinray] enhance {done}/{self.total} (ok {self.counts['ok']}, skipped "
                  f"{self.counts['skipped-existing']}, failed {self.counts['failed']}, not-image "
                  f"{self.counts['not-image']}) {rate:.1f} files/s ETA {eta:.0f}s", file=sys.stderr, flush=True)


def run(cfg: EnhanceConfig, s3: storage.S3Options | None = None, ray_address: str | None = None,
        on_progress: ProgressCallback | None = None) -> EnhanceSummary:
    """Enhance every image under ``cfg.input`` into ``cfg.output``; write the report.

    ``on_progress(counts, total)`` is called at most once a second and once at the end."""
    import ray.data

    from skinray.runtime import init_ray

    cfg.validate()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    started = time.time()
    model = checkpoint.load(cfg.model, s3=s3)  # fail fast, before Ray, on a bad model URI
    todo, final = plan(cfg, s3)
    progress = _Progress(len(todo) + len(final), callback=on_progress)
    progress.add(r["status"] for r in final)
    rows = list(final)
    if todo:
        init_ray(ray_address)
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo) // cfg.batch_size, 1000)))
        ds = ds.map_batches(read_decode, batch_format="numpy", batch_size=cfg.batch_size,
                            fn_kwargs={"max_pixels": cfg.max_pixels, "s3": s3})
        ds = ds.map_batches(EnhanceStage, batch_format="numpy", batch_size=cfg.batch_size,
                            fn_constructor_kwargs={"model_uri": cfg.model, "s3": s3, "tile": cfg.tile,
                                                   "margin": cfg.tile_margin},
                            compute=ray.data.ActorPoolStrategy(size=cfg.workers),
                            num_gpus=1 if cfg.gpu else 0, num_cpus=0 if cfg.gpu else 1)
        ds = ds.map_batches(encode_write, batch_format="numpy", batch_size=cfg.batch_size,
                            fn_kwargs={"quality": cfg.quality, "s3": s3})
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            new = batch.select(REPORT_SCHEMA.names).to_pylist()
            rows.extend(new)
            progress.add(r["status"] for r in new)
    seconds = time.time() - started
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    report = storage.join(cfg.output, REPORT_DIR)
    manifest_uri, summary_uri = storage.join(report, "manifest.parquet"), storage.join(report, "summary.json")
    table = pa.Table.from_pylist([{k: r[k] for k in REPORT_SCHEMA.names} for r in rows], schema=REPORT_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table.sort_by("key"), sink)
    storage.write_bytes(manifest_uri, sink.getvalue().to_pybytes(), s3)
    summary = EnhanceSummary(counts=counts, total=len(rows), seconds=seconds,
                             images_per_s=counts["ok"] / seconds if seconds > 0 else 0.0,
                             model_id=model.model_id, manifest_uri=manifest_uri, summary_uri=summary_uri, rows=rows)
    storage.write_bytes(summary_uri, json.dumps({
        "input": cfg.input, "output": cfg.output, "model": cfg.model, "model_id": model.model_id,
        "counts": counts, "total": len(rows), "seconds": seconds, "images_per_s": summary.images_per_s,
        "started": started_at, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "format": cfg.format, "quality": cfg.quality,
    }, indent=2).encode(), s3)
    return summary
