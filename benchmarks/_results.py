"""One JSON file per benchmark run, beside the printed summary, so the figures in docs/ can be
regenerated rather than retyped.

    from _results import write_result          # benchmarks run as `python benchmarks/NAME.py`
    write_result("model_cost", {"256": {...}}, params={"threads": 1})

writes ``benchmarks/results/model_cost-20261127T224501Z-1234.json`` (git-ignored) holding the
benchmark's name, the command line, when it ran, the commit (and whether the tree had changes),
the machine (CPUs, platform, Python, GPU if torch sees one), ``params`` and ``figures``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=RESULTS_DIR.parent, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _machine() -> dict[str, Any]:
    machine: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "python": platform.python_version()}
    torch = sys.modules.get("torch")  # only if the benchmark imported it: no import cost here
    if torch is not None and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def write_result(name: str, figures: dict[str, Any], *, params: dict[str, Any] | None = None,
                 out_dir: str | Path | None = None, also: str | Path | None = None) -> Path:
    """Write one run's figures to ``out_dir`` (default benchmarks/results/) and return the path;
    ``also`` (a benchmark's ``--json``): the figures alone to that file too."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {
        "benchmark": name,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "finished_utc": stamp,
        "commit": _git("rev-parse", "HEAD"),
        "tree_changed": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": _machine(),
        "params": params or {},
        "figures": figures,
    }
    folder = Path(out_dir) if out_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path, n = folder / f"{name}-{stamp}-{os.getpid()}.json", 1
    while path.exists():  # two results of one process in the same second
        n += 1
        path = folder / f"{name}-{stamp}-{os.getpid()}-{n}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(path)
    print(f"result: {path}", flush=True)
    if also:
        Path(also).parent.mkdir(parents=True, exist_ok=True)
        Path(also).write_text(json.dumps(figures, indent=2, default=str))
        print(f"figures: {also}", flush=True)
    return path
