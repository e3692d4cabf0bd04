"""The S3 region comes from the standard chain: an explicit option, AWS_REGION / AWS_DEFAULT_REGION,
the region of the AWS profile (AWS_PROFILE in AWS_CONFIG_FILE), and only then a fallback; it is
never forced to us-east-1 over the user's profile."""

from __future__ import annotations

import http.server
import threading

import pytest

from skinray import storage
from skinray.config import load_config
from skinray.errors import StorageError


@pytest.fixture
def aws_profile(tmp_path, monkeypatch, aws_env):
    """No region in the environment; a config file with a default profile and a 'skin' one."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = eu-north-1\n\n[profile skin]\nregion = eu-west-2\n")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return config


def test_region_order_explicit_environment_profile(aws_profile, monkeypatch, s3_endpoint):
    assert storage.S3Options.from_env(s3_endpoint).region == "eu-north-1", "the default profile's"
    monkeypatch.setenv("AWS_PROFILE", "skin")
    assert storage.S3Options.from_env(s3_endpoint).region == "eu-west-2"
    assert storage.S3Options.from_env().region == "eu-west-2", "on AWS itself too"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert storage.S3Options.from_env(s3_endpoint).region == "ap-south-1"
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    assert storage.S3Options.from_env(s3_endpoint).region == "ca-central-1"
    cfg = load_config(overrides={"storage.s3_endpoint": s3_endpoint, "storage.s3_region": "sa-east-1"})
    assert storage.S3Options.from_config(cfg.storage).region == "sa-east-1"


def test_no_region_anywhere(aws_profile, s3_endpoint):
    aws_profile.write_text("[default]\noutput = json\n")
    assert storage.S3Options.from_env(s3_endpoint).region == "us-east-1", \
        "an S3-compatible endpoint takes us-east-1"
    assert storage.S3Options.from_env().region is None, "on AWS: the bucket's own region, looked up later"


def test_profile_region_against_the_moto_server(aws_profile, monkeypatch, s3_endpoint):
    import boto3

    monkeypatch.setenv("AWS_PROFILE", "skin")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    # A session of its own: boto3's default session keeps the config file of whichever test made it
    # first, where the profile "skin" does not exist (ProfileNotFound in a full run).
    s3 = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, region_name="eu-west-2")
    s3.create_bucket(
        Bucket="skin-eu-west-2", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    storage.write_bytes("s3://skin-eu-west-2/photos/a.jpg", b"jpeg")  # options from the environment
    assert [e.key for e in storage.list_files("s3://skin-eu-west-2/photos")] == ["a.jpg"]
    assert storage.read_bytes("s3://skin-eu-west-2/photos/a.jpg") == b"jpeg"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that answers 404 to everything and keeps the Authorization headers."""
    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _answer

    def log_message(self, *args) -> None:
        pass


def test_requests_are_signed_for_the_profiles_region(aws_profile, monkeypatch, free_port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_PROFILE", "skin")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        assert not storage.exists("s3://any-bucket/key.jpg")
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.seen and all("/eu-west-2/s3/aws4_request" in a for a in _Recorder.seen), _Recorder.seen


def test_missing_profile_is_one_line_where_s3_is_used(aws_profile, monkeypatch, s3_endpoint, tmp_path):
    monkeypatch.setenv("AWS_PROFILE", "nope")
    options = storage.S3Options.from_env()  # local work is not stopped by it
    storage.write_bytes(str(tmp_path / "local.bin"), b"ok", options)
    with pytest.raises(StorageError, match=r"AWS_PROFILE=nope: no such profile in .*aws-config"):
        storage.read_bytes("s3://some-bucket/a.jpg", options)
