"""The online endpoint on a real Serve instance over HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from skinray import checkpoint, images, synth
from skinray.config import Config, ModelConfig
from skinray.model import build_model
from skinray.predict import Enhancer

pytestmark = pytest.mark.integration
API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def endpoint(ray_local, tmp_path_factory, free_port):
    import torch
    from ray import serve

    from serve.app import AppArgs, EnhanceService

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(width=8))
    model_dir = checkpoint.save(tmp_path_factory.mktemp("m") / "best", build_model(cfg.model), cfg, {"epoch": 3})
    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text(API_KEY + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # Archive jobs may use the session's temporary folders; overwrite only under 'writable*'.
    base = tmp_path_factory.getbasetemp()
    args = AppArgs(model=str(model_dir), max_body_bytes=2_000_000, max_pixels=4_000_000, api_key_file=str(key_file),
                   body_timeout_s=5, max_inflight_bytes=4_000_000,  # issue 23: slow bodies, bytes held
                   max_batch_size=8,  # exercise request batching (the CPU default is 1)
                   batch_roots=[str(base)], batch_writable_roots=[str(tmp_path_factory.mktemp("writable"))])
    # One replica (not the 1-4 autoscaling of serve/config.yaml): the session's local Ray has 4
    # logical CPUs, and the archive-job test needs some of them for Ray Data.
    serve.run(EnhanceService.options(num_replicas=1, autoscaling_config=None).bind(args.model_dump()),
              name="skinray", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client, model_dir
    serve.shutdown()


def _jpeg(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_enhance_returns_same_size_png_from_the_one_predictor(endpoint):
    client, model_dir = endpoint
    photo = synth.skin_image(0, 3, 72)[:, :50]
    body = _jpeg(photo)
    r = client.post("/v1/enhance", content=body, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-model-id"]
    timing = r.headers["server-timing"]  # the total first, then the steps (docs/endpoint.md)
    assert timing.startswith("total;dur=") and all(f"{step};dur=" in timing for step in ("body", "wait", "work"))
    out = images.decode(r.content)
    expected = Enhancer.from_checkpoint(str(model_dir), device="cpu").enhance(images.decode(body))
    assert out.shape == (72, 50, 3)
    np.testing.assert_array_equal(out, expected)


def test_jpeg_by_accept_or_query(endpoint):
    client, _ = endpoint
    body = _jpeg(synth.skin_image(0, 4, 40))
    for kwargs in ({"headers": {"Accept": "image/jpeg", "Content-Type": "image/jpeg"}},
                   {"params": {"format": "jpeg"}, "headers": {"Content-Type": "image/jpeg"}}):
        r = client.post("/v1/enhance", content=body, **kwargs)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_enhance_says_the_verdict_and_change_and_assess_returns_them_as_json(endpoint):
    """X-Skinray-Verdict / X-Skinray-Change on /v1/enhance and POST /v1/assess: the assessment of
    the photo (skinray/assess.py) from the replica's one Enhancer, over real HTTP."""
    from skinray.assess import assess

    client, model_dir = endpoint
    body = _jpeg(synth.skin_image(0, 4, 96))
    r = client.post("/v1/enhance", content=body, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    photo = images.decode(body)
    fix = Enhancer.from_checkpoint(str(model_dir), device="cpu").corrections([photo])[0]  # None for some models
    expected = assess(photo, images.decode(r.content), fix)
    assert r.headers["x-skinray-verdict"] == expected.verdict_header()
    assert r.headers["x-skinray-change"] == expected.change_header() and "kelvin=" in expected.change_header()
    j = client.post("/v1/assess", content=body, headers={"Content-Type": "image/jpeg"})
    assert j.status_code == 200 and j.headers["content-type"] == "application/json", j.text
    got = j.json()
    assert got["verdict"] == expected.verdict and got["reasons"] == list(expected.reasons)
    assert got["change_mean"] == pytest.approx(expected.change_mean) and got["model_id"] == r.headers["x-model-id"]
    assert j.headers["x-skinray-verdict"] == r.headers["x-skinray-verdict"]

    tiny = client.post("/v1/assess", content=_jpeg(synth.skin_image(0, 4, 40)), headers={"Content-Type": "image/jpeg"})
    assert tiny.status_code == 200 and tiny.json()["reasons"] == ["too-small"]
    # /v1/enhance's key, limits and status codes
    assert httpx.post(str(client.base_url) + "/v1/assess", content=body,
                      headers={"Content-Type": "image/jpeg"}).status_code == 401
    assert client.post("/v1/assess", content=b"", headers={"Content-Type": "image/jpeg"}).status_code == 400
    assert client.post("/v1/assess", content=body, headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/v1/assess", content=_bomb(), headers={"Content-Type": "image/png"}).status_code == 413


def test_concurrent_requests_all_succeed(endpoint):
    client, _ = endpoint
    bodies = [_jpeg(synth.skin_image(1, i, 32 + 8 * (i % 2))) for i in range(12)]
    codes = []

    def send(body):
        codes.append(client.post("/v1/enhance", content=body, headers={"Content-Type": "image/jpeg"}).status_code)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 12


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("L", (3000, 3000)).save(out, format="PNG")
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with almost no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


def _ico_embedding(png: bytes) -> bytes:
    import struct

    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png


@pytest.mark.parametrize("case, status", [
    ({"content": b"", "headers": {"Content-Type": "image/jpeg"}}, 400),
    ({"content": b"not an image", "headers": {"Content-Type": "image/jpeg"}}, 400),
    ({"content": b"GIF89a", "headers": {"Content-Type": "image/gif"}}, 415),
    ({"content": b"x" * 2_100_000, "headers": {"Content-Type": "image/png"}}, 413),
    ({"content": (b"x" * 100_000 for _ in range(30)), "headers": {"Content-Type": "image/png"}}, 413),
    ({"content": _bomb(), "headers": {"Content-Type": "image/png"}}, 413),
    ({"content": b"x", "params": {"format": "gif"}, "headers": {"Content-Type": "image/png"}}, 422),
])
def test_bad_requests_get_a_json_4xx(endpoint, case, status):
    client, _ = endpoint
    r = client.post("/v1/enhance", **case)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_routes_and_auth(endpoint):
    client, _ = endpoint
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json()["status"] == "ready"
    info = client.get("/v1/model").json()
    assert info["metrics"]["epoch"] == 3 and info["config"]["model"]["width"] == 8
    assert client.get("/no/such/route").status_code == 404
    bare = httpx.Client(base_url=str(client.base_url), timeout=30)
    assert bare.get("/healthz").status_code == 200, "health stays open"
    r = bare.post("/v1/enhance", content=_jpeg(synth.skin_image(0, 1, 32)), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 401 and r.json()["error"]
    assert bare.get("/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_multipart_file_field(endpoint):
    client, model_dir = endpoint
    body = _jpeg(synth.skin_image(0, 5, 48))
    r = client.post("/v1/enhance", files={"file": ("photo.jpg", body, "image/jpeg")})
    assert r.status_code == 200, r.text
    expected = Enhancer.from_checkpoint(str(model_dir), device="cpu").enhance(images.decode(body))
    np.testing.assert_array_equal(images.decode(r.content), expected)
    r = client.post("/v1/enhance", files={"photo": ("photo.jpg", body, "image/jpeg")})
    assert r.status_code == 400 and "'file'" in r.json()["error"]
    r = client.post("/v1/enhance", files={"file": ("a.gif", b"GIF89a", "image/gif")})
    assert r.status_code == 415, r.text
    r = client.post("/v1/enhance", files={"file": ("a.jpg", b"nope", "image/jpeg")})
    assert r.status_code == 400 and r.json()["error"]


def test_page_is_served_without_a_key(endpoint):
    client, _ = endpoint
    r = httpx.get(str(client.base_url) + "/", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'type="file"' in r.text and "v1/enhance" in r.text


def _wait_job(client, job_id: str, timeout: float = 300.0) -> dict:  # ~20 s idle; 8x on a loaded 2-core box
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/v1/batch/{job_id}").json()
        if state["state"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return state
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {state}")


def test_batch_job_from_the_endpoint(endpoint, tmp_path):
    client, _ = endpoint
    src = tmp_path / "in"
    synth.write_dataset(str(src), count=6, size=48, seed=3)
    (src / "notes.jpg").write_bytes(b"not a photo")
    (src / "bomb.png").write_bytes(_png_header_only(40_000, 40_000))  # issue 12: 413's reason, as a row
    r = client.post("/v1/batch", json={"input": str(src), "output": str(tmp_path / "out"), "format": "png"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("PENDING", "RUNNING") and r.headers["location"] == f"/v1/batch/{job['id']}"
    state = _wait_job(client, job["id"])
    assert state["state"] == "SUCCEEDED", state
    assert state["total"] == 8 and state["done"] == 6 and state["failed"] == 2
    assert Path(state["manifest_uri"]).is_file()
    import pyarrow.parquet as pq

    rows = {r["key"]: r for r in pq.read_table(state["manifest_uri"]).to_pylist()}
    assert rows["bomb.png"]["status"] == "failed"
    assert "1600000000 pixels exceeds the limit" in rows["bomb.png"]["reason"], rows["bomb.png"]
    assert len(list((tmp_path / "out").glob("*.png"))) == 6
    assert any(j["id"] == job["id"] for j in client.get("/v1/batch").json()["jobs"])
    # A Ray Job like any other (ray job list, the dashboard), tagged as this endpoint's.
    import ray
    from ray.job_submission import JobSubmissionClient

    info = JobSubmissionClient(ray.get_runtime_context().gcs_address).get_job_info(job["id"])
    assert info.status == "SUCCEEDED" and info.metadata["skinray"] == "skinray-batch"
    assert "jobs/enhance.py" in info.entrypoint and "--batch-roots" in info.entrypoint

    # A job whose input does not exist fails with a reason; the endpoint stays up.
    r = client.post("/v1/batch", json={"input": str(tmp_path / "missing"), "output": str(tmp_path / "o2")})
    state = _wait_job(client, r.json()["id"])
    assert state["state"] == "FAILED" and "missing" in state["error"]


def test_batch_job_reports_progress_as_it_goes_and_stops_on_delete(endpoint, tmp_path):
    """Issue 12: jobs are Ray Jobs; progress comes from the job's own report while it runs;
    DELETE stops it; only this endpoint's jobs are listed."""
    import ray
    from ray.job_submission import JobSubmissionClient

    client, _ = endpoint
    synth.write_dataset(str(tmp_path / "in"), count=200, size=64, seed=5)
    r = client.post("/v1/batch", json={"input": str(tmp_path / "in"), "output": str(tmp_path / "out"),
                                       "format": "png", "batch_size": 1})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline, state = time.time() + 180, {}
    while time.time() < deadline:  # the report gives the total before anything is done
        state = client.get(f"/v1/batch/{job_id}").json()
        if state["total"] is not None or state["state"] not in ("PENDING", "RUNNING"):
            break
        time.sleep(0.5)
    assert state["state"] == "RUNNING" and state["total"] == 200 and state["done"] < 200, state
    assert (tmp_path / "out" / "_skinray" / "progress.json").is_file()
    r = client.delete(f"/v1/batch/{job_id}")
    assert r.status_code == 202, r.text
    state = _wait_job(client, job_id, timeout=60)
    assert state["state"] == "STOPPED" and state["done"] < 200, state
    assert client.delete(f"/v1/batch/{job_id}").status_code == 409
    # Another Ray job on the same cluster is neither listed nor reachable here.
    jobs = JobSubmissionClient(ray.get_runtime_context().gcs_address)
    other = jobs.submit_job(entrypoint="true", metadata={"skinray": "skinray-batch", "app": "another-app"})
    listed = [j["id"] for j in client.get("/v1/batch").json()["jobs"]]
    assert job_id in listed and other not in listed
    assert client.get(f"/v1/batch/{other}").status_code == 404
    assert client.delete(f"/v1/batch/{other}").status_code == 404


@pytest.mark.parametrize("body, status", [
    ({"input": "a"}, 422),  # no output
    ({"input": "a", "output": "b", "colour": "yes"}, 422),  # unknown option
    ({"input": "a", "output": "b", "format": "gif"}, 422),
    ({"input": "a", "output": "b", "workers": 0}, 422),
    ({"input": "a", "output": "b", "max_pixels": 10**12}, 422),  # cannot lift the bomb guard
])
def test_bad_batch_requests(endpoint, body, status):
    client, _ = endpoint
    r = client.post("/v1/batch", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_batch_needs_the_key_and_unknown_ids_are_404(endpoint):
    client, _ = endpoint
    assert client.get("/v1/batch/0123456789abcdef").status_code == 404
    assert client.delete("/v1/batch/0123456789abcdef").status_code == 404
    bare = httpx.Client(base_url=str(client.base_url), timeout=30)
    assert bare.post("/v1/batch", json={"input": "a", "output": "b"}).status_code == 401
    assert bare.post("/v1/batch", content=b"{not json").status_code == 401  # the key is checked first
    assert client.post("/v1/batch", content=b"{not json").status_code == 422
    assert client.post("/v1/batch", content=b"x" * 70_000).status_code == 413


def test_overload_is_503_with_retry_after(endpoint):
    """A deployment that holds one request at a time and queues one: a burst of 24 gets 503s
    with Retry-After for the excess, 200s for the rest, and nothing else."""
    from ray import serve

    from serve.app import AppArgs, EnhanceService

    client, model_dir = endpoint
    small = EnhanceService.options(name="Small", num_replicas=1, autoscaling_config=None,
                                   max_ongoing_requests=1, max_queued_requests=1)
    serve.run(small.bind(AppArgs(model=str(model_dir)).model_dump()), name="small", route_prefix="/small")
    body = _jpeg(synth.skin_image(0, 2, 384))
    results = []

    def send():
        r = httpx.post(str(client.base_url) + "/small/v1/enhance", content=body,
                       headers={"Content-Type": "image/jpeg"}, timeout=120)
        results.append((r.status_code, r.headers.get("retry-after")))

    threads = [threading.Thread(target=send) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    serve.delete("small")
    codes = sorted(code for code, _ in results)
    assert set(codes) <= {200, 503}, codes
    assert 200 in codes and 503 in codes, codes
    assert all(after is not None and int(after) >= 1 for code, after in results if code == 503)


def test_killed_replica_is_replaced(endpoint):
    """Kill the replica's actor (ray.kill: its worker process exits at once) during a stream of
    requests; Serve starts a new one and requests succeed again within seconds."""
    import ray

    client, _ = endpoint
    body = _jpeg(synth.skin_image(0, 6, 40))
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if "EnhanceService" in a["name"] and "skinray" in a["name"]]
    assert len(replicas) == 1, replicas
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    killed_at, recovered_at, codes = time.time(), None, []
    while time.time() - killed_at < 90:
        try:
            code = client.post("/v1/enhance", content=body, headers={"Content-Type": "image/jpeg"}).status_code
        except httpx.HTTPError:
            code = -1
        codes.append(code)
        if code == 200 and len(codes) > 1:
            recovered_at = time.time()
            break
        time.sleep(0.25)
    assert recovered_at is not None, f"no success within 90 s of the kill: {codes[-10:]}"
    print(f"replica replaced; first success {recovered_at - killed_at:.1f}s after the kill, codes {set(codes)}")
    for _ in range(5):
        assert client.post("/v1/enhance", content=body, headers={"Content-Type": "image/jpeg"}).status_code == 200
    now = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
           if "EnhanceService" in a["name"] and "skinray" in a["name"]]
    assert len(now) == 1 and now[0] != replicas[0]["name"], (replicas[0]["name"], now)


def _chromium():
    """(chromium, chromedriver) paths; skip, saying what is missing, without them (.ci/run installs them)."""
    paths = ("/usr/bin/chromium", "/usr/bin/chromedriver")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        pytest.skip(f"headless browser test needs Debian's chromium and chromium-driver (missing {missing}): "
                    f"apt-get install -y chromium chromium-driver (.ci/run does it as root)")
    return paths


def test_page_in_a_real_browser(endpoint, tmp_path):
    """Headless Chromium: pick a photo on the page, the enhanced image appears beside the
    original, and the download link holds the model's output."""
    import base64

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser_path, driver_path = _chromium()
    client, model_dir = endpoint
    photo = synth.skin_image(2, 1, 64)[:, :56]
    path = tmp_path / "mole photo.jpg"
    path.write_bytes(_jpeg(photo))
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(str(client.base_url) + "/")
        driver.find_element(By.ID, "key").send_keys(API_KEY)
        driver.find_element(By.ID, "file").send_keys(str(path))
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "const i = document.getElementById('enhanced'); return i.complete && i.naturalWidth > 0"))
        assert driver.execute_script("return document.getElementById('enhanced').naturalWidth") == 56
        assert driver.execute_script("return document.getElementById('original').naturalHeight") == 64
        assert "Enhanced in" in driver.find_element(By.ID, "status").text
        # the triage beside the before / after: a 64 px photo is a retake (too-small), with the change
        assert driver.find_element(By.ID, "triage").is_displayed()
        assert driver.find_element(By.ID, "verdict").text.startswith("Retake")
        assert driver.find_element(By.ID, "reasons").text == "(too-small)"
        assert "ΔE00" in driver.find_element(By.ID, "change").text
        link = driver.find_element(By.ID, "download")
        assert link.is_displayed() and link.get_attribute("download") == "mole photo-enhanced.png"
        encoded = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(document.getElementById('download').href).then(r => r.arrayBuffer()).then(b => {"
            "  let s = ''; new Uint8Array(b).forEach(c => s += String.fromCharCode(c)); done(btoa(s)); });")
        expected = Enhancer.from_checkpoint(str(model_dir), device="cpu").enhance(images.decode(path.read_bytes()))
        np.testing.assert_array_equal(images.decode(base64.b64decode(encoded)), expected)

        # A file that is not an image: the page shows the server's reason, no enhanced image.
        bad = tmp_path / "notes.jpg"
        bad.write_bytes(b"not an image")
        driver.find_element(By.ID, "file").send_keys(str(bad))
        WebDriverWait(driver, 30).until(
            lambda d: "Not enhanced" in d.find_element(By.ID, "status").text)
        assert "cannot use this image" in driver.find_element(By.ID, "status").text
    finally:
        driver.quit()


def test_skinray_serve_command(endpoint, free_port, tmp_path):
    """`skinray serve --model M --port P` on its own local Ray: answers, then stops on SIGTERM."""
    _, model_dir = endpoint
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.pop("SKINRAY_API_KEY", None)
    env["SKINRAY_LOG_DIR"] = str(tmp_path / "logs")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "skinray"), "serve", "--model", str(model_dir),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        # Ready when it says so (it prints the URL once the app is up and its signal handling set).
        deadline = time.time() + 150
        while time.time() < deadline and proc.poll() is None and not any("[skinray] serving" in x for x in lines):
            time.sleep(0.5)
        ready = f"http://127.0.0.1:{port}/ (CPU per replica"
        assert any(ready in x for x in lines), f"not ready: {proc.poll()} {lines[-20:]}"
        # Quiet like the other commands: a few lines of its own, Serve's start-up in the log file.
        assert len([x for x in lines if "[skinray] serving" not in x]) < 10, lines
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 200
        r = httpx.post(f"http://127.0.0.1:{port}/v1/enhance", content=_jpeg(synth.skin_image(0, 7, 40)),
                       headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert r.status_code == 200 and images.decode(r.content).shape == (40, 40, 3)
    finally:
        proc.send_signal(signal.SIGTERM)  # as systemd or Kubernetes stop it; Ctrl-C takes the same path
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert "[skinray] stopping the endpoint" in out
    assert all(line.startswith("[skinray] ") for line in out.splitlines()), out[-3000:]
    assert re.search(r"^\[skinray\] Ray dashboard and its Jobs API \(the archive jobs\): http://127\.0\.0\.1:\d+$",
                     out, re.M), out
    log = next((tmp_path / "logs").glob("skinray-serve-*.log")).read_text()
    assert "ServeController" in log and "Application 'skinray'" in log, log[-3000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_skinray_serve_refuses_a_bad_model(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent / "skinray"), "serve", "--model", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a skinray checkpoint" in r.stderr


# --- hostile requests (issue 15; issue 12 "closed by default" and "bombs get 413") --------------

@pytest.mark.parametrize("body, status, words", [
    (lambda: _png_header_only(40_000, 40_000), 413, "1600000000 pixels exceeds the limit"),  # issue 12
    (lambda: _png_header_only(3000, 3000), 413, "9000000 pixels exceeds the limit of 4000000"),
    (lambda: _ico_embedding(_png(np.zeros((300, 300, 3), np.uint8))), 415, "ICO is not a supported"),  # case 9
    (lambda: b"GIF89a" + b"\x00" * 40, 415, "GIF is not a supported"),
])
def test_hostile_pixels_are_refused_from_the_header(endpoint, body, status, words):
    client, _ = endpoint
    for content_type in ("image/png", "application/octet-stream"):
        r = client.post("/v1/enhance", content=body(), headers={"Content-Type": content_type})
        assert r.status_code == status and words in r.json()["error"], (content_type, r.text)


def test_content_type_must_match_the_real_format(endpoint):
    """Case 9: any format Pillow opens was accepted, whatever the Content-Type said."""
    client, _ = endpoint
    png = _png(synth.skin_image(0, 8, 40))
    r = client.post("/v1/enhance", content=png, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "is a PNG image but its Content-Type says image/jpeg" in r.json()["error"]
    r = client.post("/v1/enhance", files={"file": ("a.webp", png, "image/webp")})
    assert r.status_code == 415, r.text
    bmp = io.BytesIO()
    Image.fromarray(synth.skin_image(0, 8, 40)).save(bmp, format="BMP")
    r = client.post("/v1/enhance", content=bmp.getvalue(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 415 and "BMP" in r.json()["error"], "only the README's formats on the endpoint"
    for content_type in ("image/png", "application/octet-stream"):
        assert client.post("/v1/enhance", content=png, headers={"Content-Type": content_type}).status_code == 200


def test_http_hygiene(endpoint):
    """Case 10: /openapi.json without the key, a redirect built from the Host header, and the
    lowercase bearer scheme."""
    client, _ = endpoint
    base = str(client.base_url)
    assert httpx.get(base + "/openapi.json", timeout=30).status_code == 401
    r = client.get("/openapi.json")
    assert r.status_code == 200 and "/v1/enhance" in r.json()["paths"]
    for path in ("/docs", "/redoc"):
        assert httpx.get(base + path, timeout=30).status_code == 404
    for path in ("/v1/batch/", "/v1/model/", "/healthz/"):
        r = httpx.get(base + path, headers={"Host": "evil.example"}, timeout=30, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers, (path, r.status_code, r.headers)
    for scheme in ("bearer", "BEARER", "Bearer"):
        r = httpx.get(base + "/v1/model", headers={"Authorization": f"{scheme} {API_KEY}"}, timeout=30)
        assert r.status_code == 200, scheme
    assert httpx.get(base + "/v1/model", headers={"Authorization": f"Basic {API_KEY}"},
                     timeout=30).status_code == 401


def test_batch_paths_cannot_escape_the_roots(endpoint, tmp_path, tmp_path_factory):
    """Cases 1 and 2: '?' and '#' dropped by storage but not by the roots check; symlinks out of
    the root. Every one is 403 and nothing outside is read or written."""
    client, _ = endpoint
    root = tmp_path
    outside = Path(tmp_path_factory.getbasetemp()).parent / f"outside-{os.getpid()}"
    (outside / "in").mkdir(parents=True, exist_ok=True)
    (outside / "out").mkdir(exist_ok=True)
    (outside / "victim.txt").write_text("victim")
    (outside / "photo.jpg").write_bytes(_jpeg(synth.skin_image(0, 9, 40)))
    synth.write_dataset(str(root / "photos"), 2, size=32)
    (root / "link_in").symlink_to(outside / "in")
    (root / "link_out").symlink_to(outside / "out")
    climb = "/".join([".."] * (len(outside.parts) + 2))
    hostile = [
        {"input": str(root / "photos"), "output": f"file://{outside}/victim.txt#/{climb}{root}/out"},
        {"input": f"file:///etc?/{climb}{root}/x", "output": str(root / "out")},
        {"input": f"file://{outside}/photo.jpg?/{climb}{root}/x", "output": str(root / "out")},
        {"input": str(root / "link_in"), "output": str(root / "out")},
        {"input": str(root / "photos"), "output": str(root / "link_out" / "sub")},
        {"input": "/etc", "output": str(root / "out")},
        {"input": str(root / "photos"), "output": f"{root}/../../../../../../tmp/elsewhere"},
    ]
    try:
        for body in hostile:
            r = client.post("/v1/batch", json={**body, "format": "png"})
            assert r.status_code == 403, (body, r.text)
            assert r.json()["error"]
        assert (outside / "victim.txt").read_text() == "victim"
        assert sorted(p.name for p in outside.rglob("*")) == ["in", "out", "photo.jpg", "victim.txt"]
        assert not (root / "out").exists() and not (root / "x").exists()
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def test_batch_never_writes_among_the_originals_and_overwrite_needs_a_writable_root(endpoint, tmp_path,
                                                                                     tmp_path_factory):
    """Case 3 and issue 12's writable roots: 'ROOT/photos/.' with overwrite replaced the originals."""
    client, _ = endpoint
    photos = tmp_path / "photos"
    synth.write_dataset(str(photos), 3, size=32)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for out in (f"{photos}/.", f"{photos}/sub", str(tmp_path)):
        r = client.post("/v1/batch", json={"input": str(photos), "output": out, "format": "same"})
        assert r.status_code == 422 and "among the originals" in r.json()["error"], (out, r.text)
    r = client.post("/v1/batch", json={"input": str(photos), "output": f"{photos}/.", "format": "same",
                                       "overwrite": True})
    assert r.status_code == 403 and "batch_writable_roots" in r.json()["error"], r.text
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before

    writable = next(Path(tmp_path_factory.getbasetemp()).glob("writable*"))
    r = client.post("/v1/batch", json={"input": str(photos), "output": str(writable / f"out-{tmp_path.name}"),
                                       "format": "png", "overwrite": True})
    assert r.status_code == 202, r.text
    assert _wait_job(client, r.json()["id"])["state"] == "SUCCEEDED"


def test_gpu_job_without_gpus_fails_after_a_bounded_wait(endpoint, tmp_path):
    """Case 8: {"gpu": true} on a cluster without GPUs stayed RUNNING with no total."""
    client, _ = endpoint
    synth.write_dataset(str(tmp_path / "in"), 1, size=32)
    r = client.post("/v1/batch", json={"input": str(tmp_path / "in"), "output": str(tmp_path / "out"),
                                       "gpu": True, "resource_wait_s": 3})
    assert r.status_code == 202, r.text
    state = _wait_job(client, r.json()["id"], timeout=120)
    assert state["state"] == "FAILED" and "GPU" in state["error"] and "after waiting 3s" in state["error"], state


def _replica_cpu_seconds(app: str, deployment: str) -> float:
    title = f"ServeReplica:{app}:{deployment}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if title in Path(f"/proc/{entry}/cmdline").read_bytes():
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                continue
    raise AssertionError(f"no replica process {title!r}")


def test_deadline_and_disconnect_stop_the_work(endpoint, tmp_path):
    """Case 6: a small PNG that decodes to many pixels held a replica for minutes, also after
    its client had gone. Now the request's deadline answers 503 and stops the computation between
    tiles, and a client that goes away stops it too (the replica's CPU goes quiet); archive jobs
    are off on an endpoint without batch_roots (issue 12: closed by default)."""
    from ray import serve

    from serve.app import AppArgs, EnhanceService

    client, _ = endpoint
    # A per-pixel network (the poster's, width 8): the default light model corrects a 36 Mpx photo
    # from a thumbnail, too fast to meet a 3 s deadline.
    cfg = Config(model=ModelConfig(arch="poster", width=8))
    model_dir = checkpoint.save(tmp_path / "poster", build_model(cfg.model), cfg, {"epoch": 0})
    slow = EnhanceService.options(name="Slow", num_replicas=1, autoscaling_config=None)
    serve.run(slow.bind(AppArgs(model=str(model_dir), max_pixels=40_000_000, request_timeout_s=3).model_dump()),
              name="slow", route_prefix="/slow")
    url = str(client.base_url) + "/slow/v1/enhance"
    big = _png(np.full((6000, 6000, 3), 120, np.uint8))
    try:
        assert len(big) < 200_000
        started = time.time()
        r = httpx.post(url, content=big, headers={"Content-Type": "image/png"}, timeout=120)
        took = time.time() - started
        assert r.status_code == 503 and "request_timeout_s=3" in r.json()["error"], r.text
        assert r.headers["retry-after"] and took < 20, took

        serve.run(slow.bind(AppArgs(model=str(model_dir), max_pixels=40_000_000,
                                    request_timeout_s=600).model_dump()), name="slow", route_prefix="/slow")
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url, content=big, headers={"Content-Type": "image/png"}, timeout=4)
        time.sleep(2)  # the last tile finishes
        cpu = _replica_cpu_seconds("slow", "Slow")
        time.sleep(4)
        busy = _replica_cpu_seconds("slow", "Slow") - cpu
        assert busy < 1.0, f"the replica kept computing for its gone client: {busy:.1f} CPU-s in 4 s"
        r = httpx.post(url, content=_jpeg(synth.skin_image(0, 1, 64)), headers={"Content-Type": "image/jpeg"},
                       timeout=60)
        assert r.status_code == 200

        r = httpx.post(str(client.base_url) + "/slow/v1/batch", json={"input": "/tmp", "output": "/tmp/x"},
                       timeout=30)
        assert r.status_code == 403 and "turned off" in r.json()["error"]
    finally:
        serve.delete("slow")


# --- hostile bytes (issue 23) ------------------------------------------------------------------

def _ztxt_bomb() -> bytes:
    import zlib

    from test_image_limits import _chunk, _noise, _rgb_png

    return _rgb_png(_noise(), extra=_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (4 << 20), 9)))


def _hostile(name: str) -> bytes:
    from test_image_limits import _many_scans_jpeg, _noise, _rgb_png, _tiff_strips

    return {"scans": lambda: _many_scans_jpeg(150), "strips": lambda: _tiff_strips(1, 70_000),
            "chunks": lambda: _rgb_png(_noise(64, 64), split=1), "ztxt": _ztxt_bomb}[name]()


@pytest.mark.parametrize("name, limit", [("scans", "max_jpeg_scans=100"), ("strips", "max_tiff_blocks=65536"),
                                         ("chunks", "max_png_chunks=10000"), ("ztxt", "max_png_ancillary_bytes")])
def test_hostile_structures_are_refused_before_decoding(endpoint, name, limit):
    """Items 2-3: 40,000 progressive scans held a CPU for a minute; 1x1 TIFF tiles took 800 MB.
    Such files, small ones hitting the same limits, are a JSON 422 naming the limit, at once."""
    client, _ = endpoint
    started = time.monotonic()
    r = client.post("/v1/enhance", content=_hostile(name), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 422 and limit in r.json()["error"], r.text
    assert time.monotonic() - started < 10


def test_icc_description_never_reaches_a_header_unfiltered(endpoint):
    """Item 4: a control character in the profile's description left the client without a
    response; a 100,000-character one made a 100 KB header. Now: printable ASCII, cut to 200."""
    from icc_profiles import rgb_profile

    client, _ = endpoint
    for description, expect in (("Evil\x01P3\x7f", "Evil?P3?"), ("P3 " + "x" * 100_000, None)):
        out = io.BytesIO()
        Image.fromarray(synth.skin_image(0, 3, 32)).save(out, format="PNG", icc_profile=rgb_profile(description))
        r = client.post("/v1/enhance", content=out.getvalue(), headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        colour = r.headers["x-skinray-colour"]
        assert colour.isascii() and colour.isprintable() and len(colour) <= 200, colour[:300]
        assert (expect in colour) if expect else colour.endswith("..."), colour


def test_job_state_cannot_be_spoofed(endpoint, tmp_path, tmp_path_factory):
    """Items 5-7: a progress.json of the wrong shape made POST /v1/batch a plain-text 500 after
    submitting the job; a symlinked one echoed a file outside the roots; ids with '?' or '#'
    reached Ray's REST API unquoted; two jobs on one output replaced each other's report. Now
    each job reads only its own report (_skinray/jobs/<id>/), never through a link."""
    client, _ = endpoint
    synth.write_dataset(str(tmp_path / "in"), count=2, size=32, seed=1)
    secret = tmp_path_factory.mktemp("outside") / "secret.json"
    secret.write_text('{"started": 1e12, "total": 4242, "counts": {"ok": 7}, "manifest_uri": "SECRET"}')
    linked, shaped = tmp_path / "linked", tmp_path / "shaped"
    (linked / "_skinray").mkdir(parents=True)
    (linked / "_skinray" / "progress.json").symlink_to(secret)
    (shaped / "_skinray").mkdir(parents=True)
    (shaped / "_skinray" / "progress.json").write_text('{"started": "x"}')
    jobs = []
    try:
        for out in (linked, shaped):
            r = client.post("/v1/batch", json={"input": str(tmp_path / "in"), "output": str(out)})
            assert r.status_code == 202, r.text
            job = r.json()
            jobs.append(job["id"])
            assert job["total"] is None and "SECRET" not in r.text and "4242," not in r.text, job
        # A second job on (or inside) a running job's output is refused.
        r = client.post("/v1/batch", json={"input": str(tmp_path / "in"), "output": str(linked / "sub")})
        assert r.status_code == 409 and jobs[0] in r.json()["error"], r.text
        # Ids: only the shape skinray issues; anything else is a JSON 404 before Ray is asked.
        for path in (f"/v1/batch/{jobs[0]}%3Fa=b", f"/v1/batch/{jobs[0]}%23x", "/v1/batch/..%2F..%2Fapi"):
            for method in ("GET", "DELETE"):
                r = client.request(method, path)
                assert r.status_code == 404 and r.json()["status"] == 404, (method, path, r.text)
        client.delete(f"/v1/batch/{jobs[0]}")
        state = _wait_job(client, jobs[1])  # the other runs to its end: its own report, its own counts
        assert state["state"] == "SUCCEEDED" and state["total"] == 2 and state["done"] == 2, state
        own = shaped / "_skinray" / "jobs" / jobs[1]
        assert (own / "summary.json").is_file() and state["manifest_uri"] == str(own / "manifest.parquet")
        assert "SECRET" not in str(client.get(f"/v1/batch/{jobs[0]}").json())
    finally:
        for job_id in jobs:
            client.delete(f"/v1/batch/{job_id}")


def _slow_client(port: int, length: int, results: list, every_s: float = 0.5, head: int = 0) -> None:
    """Headers, ``head`` bytes at once, then one byte every ``every_s`` of a body declared
    ``length`` bytes long."""
    import socket

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall((f"POST /v1/enhance HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                      f"Content-Type: image/png\r\nContent-Length: {length}\r\n\r\n").encode() + b"x" * head)
        reply = b""
        sock.settimeout(every_s)
        while b"\r\n\r\n" not in reply and time.monotonic() - started < 30:
            try:
                sock.sendall(b"x")
            except OSError:
                pass  # the server answered and closed: read the answer
            try:
                reply += sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
    results.append((time.monotonic() - started, reply.decode("latin-1")))


def test_slow_bodies_get_408_and_bytes_held_count_against_a_budget(endpoint):
    """Items 1 and 8: bodies trickling in held replica slots for ever; uploads counted against no
    budget. Now a body gets body_timeout_s (5 s here) to arrive, else a JSON 408, and the bytes a
    replica holds (4 MB here) are bounded, counted as they arrive: a body whose declared length
    does not fit in what is free is 503 with Retry-After at once, while small requests go on
    being served."""
    client, _ = endpoint
    port = client.base_url.port
    results: list = []
    slow = [threading.Thread(target=_slow_client, args=(port, 1_950_000, results), kwargs={"head": 1_900_000})
            for _ in range(2)]
    for thread in slow:
        thread.start()
    time.sleep(2)  # their first 1.9 MB each reached the replica: 3.8 MB held
    slow.append(threading.Thread(target=_slow_client, args=(port, 1_000_000, results)))
    slow[-1].start()  # declares 1 MB, sends nothing: refused at once
    r = client.post("/v1/enhance", content=b"\x89PNG" + b"x" * 1_000_000, headers={"Content-Type": "image/png"})
    assert r.status_code == 503 and "max_inflight_bytes=4000000" in r.json()["error"], r.text
    assert r.headers["retry-after"]
    started = time.monotonic()
    r = client.post("/v1/enhance", content=_jpeg(synth.skin_image(0, 2, 48)), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200 and time.monotonic() - started < 10, r.text
    for thread in slow:
        thread.join(60)
    statuses = sorted(reply.split(" ", 2)[1] for _, reply in results)
    assert statuses == ["408", "408", "503"], [reply[:300] for _, reply in results]
    for took, reply in results:
        assert took < 5 + 5, (took, reply[:300])
        assert "content-type: application/json" in reply.lower(), reply
    # The budget is free again.
    r = client.post("/v1/enhance", content=b"\x89PNG" + b"x" * 1_000_000, headers={"Content-Type": "image/png"})
    assert r.status_code == 400, r.text


def test_slow_clients_do_not_shut_out_a_normal_client(endpoint):
    """Issue 23, goal 1: 16 slow bodies took the replica's 16 slots and 32 more filled Serve's
    queue, so everyone else got 503 until body_timeout_s. Now 60 clients each trickling one byte
    every 0.5 s of a declared 1 MB body (which they hold none of) wait on slots that cost a
    coroutine, and a normal client keeps getting its photos enhanced meanwhile; the slow ones get
    a JSON 408 after body_timeout_s (5 s here)."""
    client, _ = endpoint
    port = client.base_url.port
    results: list = []
    slow = [threading.Thread(target=_slow_client, args=(port, 1_000_000, results)) for _ in range(60)]
    for thread in slow:
        thread.start()
    time.sleep(1.5)  # their headers reached the replica
    body, answers = _jpeg(synth.skin_image(0, 3, 48)), []
    for _ in range(4):
        started = time.monotonic()
        r = client.post("/v1/enhance", content=body, headers={"Content-Type": "image/jpeg"})
        answers.append((r.status_code, round(time.monotonic() - started, 2)))
    held = 60 - len(results)  # slow clients not yet answered: all of them, still sending
    assert all(code == 200 and took < 3 for code, took in answers) and held == 60, (answers, held)
    for thread in slow:
        thread.join(60)
    assert len(results) == 60 and all(reply.split(" ", 2)[1] == "408" for _, reply in results), \
        sorted({reply[:200] for _, reply in results})
    assert max(took for took, _ in results) < 5 + 5
