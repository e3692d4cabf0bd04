"""Online endpoint latency and throughput, against the direct predictor, in one run.

    .venv/bin/python benchmarks/serve_latency.py [--model bundled|poster|CKPT] [--size 256] [--clients 16]
        [--requests 200] [--sequential 60] [--json outputs/benchmarks/serve_latency.json]

Starts a local Ray + Serve on 127.0.0.1 and deploys the real application twice, one replica
each: with request batching (max_batch_size 8) and without (max_batch_size 1). An asyncio client
(httpx) sends ``--size``x``--size`` JPEG photos:
  1. one request at a time (``--sequential``), alternating with direct ``Enhancer`` calls on the
     same photo in this process, on one thread like the replica (alternating, so machine noise
     hits both alike) -> Serve overhead = endpoint p50 - Enhancer p50 (and minus
     decode+encode as well; "endpoint added p50": the median of the pairs' differences, endpoint
     minus in-process decode+enhance+encode), split into the part outside the replica (client
     latency - the replica's own Server-Timing: the proxy + HTTP + routing share alone) and the part
     inside it (Server-Timing - in-process decode+enhance+encode: the replica's limits, assessment
     and hops to its executor);
  2. ``--clients`` concurrent clients sending ``--requests`` in all: p50/p95/p99 latency, req/s
     and the status codes, for both deployments.
--model: ``bundled`` (default, the shipped lut model), ``poster`` (an untrained poster network, the
same compute as a trained one) or a checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import torch

from skinray import checkpoint, images, synth
from skinray.config import POSTER_MODEL as POSTER
from skinray.config import Config
from skinray.model import build_model
from skinray.predict import Enhancer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_load(url: str, body: bytes, clients: int, total: int) -> tuple[list[float], Counter, float]:
    latencies: list[float] = []
    codes: Counter = Counter()
    queue: asyncio.Queue = asyncio.Queue()
    for _ in range(total):
        queue.put_nowait(None)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            r = await http.post(url, content=body, headers={"Content-Type": "image/jpeg"})
            latencies.append(time.perf_counter() - started)
            codes[r.status_code] += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    return latencies, codes, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=60)
    parser.add_argument("--replica-cpus", type=float, default=1, help="num_cpus of the replica")
    parser.add_argument("--json", help="write the figures here")
    a = parser.parse_args()

    from ray import serve

    from skinray.runtime import init_ray
    from skinray.serving import AppArgs, EnhanceService

    tmp = tempfile.mkdtemp(prefix="skinray-serve-bench-")
    model = a.model
    if model == "poster":
        cfg = Config(model=POSTER)
        model = str(checkpoint.save(f"{tmp}/model", build_model(cfg.model), cfg, {"epoch": 0}))
    photo = synth.skin_image(0, 1, a.size)
    body = images.encode(photo, "jpeg", 92)

    # Direct predictor as in the replica: one torch thread, as many tiles at once as its CPUs.
    torch.set_num_threads(1)
    enhancer = Enhancer.from_checkpoint(model, device="cpu", threads=max(1, int(a.replica_cpus)))

    def direct_call() -> tuple[float, float]:
        t0 = time.perf_counter()
        rgb = images.decode(body)
        t1 = time.perf_counter()
        out = enhancer.enhance(rgb)
        t2 = time.perf_counter()
        images.encode(out, "png")
        return t2 - t1, time.perf_counter() - t0

    init_ray()
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}"
    rows = {}
    for name, batch_size in (("batched", 8), ("unbatched", 1)):
        args = AppArgs(model=model, max_batch_size=batch_size)
        dep = EnhanceService.options(name=f"Enhance{name}", num_replicas=1, autoscaling_config=None,
                                     max_ongoing_requests=32, max_queued_requests=256,
                                     ray_actor_options={"num_cpus": a.replica_cpus})
        serve.run(dep.bind(args.model_dump()), name=name, route_prefix=f"/{name}")
        url = f"{base}/{name}/v1/enhance"
        asyncio.run(run_load(url, body, 1, 5))  # warm-up
        seq, seq_codes, direct, direct_full, proxy, inside, steps = [], Counter(), [], [], [], [], {}
        with httpx.Client(timeout=120) as http:
            for _ in range(a.sequential):
                d, f = direct_call()
                direct.append(d)
                direct_full.append(f)
                t0 = time.perf_counter()
                r = http.post(url, content=body, headers={"Content-Type": "image/jpeg"})
                seq.append(time.perf_counter() - t0)
                seq_codes[r.status_code] += 1
                header = r.headers.get("server-timing", "total;dur=nan")
                timing = dict(m.strip().split(";dur=") for m in header.split(","))
                replica = float(timing["total"]) / 1000
                for step in ("body", "wait", "work"):
                    steps.setdefault(step, []).append(float(timing.get(step, "nan")) / 1000)
                proxy.append(seq[-1] - replica)
                inside.append(replica - f)
        lat, codes, wall = asyncio.run(run_load(url, body, a.clients, a.requests))
        rows[name] = (seq, seq_codes, lat, codes, wall, direct, direct_full, proxy, inside, steps)
        serve.delete(name)

    print(f"\n{a.size}x{a.size} JPEG in, PNG out; 1 replica of {a.replica_cpus:g} CPU; model {a.model}")
    for name, (seq, seq_codes, lat, codes, wall, direct, direct_full, proxy, inside, steps) in rows.items():
        seq_p50, p50_direct, p50_full = pct(seq, 50), pct(direct, 50), pct(direct_full, 50)
        print(f"[{name}] sequential ({a.sequential}, alternating): endpoint p50 {seq_p50:.1f} ms, direct "
              f"Enhancer p50 {p50_direct:.1f} ms (with decode+PNG encode {p50_full:.1f} ms) -> Serve overhead "
              f"{seq_p50 - p50_direct:.1f} ms vs Enhancer, {seq_p50 - p50_full:.1f} ms vs Enhancer+codec; "
              f"outside the replica (latency - Server-Timing) p50 {pct(proxy, 50):.1f} ms; codes {dict(seq_codes)}")
        print(f"[{name}] {a.clients} clients x {a.requests} requests: p50 {pct(lat, 50):.0f} ms, "
              f"p95 {pct(lat, 95):.0f} ms, p99 {pct(lat, 99):.0f} ms, {len(lat) / wall:.1f} req/s; "
              f"codes {dict(codes)}")
        added = float(np.median(np.asarray(seq) - np.asarray(direct_full))) * 1000.0
        print(f"[{name}] endpoint added p50 {added:.1f} ms over in-process decode+enhance+encode on one thread "
              f"(median of the {a.sequential} alternating pairs; issue 23 goal: <= 5 ms at 256x256): "
              f"outside the replica p50 {pct(proxy, 50):.1f} ms, inside it (Server-Timing - in-process) p50 "
              f"{pct(inside, 50):.1f} ms; the replica's Server-Timing p50: "
              + ", ".join(f"{step} {pct(values, 50):.1f} ms" for step, values in steps.items()))
    b, u = rows["batched"], rows["unbatched"]
    ratio = (len(b[2]) / b[4]) / (len(u[2]) / u[4])
    print(f"batched/unbatched throughput ratio {ratio:.2f}; "
          f"5xx other than 503: {sum(n for c, n in (b[3] + u[3] + b[1] + u[1]).items() if c >= 500 and c != 503)}")
    figures = {
        "model": a.model, "size": a.size, "replica_cpus": a.replica_cpus, "batched_over_unbatched": ratio,
        **{name: {"sequential_p50_ms": pct(r[0], 50), "direct_p50_ms": pct(r[5], 50),
                  "direct_codec_p50_ms": pct(r[6], 50),
                  "added_p50_ms": float(np.median(np.asarray(r[0]) - np.asarray(r[6]))) * 1000.0,
                  "outside_replica_p50_ms": pct(r[7], 50), "inside_replica_added_p50_ms": pct(r[8], 50),
                  "load_p50_ms": pct(r[2], 50), "load_p95_ms": pct(r[2], 95), "req_per_s": len(r[2]) / r[4],
                  "codes": {str(k): v for k, v in (r[3] + r[1]).items()}} for name, r in rows.items()}}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(figures, indent=2))
        print(f"figures: {a.json}")
    write_result('serve_latency', figures, params=vars(a))
    serve.shutdown()


if __name__ == "__main__":
    main()
