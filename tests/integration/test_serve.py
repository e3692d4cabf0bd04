"""The online endpoint on a real Serve instance over HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import threading

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

    from serve.app import AppArgs, build

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(width=8))
    model_dir = checkpoint.save(tmp_path_factory.mktemp("m") / "best", build_model(cfg.model), cfg, {"epoch": 3})
    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text(API_KEY + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build(AppArgs(model=str(model_dir), max_body_bytes=2_000_000, max_pixels=4_000_000,
                            api_key_file=str(key_file))), name="skinray", route_prefix="/")
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
    assert "total;dur=" in r.headers["server-timing"]
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
