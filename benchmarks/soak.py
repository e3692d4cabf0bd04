"""Soak of the online endpoint: many requests, good and bad bodies mixed; 5xx and replica memory.

    .venv/bin/python benchmarks/soak.py [--requests 5000] [--clients 16] [--json PATH]
        [--model CHECKPOINT] [--url http://HOST:PORT/v1/enhance --pid PID]

Starts a local Ray + Serve on 127.0.0.1 with one replica of the real application (an untrained
8-channel network unless --model; compute is not what is measured) and sends ``--requests``
POST /v1/enhance from ``--clients`` threads, cycling through the bodies of :func:`bodies`: valid
JPEG and PNG, a truncated JPEG, bytes that are no image, a wrong Content-Type, a body over
``max_body_bytes``, a PNG declaring 40000x40000 pixels, an empty body. Each kind has the status
it must get (200, 400, 413, 415); ``wrong`` counts answers other than that, ``5xx`` the server
errors (goal 0), ``client_errors`` requests that got no answer at all.

The replica's resident memory (VmRSS from /proc, its pid from Ray's state API) is read after a
warm-up (the first ``--warmup`` requests, default 10%) and at the end; ``growth`` is end/warm - 1
(goal: within 10%). Prints a summary and writes it as JSON under benchmarks/results/ (and to
--json PATH if given). With --url and --pid it
soaks an endpoint already running (e.g. ``skinray serve``) instead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

MAX_BODY_BYTES = 300_000  # the soak app's limit: the "oversized" body is just above it


def _png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


def _bomb_png(side: int = 40000) -> bytes:
    """A PNG whose header declares side x side pixels, with almost no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def bodies(max_body_bytes: int = MAX_BODY_BYTES) -> list[tuple[str, bytes, str, int]]:
    """(kind, body, Content-Type, expected status) for each kind of request in the soak."""
    from skinray import synth

    photo = synth.skin_image(0, 1, 64)
    jpeg = io.BytesIO()
    Image.fromarray(photo).save(jpeg, format="JPEG", quality=90)
    jpeg = jpeg.getvalue()
    rng = np.random.default_rng(0)
    return [
        ("jpeg", jpeg, "image/jpeg", 200),
        ("png", _png(synth.skin_image(0, 2, 48)), "image/png", 200),
        ("truncated", jpeg[: len(jpeg) // 3], "image/jpeg", 400),
        ("not-image", b"this is not an image, just some text\n" * 20, "image/jpeg", 400),
        ("wrong-type", jpeg, "text/plain", 415),
        (
            "oversized",
            rng.integers(0, 256, max_body_bytes + 1000, dtype=np.uint8).tobytes(),
            "image/png",
            413,
        ),
        ("bomb", _bomb_png(), "image/png", 413),
        ("empty", b"", "image/jpeg", 400),
    ]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def replica_pid(app: str) -> int:
    """The pid of the one live replica of ``app`` (Ray's state API of this Ray instance)."""
    from ray.util.state import list_actors

    title = f"ServeReplica:{app}:"
    found = [
        a.pid
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=10000)
        if (a.class_name or "").startswith(title)
    ]
    if len(found) != 1:
        raise RuntimeError(f"expected one live replica of {app!r}, found pids {found}")
    return found[0]


def soak(
    url: str,
    pid: int,
    requests: int = 5000,
    clients: int = 16,
    warmup: int | None = None,
    headers: dict | None = None,
    kinds: list | None = None,
    timeout: float = 120.0,
) -> dict:
    """Send ``requests`` to ``url`` (…/v1/enhance) from ``clients`` threads; return the summary."""
    kinds = kinds or bodies()
    warmup = min(requests, requests // 10 if warmup is None else warmup)
    lock = threading.Lock()
    sent = [0]
    codes: Counter = Counter()
    wrong: Counter = Counter()
    client_errors: Counter = Counter()
    memory: dict = {}
    warm_event = threading.Event()
    latencies: list[float] = []

    def next_index() -> int | None:
        with lock:
            if sent[0] >= requests:
                return None
            sent[0] += 1
            return sent[0] - 1

    def worker() -> None:
        with httpx.Client(timeout=timeout, headers=headers or {}) as http:
            while (i := next_index()) is not None:
                if i >= warmup:
                    warm_event.wait()  # memory is read once every warm-up request is answered
                kind, body, ctype, expected = kinds[i % len(kinds)]
                started = time.perf_counter()
                try:
                    r = http.post(url, content=body, headers={"Content-Type": ctype})
                    code = r.status_code
                except httpx.HTTPError as exc:
                    with lock:
                        client_errors[f"{kind}: {type(exc).__name__}"] += 1
                    code = None
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if code is not None:
                        codes[code] += 1
                        if code != expected:
                            wrong[f"{kind}: {code} (expected {expected})"] += 1
                    done = sum(codes.values()) + sum(client_errors.values())
                    if done == warmup and not warm_event.is_set():
                        memory["warm_mb"] = rss_mb(pid)
                        warm_event.set()

    if warmup == 0:
        memory["warm_mb"] = rss_mb(pid)
        warm_event.set()
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    end_mb = rss_mb(pid)
    lat = sorted(latencies)
    warm_mb = memory.get("warm_mb", end_mb)
    return {
        "requests": requests,
        "clients": clients,
        "warmup": warmup,
        "seconds": round(wall, 1),
        "requests_per_s": round(requests / wall, 1),
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "5xx": sum(v for k, v in codes.items() if k >= 500),
        "wrong": dict(wrong),
        "client_errors": dict(client_errors),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None,
        "replica_pid": pid,
        "rss_warm_mb": round(warm_mb, 1),
        "rss_end_mb": round(end_mb, 1),
        "growth": round(end_mb / warm_mb - 1, 4),
    }


def start_endpoint(model: str | None, app: str = "soak") -> tuple[str, int]:
    """A local Ray + Serve with one replica of the real application; (URL of /v1/enhance, pid)."""
    import torch
    from ray import serve

    from skinray import checkpoint
    from skinray.config import Config, ModelConfig
    from skinray.model import build_model
    from skinray.runtime import init_ray
    from skinray.serving import AppArgs, EnhanceService

    if not model:
        torch.manual_seed(0)
        cfg = Config(model=ModelConfig(width=8))
        model = str(
            checkpoint.save(
                Path(tempfile.mkdtemp(prefix="skinray-soak-")) / "best",
                build_model(cfg.model),
                cfg,
                {"epoch": 0},
            )
        )
    init_ray()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = AppArgs(model=model, max_body_bytes=MAX_BODY_BYTES)
    serve.run(
        EnhanceService.options(num_replicas=1, autoscaling_config=None).bind(args.model_dump()),
        name=app,
        route_prefix="/",
    )
    return f"http://127.0.0.1:{port}/v1/enhance", replica_pid(app)


def line(s: dict) -> str:
    return (
        f"{s['requests']} requests from {s['clients']} clients in {s['seconds']}s "
        f"({s['requests_per_s']} req/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms): codes {s['codes']}, "
        f"5xx {s['5xx']}, wrong {sum(s['wrong'].values())}, no answer {sum(s['client_errors'].values())}; "
        f"replica RSS {s['rss_warm_mb']} MB after {s['warmup']} warm-up requests -> {s['rss_end_mb']} MB "
        f"at the end ({s['growth']:+.1%})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--warmup", type=int, help="requests before the first memory reading (default 10%%)"
    )
    parser.add_argument(
        "--model", help="checkpoint to serve (default: an untrained 8-channel network)"
    )
    parser.add_argument(
        "--url", help="soak this running endpoint's /v1/enhance instead of starting one"
    )
    parser.add_argument("--pid", type=int, help="with --url: the replica's pid")
    parser.add_argument("--api-key", default=os.environ.get("SKINRAY_API_KEY"))
    parser.add_argument("--json", help="write the summary here")
    a = parser.parse_args()
    if a.url and not a.pid:
        parser.error("--url needs --pid (the replica process whose memory is read)")
    headers = {"Authorization": f"Bearer {a.api_key}"} if a.api_key else {}
    url, pid = (a.url, a.pid) if a.url else start_endpoint(a.model)
    summary = soak(url, pid, a.requests, a.clients, a.warmup, headers)
    summary["cpus"] = os.cpu_count()
    print(f"[soak] {line(summary)}", flush=True)
    if summary["wrong"] or summary["client_errors"]:
        print(
            f"[soak] unexpected answers: {summary['wrong']} {summary['client_errors']}", flush=True
        )
    from _results import (
        write_result,  # benchmarks/_results.py: benchmarks/results/soak-<time>-<pid>.json
    )

    result = write_result(
        "soak",
        summary,
        params={
            "requests": a.requests,
            "clients": a.clients,
            "model": a.model or "untrained, width 8",
            "url": a.url,
        },
    )
    print(f"[soak] result: {result}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(summary, indent=2))
        print(f"[soak] wrote {a.json}")
    if not a.url:
        from ray import serve

        serve.shutdown()
    return 1 if summary["5xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
