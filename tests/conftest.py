"""Shared fixtures: one real local Ray per session, a real S3 API (moto server on loopback),
and synthetic skin photos made on the spot."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from skinray import storage, synth


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture(scope="session")
def aws_env():
    """Fake credentials for the moto server, set before Ray starts so workers inherit them."""
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_endpoint(aws_env) -> str:
    """A real S3 API over HTTP: moto's standalone server on 127.0.0.1, on a free port."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3(s3_endpoint) -> storage.S3Options:
    return storage.S3Options(endpoint=s3_endpoint, region="us-east-1")


@pytest.fixture
def bucket(s3_endpoint, request) -> str:
    """A fresh, empty bucket; returns its name."""
    import boto3

    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid()}"
    boto3.session.Session().client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ray_local(aws_env):
    """One real local Ray instance for the whole session (started lazily by the first user)."""
    import ray

    from skinray.runtime import init_ray

    init_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def skin_dir(tmp_path_factory) -> Path:
    """40 synthetic 64x64 skin photos (JPEG)."""
    out = tmp_path_factory.mktemp("skin")
    synth.write_dataset(str(out), count=40, size=64, seed=7)
    return out
