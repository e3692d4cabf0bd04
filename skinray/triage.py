"""``skinray assess INPUT [--out DIR]``: the triage of a folder or bucket of photos, without writing
enhanced photos. Every input key gets a row, as in the archive job (:func:`skinray.archive.list_inputs`
and :func:`~skinray.archive.read_decode`: the same ``failed`` and ``not-image`` rows), with the
photo's :class:`~skinray.assess.Assessment` as columns. With ``--out``: ``DIR/manifest.parquet``,
``DIR/summary.json`` (counts by status and by verdict) and ``DIR/report.html``, a page to scan:
thumbnails grouped by verdict (retake first), each with its reasons and figures, before / after
for ``corrected`` photos, then the files that could not be read. Small inputs run in this
process; larger ones as a Ray Data job (one :class:`AssessStage` actor per CPU), like ``enhance``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from skinray import archive, assess, paths, storage
from skinray.config import MAX_PIXELS, AssessConfig

THUMBNAIL = 160  # pixels, the longer side of the report's thumbnails
COLUMNS = ("key", "status", "reason", "bytes_in", "width", "height", "seconds", "colour", "warning",
           *assess.COLUMNS)
SCHEMA = pa.schema([(name, archive.REPORT_SCHEMA.field(name).type) for name in COLUMNS])


def thumbnail(rgb: np.ndarray) -> str:
    """A JPEG data URI of ``rgb`` with its longer side at most :data:`THUMBNAIL` pixels."""
    img = Image.fromarray(rgb)
    img.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class AssessStage:
    """Ray Data actor (and the in-process stage): read + decode a batch of files, enhance and
    assess each photo with one Enhancer, thumbnails for the report; enhanced photos are not kept."""

    def __init__(self, model: str, s3, cfg: AssessConfig, max_pixels: int = MAX_PIXELS,
                 follow_symlinks: bool = False, thumbnails: bool = True, loaded=None):
        from skinray.predict import Enhancer, cpu_threads

        self.enhancer = (Enhancer(loaded, "cpu") if loaded is not None
                         else Enhancer.from_checkpoint(model, "cpu", s3=s3))
        self.enhancer.threads = cpu_threads()
        self.s3, self.cfg, self.max_pixels = s3, cfg, max_pixels
        self.follow_symlinks, self.thumbnails = follow_symlinks, thumbnails

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = archive._unpack(batch) if "files" in batch else batch
        batch = archive.read_decode(batch, max_pixels=self.max_pixels, s3=self.s3,
                                    follow_symlinks=self.follow_symlinks)
        rows = [{name: batch[name][i] for name in COLUMNS} for i in range(len(batch["key"]))]
        for row in rows:
            row["before"] = row["after"] = ""
        for i, row in enumerate(rows):
            if row["status"] != "todo":
                continue
            started = time.perf_counter()
            rgb = np.frombuffer(batch["pixels"][i], np.uint8).reshape(int(row["height"]), int(row["width"]), 3)
            (out,), (a,) = assess.assess_batch(self.enhancer, [rgb], self.cfg)
            row.update(a.row(), status="ok", seconds=float(row["seconds"]) + time.perf_counter() - started)
            if self.thumbnails:
                row["before"] = thumbnail(rgb)
                row["after"] = thumbnail(out) if a.verdict == "corrected" else ""
        return {name: np.array([r[name] for r in rows], dtype=object) for name in (*COLUMNS, "before", "after")}


@dataclass
class TriageSummary:
    counts: dict[str, int]
    verdicts: dict[str, int]
    total: int
    seconds: float
    model_id: str
    execution: str
    report_uri: str = ""
    rows: list[dict] = field(default_factory=list, repr=False)

    def line(self) -> str:
        parts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in archive.STATUSES if s != "skipped-existing")
        verdicts = ", ".join(f"{self.verdicts.get(v, 0)} {v}" for v in assess.VERDICTS)
        where = f"; report {self.report_uri}" if self.report_uri else ""
        return f"assessed {self.total} files in {self.seconds:.1f}s ({parts}; {verdicts}){where}"


def _todo_rows(entries: list[paths.Listed]) -> list[dict]:
    return [{**archive._row(e.key, bytes_in=e.size), "src": e.path, "dst": "", "exists": False,
             "foreign": False, "replace": False} for e in entries]


def _local(todo: list[dict], stage_kwargs: dict, batch_size: int):
    from skinray.predict import one_torch_thread

    stage = AssessStage(**stage_kwargs)
    with one_torch_thread():  # as in a 1-CPU Ray actor: the same bytes
        for rows in archive.batches(todo, batch_size):
            yield stage(archive._numpy_batch(rows))


def _ray(todo: list[dict], stage_kwargs: dict, batch_size: int, workers: int, ray_address: str | None):
    import ray.data

    from skinray.runtime import init_ray

    init_ray(ray_address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    items = [{"files": json.dumps(rows)} for rows in archive.batches(todo, batch_size)]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1000)))
    actors = max(workers, archive._cluster_cpus(ray_address))
    ds = ds.map_batches(AssessStage, batch_format="numpy", batch_size=1, fn_constructor_kwargs=stage_kwargs,
                        compute=ray.data.ActorPoolStrategy(min_size=workers, max_size=actors,
                                                           initial_size=actors), num_cpus=1)
    yield from ds.iter_batches(batch_size=None, batch_format="numpy")


def _rows_of(batch: dict[str, np.ndarray]) -> list[dict]:
    names = list(batch)
    return [dict(zip(names, values)) for values in zip(*(batch[n].tolist() for n in names))]


def _execution(execution: str, todo: list[dict], workers: int, ray_address: str | None) -> str:
    if execution != "auto":
        return execution
    small = len(todo) <= archive.LOCAL_MAX_FILES and sum(r["bytes_in"] for r in todo) <= archive.LOCAL_MAX_BYTES
    return "local" if small and workers == 1 and not (ray_address or os.environ.get("RAY_ADDRESS")) else "ray"


def run(input_uri: str, out: str | None = None, model: str = "bundled", s3: storage.S3Options | None = None,
        cfg: AssessConfig | None = None, execution: str = "auto", workers: int = 1, batch_size: int = 64,
        follow_symlinks: bool = False, max_pixels: int = MAX_PIXELS,
        ray_address: str | None = None) -> TriageSummary:
    """Assess every photo under ``input_uri``; with ``out``, write the manifest, summary and HTML
    report there. ``execution``: ``auto`` (in-process for a few photos), ``local`` or ``ray``."""
    from skinray import checkpoint

    cfg = cfg or AssessConfig()
    cfg.validate()
    src = paths.check_job(input_uri, out, None, False, follow_symlinks)[0] if out else paths.locate(input_uri)
    started = time.time()
    loaded = checkpoint.load(model, s3=s3, inference=True)  # fail fast on a bad model, before listing or Ray
    entries, final = archive.list_inputs(src, s3, follow_symlinks)
    todo = _todo_rows(entries)
    execution = _execution(execution, todo, workers, ray_address)
    kwargs = {"model": model, "s3": s3, "cfg": cfg, "max_pixels": max_pixels, "follow_symlinks": follow_symlinks,
              "thumbnails": bool(out)}
    batches = (_local(todo, {**kwargs, "loaded": loaded}, batch_size) if execution == "local"
               else _ray(todo, kwargs, batch_size, workers, ray_address))
    rows = [{**{n: r[n] for n in COLUMNS}, "before": "", "after": ""} for r in final]
    for batch in batches:
        rows.extend(_rows_of(batch))
    rows.sort(key=lambda r: r["key"])
    summary = TriageSummary({s: sum(r["status"] == s for r in rows) for s in archive.STATUSES},
                            {v: sum(r["verdict"] == v for r in rows) for v in assess.VERDICTS},
                            len(rows), time.time() - started, loaded.model_id, execution, rows=rows)
    if out:
        _write_outputs(paths.locate(out), s3, summary, input_uri, model, cfg)
    return summary


def _write_outputs(dst: paths.Location, s3, summary: TriageSummary, input_uri: str, model: str,
                   cfg: AssessConfig) -> None:
    rows = summary.rows
    sink = pa.BufferOutputStream()
    pq.write_table(archive.table_of(rows, SCHEMA), sink)
    archive._write(dst.join("manifest.parquet"), sink.getvalue().to_pybytes(), s3, replace=True)
    archive._write(dst.join("summary.json"), json.dumps({
        "input": input_uri, "model": model, "model_id": summary.model_id, "counts": summary.counts,
        "verdicts": summary.verdicts, "total": summary.total, "seconds": summary.seconds,
        "execution": summary.execution, "thresholds": cfg.__dict__}, indent=2).encode(), s3, replace=True)
    summary.report_uri = dst.join("report.html")
    archive._write(summary.report_uri, report_html(summary, input_uri).encode(), s3, replace=True)


# ----------------------------------------------------------------------------- the HTML report

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h2{margin-top:1.5em}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ccc;border-radius:6px;padding:6px;width:340px}
.card img{max-width:160px;max-height:160px;vertical-align:top}.key{font-weight:600;word-break:break-all}
.reasons{color:#b00020;font-weight:600}.figs{font-size:12px;color:#555}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"""
_TITLES = {"retake": "Retake: ask for a new photo",
           "corrected": "Corrected by skinray: read colours on the corrected photo",
           "good": "Good: little or nothing changed"}


def _card(row: dict) -> str:
    key = html.escape(str(row["key"]))
    images_ = f'<img alt="before" src="{row["before"]}">' if row["before"] else ""
    if row["after"]:
        images_ += f' <img alt="after" src="{row["after"]}">'
    reasons = f'<div class="reasons">{html.escape(str(row["reasons"]))}</div>' if row["reasons"] else ""
    figs = (f'{row["width"]}x{row["height"]} px · light {row["kelvin"]:.0f} K, tint {row["tint"]:+.3f} · '
            f'exposure {row["ev"]:+.2f} EV · change ΔE00 {row["change_mean"]:.2f} (p95 {row["change_p95"]:.2f}) · '
            f'blur x{row["blur_factor"]:.2f} · clipped {100 * row["clipped_high"]:.1f}% high, '
            f'{100 * row["clipped_low"]:.1f}% low · noise {row["noise"]:.1f}')
    return (f'<div class="card" data-verdict="{row["verdict"]}"><div class="key">{key}</div>{reasons}'
            f'<div>{images_}</div><div class="figs">{html.escape(figs)}</div></div>')


def report_html(summary: TriageSummary, input_uri: str) -> str:
    """The report page: one section per verdict (thumbnails, reasons, figures; before / after
    for corrected photos), then a table of the files not assessed."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>skinray assess: {html.escape(input_uri)}</title>",
             f"<style>{_STYLE}</style><h1>skinray assess</h1><p>{html.escape(input_uri)} · model "
             f"{html.escape(summary.model_id)} · {html.escape(summary.line())}</p>"]
    for verdict in ("retake", "corrected", "good"):
        cards = [_card(r) for r in summary.rows if r["verdict"] == verdict]
        parts.append(f'<h2 id="{verdict}">{_TITLES[verdict]} ({len(cards)})</h2>'
                     f'<div class="grid">{"".join(cards)}</div>')
    others = [r for r in summary.rows if r["status"] in ("failed", "not-image")]
    body = "".join(f"<tr><td>{html.escape(str(r['key']))}</td><td>{r['status']}</td>"
                   f"<td>{html.escape(str(r['reason']))}</td></tr>" for r in others)
    parts.append(f'<h2 id="unread">Not assessed ({len(others)})</h2><table><tr><th>file</th><th>status</th>'
                 f"<th>reason</th></tr>{body}</table>")
    return "\n".join(parts)
