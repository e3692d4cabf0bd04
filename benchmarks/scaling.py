"""Does a second worker node add throughput? The archive job on a local cluster with 1, then 2,
worker nodes of one CPU each (and a head with none for work), in one run.

    .venv/bin/python benchmarks/scaling.py [--count 1500] [--size 256] [--model bundled] [--repeats 1]
        [--json outputs/benchmarks/scaling.json]

Starts its own cluster with cluster/local/start.sh (HEAD_CPUS=0, one worker node of WORKER_CPUS=1,
free loopback ports, token auth as always), runs `skinray enhance IN OUT --ray --ray-address
127.0.0.1:PORT --format png` as a driver on the head ``--repeats`` times, adds a node with
cluster/local/add-worker.sh and runs it ``--repeats`` times again, each on a fresh output folder.
images/s is from the job's own summary.json (plan + model load + Ray Data job, without the
driver's Python start-up). Prints images/s of each and the ratio 2 nodes / 1 node. Stops the
cluster it started (cluster/local/stop.sh with its port) whatever happens.

On a 2-core machine two 1-CPU nodes use all the cores, and the head's processes and the driver
share them: the ratio shows the machine's limit as much as the job's. images/s includes the
job's fixed start (connecting, planning, loading the model in each actor: several seconds), so
small counts understate the ratio (first bundled model: 300 images 1.30x, 1,500 images 1.87x; the
colour-only model, lighter per photo, 1.65x at 1,500 and 1.62x at 3,000: docs/figures.md).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import write_result  # noqa: E402
from archive_throughput import make_inputs  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_job(env: dict, gcs: str, model: str, src: Path, out: Path) -> dict:
    cmd = [str(ROOT / ".venv/bin/skinray"), "enhance", str(src), str(out), "--ray", "--ray-address", gcs,
           "--format", "png", "--model", model]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "_skinray" / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    ports = {"GCS_PORT": free_port(), "DASHBOARD_PORT": free_port(), "AGENT_PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "HEAD_CPUS": "0", "WORKER_CPUS": "1",
           "WORKERS": "1", "RAY_AUTH_MODE": "token",
           "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{ports['DASHBOARD_PORT']}"}
    env.pop("RAY_ADDRESS", None)
    gcs = f"127.0.0.1:{ports['GCS_PORT']}"
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        make_inputs(src, args.count, args.size)
        try:
            subprocess.run(["bash", str(ROOT / "cluster/local/start.sh")], env=env, check=True, cwd=ROOT,
                           capture_output=True, timeout=300)
            for nodes in (1, 2):
                if nodes == 2:
                    subprocess.run(["bash", str(ROOT / "cluster/local/add-worker.sh")], env=env, check=True,
                                   cwd=ROOT, capture_output=True, timeout=300)
                for round_ in range(args.repeats):
                    summary = run_job(env, gcs, args.model, src, Path(tmp) / f"out-{nodes}-{round_}")
                    rates[nodes].append(summary["images_per_s"])
                    print(f"{nodes} worker node(s) of 1 CPU: {summary['counts']['ok']} images in "
                          f"{summary['seconds']:.1f} s, {summary['images_per_s']:.2f} img/s", flush=True)
        finally:
            subprocess.run(["bash", str(ROOT / "cluster/local/stop.sh")], env=env, cwd=ROOT, capture_output=True,
                           timeout=120)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"median img/s: 1 node {one:.2f}, 2 nodes {two:.2f} -> 2 nodes / 1 node {two / one:.2f}x "
          f"(goal >= 1.7x; {args.count} x {args.size}px, model {args.model}, {os.cpu_count()} cores)")
    figures = {"cores": os.cpu_count(), "images_per_s": rates, "median": {"1": one, "2": two}, "ratio": two / one}
    write_result('scaling', figures, params=vars(args), also=args.json)


if __name__ == "__main__":
    main()
