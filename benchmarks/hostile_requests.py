"""Cost of hostile requests to the online endpoint: peak replica memory and time.

    .venv/bin/python benchmarks/hostile_requests.py [--label after] [--width 8] [--size 7000]
        [--set max_pixels=50000000 ...]

Starts a local Ray + Serve on 127.0.0.1 with one replica of the real application and sends:
  1. ``one_png``: one small PNG (a smooth gradient, ~100-200 KB) that decodes to --size x --size
     8-bit RGB;
  2. ``six_16bit``: six such PNGs at once, 16-bit grayscale, each different;
  3. ``disconnect``: the --size PNG again with a 3 s client timeout (the client goes away), then a
     2000x2000 photo; how long the second one takes shows whether the first still holds the replica.
The replica's resident memory is sampled every 20 ms from /proc (its process title is
``ray::ServeReplica:skinray:EnhanceService``); ``peak_mb`` is the highest sample, ``base_mb`` the
value before the scenario. Prints one line per scenario and writes
``benchmarks/results/hostile_requests-LABEL-<time>-<pid>.json`` (``--out``: another folder).

Issue 23 (``--files``, ``--slow N``; ``--only-issue23`` skips 1-3):
  4. ``files``: small hostile files built here (a progressive JPEG of many scans, a TIFF of one
     strip per pixel, a PNG of one-byte IDATs, a zTXt bomb, animated PNG/WebP of many frames):
     status, seconds, the replica's CPU seconds and peak memory for each;
  5. ``slow``: N clients sending one byte every --slow-every seconds of a declared 1 MB body,
     and one normal client posting a 256x256 JPEG meanwhile: the slow ones' statuses and answer
     times, the normal client's p50/p95 against its idle p50, the status codes, and the replica's
     peak memory; ``--slow-reconnect``: each slow client comes back as soon as it is answered,
     for the whole --slow-seconds (else each sends one request).

The model is an untrained poster network of --width channels (default 8: compute is not what is
measured here, and the machine is shared); --model takes a checkpoint instead. ``--set`` passes
application arguments (e.g. ``max_pixels=50000000`` to admit the 49-Mpx image past the default).
Runs on whatever ``skinray`` is first on ``PYTHONPATH`` (so the same script measures an older tree).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from _results import write_result
from PIL import Image

TITLE = "ServeReplica:skinray:EnhanceService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica_pid() -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if TITLE.encode() in cmdline:
            return int(entry)
    raise RuntimeError("replica process not found")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    def __init__(self, pid: int):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()
        self.base = rss_mb(pid)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def gradient_png(size: int, seed: int, sixteen: bool = False) -> bytes:
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    if sixteen:
        arr = ((ramp[None, :] * 0.6 + ramp[:, None] * 0.3 + seed * 0.01) * 65535).clip(0, 65535).astype(np.uint16)
        img = Image.fromarray(arr)  # mode I;16
    else:
        arr = np.empty((size, size, 3), np.uint8)
        arr[..., 0] = (ramp[None, :] * 255).astype(np.uint8)
        arr[..., 1] = (ramp[:, None] * 255).astype(np.uint8)
        arr[..., 2] = (seed * 37) % 256
        img = Image.fromarray(arr)
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=9)
    return out.getvalue()


def photo_jpeg(size: int) -> bytes:
    from skinray import synth

    small = synth.skin_image(0, 1, 256)
    out = io.BytesIO()
    Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(out, format="JPEG", quality=90)
    return out.getvalue()


def post(url: str, body: bytes, content_type: str, timeout: float) -> dict:
    started = time.perf_counter()
    try:
        r = httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=timeout)
        code, detail = r.status_code, (r.json().get("error", "") if r.headers.get("content-type", "").startswith(
            "application/json") else "")
    except httpx.TimeoutException:
        code, detail = "client-timeout", ""
    return {"status": code, "seconds": round(time.perf_counter() - started, 2), "error": detail[:200]}


def replica_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def hostile_files() -> dict[str, tuple[bytes, str]]:
    """Small files hitting each structure limit (issue 23 items 2-3): name -> (bytes, type)."""
    import struct
    import zlib

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 64, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise[:8, :8]).save(out, format="JPEG", progressive=True)
    jpeg = out.getvalue()
    first, end = jpeg.index(b"\xff\xda"), jpeg.rindex(b"\xff\xd9")
    scans = jpeg[:first] + jpeg[first:end] * 4000 + b"\xff\xd9"  # ~40,000 scans
    n = 70_000  # a 1 x 70000 gray TIFF, one strip per row
    tags = [(256, 4, 1, 1), (257, 4, 1, n), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, n, 0),
            (277, 3, 1, 1), (278, 4, 1, 1), (279, 4, n, 0)]
    at = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", t, k, c, {273: at, 279: at + 4 * n}.get(t, v)) if k == 4 else
        struct.pack("<HHIHH", t, k, c, v, 0) for t, k, c, v in tags) + b"\0\0\0\0"
    tiff = (b"II*\x00" + struct.pack("<I", 8) + ifd + (at + 8 * n + np.arange(n, dtype="<u4")).astype("<u4").tobytes()
            + np.ones(n, "<u4").tobytes() + bytes(n))
    raw = zlib.compress(b"".join(b"\x00" + row.tobytes() for row in noise))
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    sig, iend = b"\x89PNG\r\n\x1a\n", _chunk(b"IEND", b"")
    chunks = sig + ihdr + b"".join(_chunk(b"IDAT", raw[i:i + 1]) for i in range(len(raw))) + iend
    ztxt = sig + ihdr + _chunk(b"zTXt", b"c\x00\x00" + zlib.compress(b"\0" * (64 << 20), 9)) + _chunk(
        b"IDAT", raw) + iend
    frames = [Image.fromarray(np.roll(noise, i, 0)) for i in range(300)]
    animated = {}
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
        animated[fmt] = buf.getvalue()
    return {"jpeg_40000_scans": (scans, "image/jpeg"), "tiff_70000_strips": (tiff, "image/tiff"),
            "png_one_byte_idats": (chunks, "image/png"), "png_ztxt_64mb": (ztxt, "image/png"),
            "apng_300_frames": (animated["PNG"], "image/png"), "webp_300_frames": (animated["WEBP"], "image/webp")}


def run_files(url: str, pid: int) -> dict:
    rows = {}
    for name, (body, content_type) in hostile_files().items():
        cpu = replica_cpu_s(pid)
        with Sampler(pid) as s:
            r = post(url, body, content_type, 120)
        rows[name] = {"body_kb": len(body) // 1024, **r, "replica_cpu_s": round(replica_cpu_s(pid) - cpu, 2),
                      "base_mb": round(s.base), "peak_mb": round(s.peak)}
    return rows


def _trickle(port: int, every_s: float, out: list, until: float = 0.0) -> None:
    """One slow client; with ``until`` (a time.monotonic()), it comes back each time it is
    answered, until then."""
    _trickle_once(port, every_s, out)
    while time.monotonic() < until:
        _trickle_once(port, every_s, out)


def _trickle_once(port: int, every_s: float, out: list) -> None:
    started = time.monotonic()
    reply = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
            sock.sendall(b"POST /v1/enhance HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 1000000\r\n\r\n")
            sock.settimeout(every_s)
            while b"\r\n\r\n" not in reply and time.monotonic() - started < 600:
                try:
                    sock.sendall(b"x")
                    reply += sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
    except OSError:
        pass
    status = reply.split(b" ", 2)[1].decode() if reply.count(b" ") >= 2 else "none"
    out.append((status, round(time.monotonic() - started, 1)))


def run_slow(url: str, port: int, pid: int, clients: int, every_s: float, seconds: float, again: bool) -> dict:
    body = photo_jpeg(256)
    idle = [post(url, body, "image/jpeg", 60)["seconds"] for _ in range(20)]
    slow: list = []
    until = time.monotonic() + seconds if again else 0.0
    threads = [threading.Thread(target=_trickle, args=(port, every_s, slow, until), daemon=True)
               for _ in range(clients)]
    with Sampler(pid) as sampler:
        for t in threads:
            t.start()
        normal, started = [], time.monotonic()
        while time.monotonic() - started < seconds:
            normal.append(post(url, body, "image/jpeg", 60))
            time.sleep(0.2)
        for t in threads:
            t.join(120)
    ok = [r["seconds"] for r in normal if r["status"] == 200]
    codes: dict = {}
    for r in normal:
        codes[str(r["status"])] = codes.get(str(r["status"]), 0) + 1
    slow_codes: dict = {}
    for status, _ in slow:
        slow_codes[status] = slow_codes.get(status, 0) + 1
    return {"clients": clients, "every_s": every_s, "idle_p50_s": round(float(np.median(idle)), 3),
            "normal_p50_s": round(float(np.percentile(ok, 50)), 3) if ok else None,
            "normal_p95_s": round(float(np.percentile(ok, 95)), 3) if ok else None, "normal_codes": codes,
            "slow_codes": slow_codes, "slow_answer_max_s": max((t for _, t in slow), default=None),
            "slow_reconnect": again, "replica_base_mb": round(sampler.base), "replica_peak_mb": round(sampler.peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="current")
    parser.add_argument("--model")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--size", type=int, default=7000)
    parser.add_argument("--concurrent", type=int, default=6)
    parser.add_argument("--set", action="append", default=[], metavar="ARG=VALUE")
    parser.add_argument("--out", help="folder for the JSON result (default benchmarks/results/)")
    parser.add_argument("--files", action="store_true", help="issue 23: the hostile files")
    parser.add_argument("--slow", type=int, default=0, help="issue 23: this many slow clients")
    parser.add_argument("--slow-every", type=float, default=5.0)
    parser.add_argument("--slow-seconds", type=float, default=60.0, help="how long the normal client runs")
    parser.add_argument("--slow-reconnect", action="store_true",
                        help="each slow client comes back as soon as it is answered, for --slow-seconds")
    parser.add_argument("--only-issue23", action="store_true", help="skip scenarios 1-3")
    args = parser.parse_args()

    import ray
    import torch
    from ray import serve

    import skinray
    from skinray import checkpoint
    from skinray.config import Config, ModelConfig
    from skinray.model import build_model
    from skinray.runtime import init_ray
    from skinray.serving import AppArgs, EnhanceService

    model = args.model
    if not model:
        torch.manual_seed(0)
        cfg = Config(model=ModelConfig(arch="poster", width=args.width))
        model = str(checkpoint.save(Path(tempfile.mkdtemp()) / "best", build_model(cfg.model), cfg, {"epoch": 0}))
    app_args = {"model": model}
    for item in args.set:
        key, _, value = item.partition("=")
        app_args[key] = json.loads(value) if value[:1] in "[{0123456789tfn-" else value
    app_args = AppArgs(**app_args).model_dump()

    bodies = {} if args.only_issue23 else {
        "one": gradient_png(args.size, 0),
        "sixteen": [gradient_png(args.size, i, sixteen=True) for i in range(args.concurrent)],
        "photo": photo_jpeg(2000)}
    init_ray()
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(EnhanceService.options(num_replicas=1, autoscaling_config=None).bind(app_args),
              name="skinray", route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1/enhance"
    pid = replica_pid()
    print(f"[bench] skinray from {Path(skinray.__file__).parent}, replica pid {pid}, args {app_args}", flush=True)
    warm = post(url, photo_jpeg(256), "image/jpeg", 120)
    assert warm["status"] == 200, warm
    results: dict = {}
    if args.files:
        results["files"] = run_files(url, pid)
    if args.slow:
        results["slow"] = run_slow(url, port, pid, args.slow, args.slow_every, args.slow_seconds, args.slow_reconnect)
    if not args.only_issue23:
        classic(url, pid, args, bodies, results)
    serve.shutdown()
    ray.shutdown()
    report(args, skinray, model, app_args, results)


def classic(url: str, pid: int, args, bodies: dict, results: dict) -> None:
    """Scenarios 1-3 (issue 15)."""
    with Sampler(pid) as s:
        r = post(url, bodies["one"], "image/png", 900)
    results["one_png"] = {"body_kb": len(bodies["one"]) // 1024, **r, "base_mb": round(s.base),
                          "peak_mb": round(s.peak)}

    out: list = [None] * args.concurrent
    with Sampler(pid) as s:
        started = time.perf_counter()
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, post(url, bodies["sixteen"][i],
                                                                              "image/png", 1800)))
                   for i in range(args.concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    results["six_16bit"] = {"body_kb": [len(b) // 1024 for b in bodies["sixteen"]],
                            "statuses": [o["status"] for o in out], "seconds": [o["seconds"] for o in out],
                            "errors": sorted({o["error"] for o in out if o["error"]}),
                            "wall_s": round(wall, 2), "base_mb": round(s.base), "peak_mb": round(s.peak)}

    alone = post(url, bodies["photo"], "image/jpeg", 900)
    with Sampler(pid) as s:
        gone = post(url, bodies["one"], "image/png", 3)
        after = post(url, bodies["photo"], "image/jpeg", 900)
    results["disconnect"] = {"big_with_3s_client_timeout": gone, "photo_2000_alone_s": alone["seconds"],
                             "photo_2000_after_s": after["seconds"], "photo_status": after["status"],
                             "base_mb": round(s.base), "peak_mb": round(s.peak)}


def report(args, skinray, model: str, app_args: dict, results: dict) -> None:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(skinray.__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    report = {"label": args.label, "skinray": str(Path(skinray.__file__).parent), "commit": commit,
              "model": model, "width": args.width, "size": args.size, "app_args": app_args,
              "cpus": os.cpu_count(), "results": results}
    for name, row in results.items():
        print(f"[bench] {args.label} {name}: {json.dumps(row)}", flush=True)
    write_result(f"hostile_requests-{args.label}", report, params=vars(args), out_dir=args.out)


if __name__ == "__main__":
    main()
