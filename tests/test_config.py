from pathlib import Path

import pytest
import yaml

from skinray.config import POSTER_MODEL, Config, load_config, parse_set_flags
from skinray.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_recommended_recipe_and_poster_yaml_is_the_posters():
    cfg = load_config()
    assert (cfg.model.arch, cfg.train.loss, cfg.train.lr_schedule) == ("light", "psnr", "cosine")
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.batch_size) == (100, 0.002, 16)
    assert (cfg.degrade.light_prob, cfg.degrade.clean_fraction, cfg.degrade.jitter_fraction) == (0.8, 0.4, 0.0)
    default = load_config(REPO / "jobs" / "configs" / "default.yaml")  # the file says what the defaults are
    assert (default.model, default.degrade) == (cfg.model, cfg.degrade)
    poster = load_config(Path(__file__).parents[1] / "jobs" / "configs" / "poster.yaml")
    assert (poster.train.epochs, poster.train.lr, poster.train.batch_size, poster.train.loss,
            poster.train.lr_schedule) == (100, 0.002, 16, "ssim", "constant")
    assert (poster.model.arch, poster.model.depth, poster.model.dropout) == ("poster", 4, 0.15)
    assert poster.model == POSTER_MODEL
    assert (poster.degrade.jitter_fraction, poster.degrade.clean_fraction) == (0.6, 0.0)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 5, "lr": 0.01}, "data": {"image_size": 64}}))
    cfg = load_config(path, {"train.lr": "0.001", "train.gpu": "true"})
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.gpu, cfg.data.image_size) == (5, 0.001, True, 64)


@pytest.mark.parametrize("overrides, message", [
    ({"train.lr": -1}, "train.lr: must be > 0"),
    ({"degrade.jitter_fraction": 1.5}, "degrade.jitter_fraction: must be in [0, 1]"),
    ({"data.val_fraction": 0}, "data.val_fraction"),
    ({"train.loss": "mse"}, "train.loss: unknown 'mse'"),
    ({"data.image_size": 10, "train.loss": "ssim"}, "smaller than the 11-px SSIM window"),
    ({"model.depth": 3}, "model.depth: must be an even number"),
    ({"train.epochs": "ten"}, "train.epochs must be int"),
    ({"train.lrate": 1}, "unknown key 'train.lrate'"),
    ({"storage.s3_endpoint": "minio:9000"}, "must start with http://"),
])
def test_invalid_values_are_rejected_with_the_key(overrides, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)


def test_mae_loss_allows_images_smaller_than_the_ssim_window():
    assert load_config(overrides={"train.loss": "mae", "data.image_size": 10}).data.image_size == 10


def test_unknown_yaml_key_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 3\n  bacth_size: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'train.bacth_size'"):
        load_config(path)


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_set_flags_parse():
    assert parse_set_flags(["model.width=64", "train.name = x"]) == {"model.width": "64", "train.name": "x"}
    with pytest.raises(ConfigError, match="expected SECTION.FIELD=VALUE"):
        parse_set_flags(["model.width"])


def test_round_trip_through_dict():
    cfg = load_config(overrides={"model.skip": "add", "storage.s3_endpoint": "http://127.0.0.1:9"})
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("path", sorted((REPO / "jobs" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_job_config_loads(path):
    load_config(path)


def test_cosine_schedule_decays_from_lr_and_constant_stays():
    from skinray.train import learning_rate

    cosine = load_config(overrides={"train.lr_schedule": "cosine", "train.epochs": 10, "train.lr": 0.002})
    rates = [learning_rate(cosine, e) for e in range(10)]
    assert rates[0] == 0.002 and all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] < 0.0001
    assert learning_rate(load_config(overrides={"train.lr_schedule": "constant"}), 50) == 0.002
