"""`skinray tune`: hyperparameter search with Ray Tune, each trial one Ray Train run.

    skinray tune --data DATA --trials 8 [--gpu] [--storage runs] [--name tune] [--epochs 20]

Search space (over the base config from --config/--set): learning rate (log-uniform), width,
depth, dropout and loss. ASHA stops trials that fall behind, after ``grace`` epochs. Trials are
compared on validation PSNR (losses of different kinds are not comparable). Writes, under
STORAGE/NAME: one Train run per trial (``trial-<id>``), ``best/`` (the best trial's best
checkpoint, loadable by every command that takes --model), ``best_config.yaml`` and
``trials.json`` (config and final metrics of every trial).
"""

from __future__ import annotations

import json
import math
import posixpath
from dataclasses import dataclass
from typing import Any

import yaml

from skinray import checkpoint, storage
from skinray.config import Config
from skinray.errors import SkinrayError

METRIC, MODE = "val_psnr", "max"


def search_space() -> dict[str, Any]:
    from ray import tune

    return {
        "train.lr": tune.loguniform(2e-4, 5e-3),
        "model.width": tune.choice([16, 32, 48]),
        "model.depth": tune.choice([2, 4, 6]),
        "model.dropout": tune.uniform(0.0, 0.2),
        "train.loss": tune.choice(["ssim", "mae", "mae+ssim"]),
    }


@dataclass
class TuneSummary:
    best_uri: str
    best_config: Config
    best_metrics: dict[str, Any]
    trials: list[dict[str, Any]]
    config_uri: str


def _trial(params: dict[str, Any], base: dict[str, Any], manifest, s3) -> None:
    """One Tune trial: a Ray Train run of the base config with the sampled overrides."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from skinray.train import make_trainer

    trial_id = tune.get_context().get_trial_id()
    # Each trial's Train run lives at STORAGE/NAME/trial-<id>.
    cfg = Config.from_dict(base).replace({**params, "train.storage": storage.join(base["train"]["storage"],
                                                                                 base["train"]["name"]),
                                          "train.name": f"trial-{trial_id}"})
    # Keep the checkpoints that are best on the metric trials are ranked by.
    make_trainer(cfg, manifest, s3, callbacks=[TuneReportCallback()], keep_best_by=(METRIC, MODE)).fit()


def run(cfg: Config, trials: int, grace: int = 2, concurrent: int = 1,
        ray_address: str | None = None) -> TuneSummary:
    from skinray.runtime import init_ray, ray_prints_to_log
    from skinray.train import prepare

    if trials < 1 or concurrent < 1 or grace < 1:
        raise SkinrayError(f"tune: need --trials, --concurrent and --grace >= 1, "
                           f"got {trials}, {concurrent}, {grace}")
    cfg = absolute_paths(cfg)
    manifest, s3 = prepare(cfg)
    init_ray(ray_address)
    with ray_prints_to_log():  # Tune prints its configuration table itself, whatever its verbosity
        results = _tuner(cfg, trials, grace, concurrent, manifest, s3).fit()
    rows = _collect_trials(results)
    run_uri = storage.join(cfg.train.storage, cfg.train.name)
    done = _finished(rows, run_uri, s3)
    return _write_best(done, rows, run_uri, s3)


def absolute_paths(cfg: Config) -> Config:
    """The config with its local paths (storage, data, synthetic photos, init checkpoint) made
    absolute against this process's working directory, before Ray starts: each trial runs in a
    working directory of its own (Tune's), where ``runs`` would name another folder."""
    from skinray import paths

    changes = {}
    for key in ("train.storage", "data.source", "data.synthetic", "train.init"):
        section, field = key.split(".")
        value = getattr(getattr(cfg, section), field, None)
        if value and value != checkpoint.BUNDLED and paths.parse(value).kind == "local":
            changes[key] = paths.parse(value).path
    return cfg.replace(changes) if changes else cfg


def _tuner(cfg: Config, trials: int, grace: int, concurrent: int, manifest, s3):
    """The Tuner: ``trials`` samples of the search space, ASHA, results under STORAGE/NAME."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from skinray.runtime import is_quiet

    fs, path = storage.resolve(storage.join(cfg.train.storage, cfg.train.name), s3)
    return tune.Tuner(
        tune.with_parameters(_trial, base=cfg.to_dict(), manifest=manifest, s3=s3),
        param_space=search_space(),
        tune_config=tune.TuneConfig(
            num_samples=trials, max_concurrent_trials=concurrent,
            # max_t one past the last epoch: a trial that runs every epoch ends by itself
            # (releasing its workers) rather than being stopped by the scheduler.
            scheduler=ASHAScheduler(metric=METRIC, mode=MODE, max_t=cfg.train.epochs + 1,
                                    grace_period=min(grace, cfg.train.epochs)),
        ),
        run_config=tune.RunConfig(name="tune", storage_path=path, storage_filesystem=fs,
                                  **({"verbose": 0} if is_quiet() else {})),
    )


def _collect_trials(results) -> list[dict[str, Any]]:
    """One row per trial: its config, error, epochs run and the metrics of its best epoch."""
    rows = []
    for result in results:
        df = result.metrics_dataframe
        row = {"config": result.config, "error": str(result.error) if result.error else None,
               "epochs": 0, METRIC: None, "checkpoint": None}
        if df is not None and METRIC in df and df[METRIC].notna().any():  # a diverged trial has only NaN
            best_row = df.loc[df[METRIC].idxmax()]
            row.update(epochs=int(df["training_iteration"].max()), **{METRIC: float(best_row[METRIC])},
                       val_psnr_input=float(best_row["val_psnr_input"]), val_ssim=float(best_row["val_ssim"]),
                       checkpoint=str(best_row.get("checkpoint_path") or "") or None)
        rows.append(row)
    return rows


def _finished(rows: list[dict[str, Any]], run_uri: str, s3) -> list[dict[str, Any]]:
    """The trials with a metric and a checkpoint, their checkpoints as URIs under ``run_uri``."""
    done = [r for r in rows if r[METRIC] is not None and r["checkpoint"] and not math.isnan(r[METRIC])]
    if not done:
        errors = "; ".join(r["error"] for r in rows if r["error"])[:500]
        raise SkinrayError(f"tune: no trial produced a checkpoint ({errors or 'no results'})")
    for row in done:
        row["checkpoint"] = _checkpoint_uri(row["checkpoint"], run_uri, s3)
    return done


def _checkpoint_uri(reported: str, run_uri: str, s3) -> str:
    """Tune reports a checkpoint as a path inside the storage filesystem
    (``RUN/trial-<id>/epoch_0003``, RUN without its scheme): the same place as a URI."""
    _, run_path = storage.resolve(run_uri, s3)
    relative = posixpath.relpath(reported.rstrip("/"), run_path.rstrip("/"))
    if relative.startswith(".."):
        raise SkinrayError(f"tune: checkpoint {reported} is not under the run {run_uri}")
    return storage.join(run_uri, relative)


def _write_best(done: list[dict[str, Any]], rows: list[dict[str, Any]], run_uri: str, s3) -> TuneSummary:
    """Export the best trial's checkpoint to RUN/best; write best_config.yaml and trials.json."""
    best = max(done, key=lambda r: r[METRIC])
    best_uri = checkpoint.export(best["checkpoint"], storage.join(run_uri, checkpoint.BEST_DIR), s3)
    best_cfg = Config.from_dict(checkpoint.read_metadata(best_uri, s3)["config"])
    config_uri = storage.join(run_uri, "best_config.yaml")
    storage.write_bytes(config_uri, yaml.safe_dump(best_cfg.to_dict(), sort_keys=False).encode(), s3)
    storage.write_bytes(storage.join(run_uri, "trials.json"), json.dumps(rows, indent=2, default=str).encode(), s3)
    return TuneSummary(best_uri=best_uri, best_config=best_cfg, best_metrics=best, trials=rows,
                       config_uri=config_uri)
