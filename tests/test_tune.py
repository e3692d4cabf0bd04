"""skinray.tune without Ray: where a trial's reported checkpoint lives, as a URI."""

import pytest

from skinray import storage, tune
from skinray.errors import SkinrayError

S3 = storage.S3Options(endpoint="http://127.0.0.1:9", region="us-east-1")  # never contacted


def test_local_checkpoint_path_becomes_the_run_uri(tmp_path):
    run_uri = str(tmp_path / "runs" / "search")
    reported = f"{tmp_path}/runs/search/trial-ab12/epoch_0003/"
    assert tune._checkpoint_uri(reported, run_uri, None) == f"{run_uri}/trial-ab12/epoch_0003"


def test_s3_checkpoint_path_gets_its_scheme_back():
    reported = "bucket/runs/search/trial-ab12/epoch_0003"
    assert (tune._checkpoint_uri(reported, "s3://bucket/runs/search", S3)
            == "s3://bucket/runs/search/trial-ab12/epoch_0003")


def test_checkpoint_outside_the_run_is_an_error(tmp_path):
    with pytest.raises(SkinrayError, match="not under the run"):
        tune._checkpoint_uri(f"{tmp_path}/elsewhere/epoch_0001", str(tmp_path / "runs" / "search"), None)
