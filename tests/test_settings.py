"""One declaration per setting: the archive job's options are EnhanceConfig's fields, and the CLI
flags, the endpoint's request body and the command the endpoint submits are derived from them."""

import dataclasses
import shlex

import pytest

from skinray import cli, config, paths
from skinray.archive_jobs import job_entrypoint
from skinray.config import EnhanceConfig
from skinray.serving import BODY_EXCLUDED, AppArgs, BatchRequest

FIELDS = [f.name for f in dataclasses.fields(EnhanceConfig)]
# The enhance command's arguments that are not job options: where it runs and how it is configured.
NOT_JOB_OPTIONS = {"help", "local", "ray", "config", "set", "s3_endpoint", "ray_address", "verbose"}


def _enhance_parser():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    return sub.choices["enhance"]


def test_every_option_has_its_help_in_the_one_declaration():
    for f in dataclasses.fields(EnhanceConfig):
        assert f.metadata["help"].strip(), f.name


def test_the_cli_exposes_exactly_enhance_configs_fields():
    dests = {a.dest for a in _enhance_parser()._actions}
    assert dests - NOT_JOB_OPTIONS == set(FIELDS)


def test_the_request_body_exposes_exactly_enhance_configs_fields_less_the_endpoints_own():
    assert set(BODY_EXCLUDED) <= set(FIELDS)
    assert list(BatchRequest.model_fields) == [name for name in FIELDS if name not in BODY_EXCLUDED]
    defaults = EnhanceConfig()
    for name, info in BatchRequest.model_fields.items():
        if name not in ("input", "output"):  # required in a request
            assert info.default == getattr(defaults, name), name


def test_flags_reach_the_config_they_name():
    args = cli.build_parser().parse_args([
        "enhance", "in", "out", "--format", "jpg", "--quality", "80", "--overwrite", "--workers", "3",
        "--batch-size", "4", "--max-pixels", "1000", "--tile", "256", "--tile-margin", "16",
        "--follow-symlinks", "--resource-wait-s", "5", "--strip-metadata", "--precision", "bf16"])
    cfg = cli.enhance_config_from_args(args).enhance
    assert cfg == EnhanceConfig(input="in", output="out", format="jpeg", quality=80, overwrite=True, workers=3,
                                batch_size=4, max_pixels=1000, tile=256, tile_margin=16, follow_symlinks=True,
                                resource_wait_s=5.0, strip_metadata=True, precision="bf16")


def test_a_job_submitted_by_the_endpoint_runs_with_every_option_of_its_request():
    body = BatchRequest(input="/data/in", output="/data/out", format="png", quality=70, overwrite=True, workers=2,
                        batch_size=3, max_pixels=5000, tile=300, tile_margin=20, resource_wait_s=9,
                        strip_metadata=True, precision="bf16")
    cfg = EnhanceConfig(model="/m/best", **body.model_dump())
    command = shlex.split(job_entrypoint(cfg, paths.Roots(("/data",), ()), None))
    argv = [a for a in command[2:] if a not in ("--batch-roots", "/data")]
    args = cli.build_parser().parse_args(["enhance", *argv])
    assert cli.enhance_config_from_args(args).enhance == cfg


@pytest.mark.parametrize("body", [{"input": "a", "output": "b", "max_pixels": config.MAX_PIXELS + 1},
                                  {"input": "a", "output": "b", "model": "/elsewhere"},
                                  {"input": "a", "output": "b", "follow_symlinks": True}])
def test_the_endpoints_policy_sits_on_top(body):
    with pytest.raises(ValueError):
        BatchRequest(**body)


def test_one_constant_each_for_the_limits_and_tiles():
    from skinray import images, predict

    assert EnhanceConfig().max_pixels == config.MAX_PIXELS
    assert images.decode.__defaults__[0] == config.MAX_PIXELS
    assert (EnhanceConfig().tile, EnhanceConfig().tile_margin) == (config.TILE, config.TILE_MARGIN)
    init = predict.Enhancer.__init__.__defaults__
    assert init[1:3] == (config.TILE, config.TILE_MARGIN)
    assert AppArgs().max_pixels < config.MAX_PIXELS  # the endpoint's tighter per-request policy


def test_the_training_config_no_longer_carries_the_archive_job(tmp_path):
    import json
    import shutil

    from skinray import checkpoint
    from skinray.config import Config, JobConfig

    assert "enhance" not in Config().to_dict() and set(JobConfig().to_dict()) == {"enhance", "storage"}
    old = tmp_path / "old"  # a checkpoint written before the split carries an "enhance" section: still loads
    shutil.copytree(checkpoint.BUNDLED_DIR, old)
    meta = json.loads((old / checkpoint.META_FILE).read_text())
    meta["config"]["enhance"] = {"model": "bundled", "input": "", "output": "", "tile": 512}
    (old / checkpoint.META_FILE).write_text(json.dumps(meta))
    assert checkpoint.load(str(old)).config.model.arch == meta["config"]["model"]["arch"]
