"""Ray Train: the per-worker training loop and :func:`fit`, which runs it data-parallel.

Each epoch a worker streams its shard of the training pairs (Ray Data), trains, evaluates its
shard of the validation pairs, and the metrics are summed over workers. Rank 0 then writes a
checkpoint (:mod:`skinray.checkpoint`) that Ray Train uploads to the storage URI, keeping the
best ``train.keep`` by validation loss. A re-run with the same name and storage resumes from the
latest checkpoint if it trained the same model on the same data (:func:`check_resume`, before Ray
starts; ``train.resume``); a dead worker restarts the group from it (``FailureConfig``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from skinray import checkpoint, data, ingest, storage
from skinray.config import Config
from skinray.errors import SkinrayError
from skinray.losses import make_loss
from skinray.metrics import psnr, ssim_per_image
from skinray.model import build_model, channels_last

# Per-epoch sums, all-reduced across workers. Order matters: see _epoch_metrics.
SUBSETS = ("colour", "camera", "clean")  # validation pairs by the faults drawn (skinray.degrade)
_SUMS = ("train_loss", "train_images", "train_bad", "val_loss", "val_images", "val_bad",
         "val_psnr", "val_ssim", "val_psnr_input", "val_ssim_input") + tuple(
    f"val_{what}_{subset}" for subset in SUBSETS for what in ("images", "psnr", "psnr_input"))


def _say(message: str) -> None:
    """One line to the worker's real stdout, which Ray forwards to the driver. (Ray Train
    patches ``print`` to log *and* tee to a wrapped stdout, which shows every line twice.)"""
    print(f"[skinray] {message}", file=sys.__stdout__, flush=True)


def _to_tensors(batch: dict[str, np.ndarray], device: torch.device, channels_last: bool):
    """numpy batch -> (input, target) float tensors (N, 3, S, S) in [0, 1], and the ok mask (N,)."""
    def convert(arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.require(arr, requirements=["C", "W"])).to(device, non_blocking=True)
        t = t.permute(0, 3, 1, 2).float().div_(255.0)  # (N, S, S, 3) uint8 -> (N, 3, S, S) float
        return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()
    ok = torch.from_numpy(batch["ok"].astype(bool)).to(device)
    return convert(batch["input"]), convert(batch["target"]), ok


def learning_rate(cfg: Config, epoch: int) -> float:
    """The learning rate of an epoch: constant, or cosine-decayed from train.lr towards 0.
    A function of the epoch alone, so resuming needs no scheduler state."""
    if cfg.train.lr_schedule == "cosine":
        return cfg.train.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.train.epochs))
    return cfg.train.lr


def _masked_loss(loss_fn, pred: torch.Tensor, target: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Loss over the decodable rows only. A batch with none still yields a zero loss connected to
    the graph, so every DDP worker runs the same number of backward passes."""
    if bool(ok.all()):
        return loss_fn(pred, target)
    if not bool(ok.any()):
        return pred.sum() * 0.0
    return loss_fn(pred[ok], target[ok])


def _training_loss(loss_fn, pred, target: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """The loss of a training forward pass: of the output, or the sum over its outputs when the
    model returns several (``light``: the full-strength correction, which trains the estimate,
    and the confidence-scaled one, which trains the confidence)."""
    outputs = pred if isinstance(pred, (tuple, list)) else (pred,)
    return sum(_masked_loss(loss_fn, out.float(), target, ok) for out in outputs)


def _regularization(model: torch.nn.Module) -> torch.Tensor | float:
    """The model's own penalty on its parameters (``lut``: smooth, monotone tables), else 0."""
    inner = checkpoint.unwrap(model)
    return inner.regularization() if hasattr(inner, "regularization") else 0.0


def _all_reduce(sums: dict[str, float], device: torch.device) -> dict[str, float]:
    values = torch.tensor([sums[k] for k in _SUMS], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return dict(zip(_SUMS, values.tolist()))


def _epoch_metrics(epoch: int, sums: dict[str, float], seconds: float) -> dict[str, Any]:
    def mean(key: str, count: str) -> float:
        return sums[key] / sums[count] if sums[count] else float("nan")
    return {
        "epoch": epoch,
        "train_loss": mean("train_loss", "train_images"),
        "val_loss": mean("val_loss", "val_images"),
        "val_psnr": mean("val_psnr", "val_images"),
        "val_ssim": mean("val_ssim", "val_images"),
        "val_psnr_input": mean("val_psnr_input", "val_images"),
        "val_ssim_input": mean("val_ssim_input", "val_images"),
        **{f"val_psnr{what}_{subset}": mean(f"val_psnr{what}_{subset}", f"val_images_{subset}")
           for subset in SUBSETS for what in ("", "_input")},
        "train_images": int(sums["train_images"]),
        "val_images": int(sums["val_images"]),
        "skipped": int(sums["train_bad"] + sums["val_bad"]),
        "images_per_s": sums["train_images"] / seconds if seconds > 0 else 0.0,
        "epoch_seconds": seconds,
    }


@torch.no_grad()
def _validate_batch(model, batch: dict[str, np.ndarray], loss_fn, sums: dict[str, float],
                    device: torch.device, fast: bool) -> None:
    """Add one validation batch's loss, PSNR and SSIM (of the output and of the degraded input,
    overall and per subset) to ``sums``. PSNR is capped at 100 dB (an unchanged clean photo)."""
    x, y, ok = _to_tensors(batch, device, fast)
    if not bool(ok.any()):
        return
    x, y = x[ok], y[ok]
    subsets = np.asarray(batch["subset"])[ok.cpu().numpy()]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
        pred = model(x)
    pred = pred.float().clamp(0, 1)
    out_psnr, in_psnr = psnr(pred, y).clamp(max=100), psnr(x, y).clamp(max=100)  # (n,) each
    sums["val_loss"] += float(loss_fn(pred, y)) * len(x)
    sums["val_images"] += len(x)
    sums["val_psnr"] += float(out_psnr.sum())
    sums["val_ssim"] += float(ssim_per_image(pred, y).sum())
    sums["val_psnr_input"] += float(in_psnr.sum())
    sums["val_ssim_input"] += float(ssim_per_image(x, y).sum())
    for subset in SUBSETS:
        mask = torch.from_numpy(subsets == subset).to(device)
        sums[f"val_images_{subset}"] += int(mask.sum())
        sums[f"val_psnr_{subset}"] += float(out_psnr[mask].sum())
        sums[f"val_psnr_input_{subset}"] += float(in_psnr[mask].sum())


def _epoch_line(m: dict[str, Any], epochs: int) -> str:
    by_subset = ", ".join(f"{subset} {m[f'val_psnr_input_{subset}']:.1f}->{m[f'val_psnr_{subset}']:.1f}"
                          for subset in SUBSETS if not math.isnan(m[f"val_psnr_{subset}"]))
    return (f"epoch {m['epoch'] + 1}/{epochs} train_loss={m['train_loss']:.4f} "
            f"val_loss={m['val_loss']:.4f} val_psnr={m['val_psnr']:.2f}dB "
            f"(input {m['val_psnr_input']:.2f}) val_ssim={m['val_ssim']:.4f} "
            f"(input {m['val_ssim_input']:.4f}) skipped={m['skipped']} {m['images_per_s']:.1f} img/s; "
            f"val PSNR dB input->output: {by_subset}")


def _note_bad(batch: dict[str, np.ndarray], seen: set[str]) -> int:
    bad = np.flatnonzero(~batch["ok"].astype(bool))
    for i in bad:
        key = str(batch["key"][i])
        if key not in seen:
            seen.add(key)
            _say(f"skipping {key}: {batch['error'][i]}")
    return len(bad)


class _EpochProgress:
    """Rank 0's progress within an epoch: a line at most every ``every_s`` seconds with the step
    (of about ``steps``: the training images over workers and batch size), the mean loss so far
    and the images per second of all workers (this one's rate since its first step, times their
    number)."""

    def __init__(self, epoch: int, epochs: int, train_images: int, batch_size: int, world_size: int,
                 every_s: float):
        self.epoch, self.epochs, self.world, self.every_s = epoch, epochs, world_size, every_s
        self.steps = math.ceil(train_images / world_size / batch_size) if train_images else 0
        self.last = time.perf_counter()
        self.first: tuple[float, float] | None = None  # (time, images) after the first step
        self.done = 0

    def step(self, sums: dict[str, float]) -> None:
        self.done += 1
        now, images = time.perf_counter(), sums["train_images"]
        self.first = self.first or (now, images)
        if now - self.last < self.every_s or self.done == self.steps:  # the epoch line follows
            return
        self.last = now
        loss = sums["train_loss"] / images if images else float("nan")
        rate = (images - self.first[1]) * self.world / (now - self.first[0]) if now > self.first[0] else 0.0
        _say(f"epoch {self.epoch + 1}/{self.epochs} step {self.done}{f'/{self.steps}' if self.steps else ''} "
             f"loss={loss:.4f} {rate:.1f} img/s")


@dataclass
class _Worker:
    """What one Ray Train worker keeps across epochs (built by :func:`_setup`)."""
    cfg: Config
    rank: int
    world_size: int
    device: torch.device
    fast: bool  # bf16 autocast + channels_last
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Any
    task_loss: Any = None  # skinray.downstream.TaskLoss with train.task_weight > 0, else None


def step_loss(model: torch.nn.Module, loss_fn, pred, target: torch.Tensor, ok: torch.Tensor,
              task_loss=None) -> torch.Tensor:
    """One training step's loss: the reconstruction loss, the model's regularization and, with
    ``train.task_weight`` > 0, the frozen downstream models' term (:class:`skinray.downstream.TaskLoss`)."""
    loss = _training_loss(loss_fn, pred, target, ok) + _regularization(model)
    return loss + task_loss(pred, target, ok) if task_loss is not None else loss


def _setup(cfg: Config) -> _Worker:
    """The worker's device, model (from ``train.init`` unless resuming), optimizer and loss."""
    import ray.train
    import ray.train.torch

    rank = ray.train.get_context().get_world_rank()
    world_size = ray.train.get_context().get_world_size()
    device = ray.train.torch.get_device()
    fast = cfg.train.mixed_precision and device.type == "cuda"

    model = build_model(cfg.model)
    if cfg.train.init and ray.train.get_checkpoint() is None:  # a resumed run has its own weights
        init = checkpoint.load(cfg.train.init, s3=storage.S3Options.from_config(cfg.storage))
        model.load_state_dict(init.model.state_dict())
    if fast:
        model = channels_last(model)  # Module.to(memory_format=...) refuses the lut's 5-D tables
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    loss_fn = make_loss(cfg.train.loss, cfg.train.ssim_weight)
    if rank == 0:
        _say(f"{world_size} worker(s) on {device}, {torch.get_num_threads()} torch threads each")
    from skinray.downstream import load_task_loss  # it imports this module

    return _Worker(cfg, rank, world_size, device, fast, model, optimizer, loss_fn, load_task_loss(cfg, device))


def _resume(w: _Worker) -> tuple[int, list[dict[str, Any]]]:
    """(first epoch to train, history so far): from Ray Train's latest checkpoint, else (0, [])."""
    import ray.train

    resume_from = ray.train.get_checkpoint()
    if resume_from is None:
        return 0, []
    with resume_from.as_directory() as directory:
        name = resume_from.path.rstrip("/").rsplit("/", 1)[-1]  # epoch_XXXX, for messages
        start_epoch, history = checkpoint.load_training_state(
            directory, w.model, w.optimizer, where=storage.join(w.cfg.train.storage, w.cfg.train.name, name))
    if w.rank == 0:
        _say(f"resumed from checkpoint after epoch {start_epoch - 1}")
    return start_epoch, history


def _train_epoch(w: _Worker, shard, sums: dict[str, float], bad_seen: set[str],
                 progress: _EpochProgress | None) -> tuple[float, float]:
    """One pass over this worker's training shard, adding to ``sums``. Returns (seconds, steady
    images/s of this worker, excluding the wait for the epoch's first batch)."""
    started = time.perf_counter()
    first_step = None
    w.model.train()
    for batch in shard.iter_batches(batch_size=w.cfg.train.batch_size, batch_format="numpy",
                                    prefetch_batches=2, local_shuffle_buffer_size=4 * w.cfg.train.batch_size):
        x, y, ok = _to_tensors(batch, w.device, w.fast)
        with torch.autocast(w.device.type, dtype=torch.bfloat16, enabled=w.fast):
            pred = w.model(x)
        loss = step_loss(w.model, w.loss_fn, pred, y, ok, w.task_loss)
        w.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        w.optimizer.step()
        n_ok = int(ok.sum())
        sums["train_loss"] += float(loss.detach()) * n_ok
        sums["train_images"] += n_ok
        sums["train_bad"] += _note_bad(batch, bad_seen)
        if first_step is None:  # steady-state timing starts after the first step
            first_step = (time.perf_counter(), sums["train_images"])
        if progress:
            progress.step(sums)
    train_seconds = time.perf_counter() - started
    steady = (sums["train_images"] - first_step[1]) / max(time.perf_counter() - first_step[0], 1e-9) \
        if first_step else 0.0
    return train_seconds, steady


def _validate(w: _Worker, shard, sums: dict[str, float], bad_seen: set[str]) -> None:
    """One pass over this worker's validation shard, adding to ``sums``."""
    w.model.eval()
    for batch in shard.iter_batches(batch_size=w.cfg.train.batch_size, batch_format="numpy"):
        sums["val_bad"] += _note_bad(batch, bad_seen)
        _validate_batch(w.model, batch, w.loss_fn, sums, w.device, w.fast)


def _report(w: _Worker, epoch: int, metrics: dict[str, Any], history: list[dict[str, Any]],
            fingerprint: str) -> None:
    """Report the epoch to Ray Train; rank 0 prints its line and attaches the checkpoint."""
    import ray.train

    if w.rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    _say(_epoch_line(metrics, w.cfg.train.epochs))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(tmp, w.model, w.cfg, metrics, history, fingerprint,
                        optimizer=w.optimizer, epoch=epoch)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=f"epoch_{epoch:04d}")


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker. ``loop_config``: {"config": Config dict, "fingerprint": str}."""
    import ray.train

    w = _setup(Config.from_dict(loop_config["config"]))
    cfg = w.cfg
    start_epoch, history = _resume(w)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    bad_seen: set[str] = set()
    for epoch in range(start_epoch, cfg.train.epochs):
        sums = dict.fromkeys(_SUMS, 0.0)
        for group in w.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, epoch)
        progress = _EpochProgress(epoch, cfg.train.epochs, loop_config.get("train_images", 0), cfg.train.batch_size,
                                  w.world_size, loop_config.get("progress_every_s", 30.0)) if w.rank == 0 else None
        train_seconds, steady = _train_epoch(w, train_shard, sums, bad_seen, progress)
        _validate(w, val_shard, sums, bad_seen)
        totals = _all_reduce(sums, w.device)
        if totals["train_images"] == 0:
            raise SkinrayError("no training image could be decoded: every file was skipped "
                               "(see the 'skipping' lines above)")
        metrics = _epoch_metrics(epoch, totals, train_seconds)
        metrics["steady_images_per_s"] = steady  # this worker, excluding the wait for the epoch's first batch
        history.append(metrics)
        _report(w, epoch, metrics, history, loop_config["fingerprint"])


@dataclass
class FitSummary:
    run_uri: str  # STORAGE/NAME: every checkpoint of the run
    best_uri: str  # STORAGE/NAME/best: the exported best model, loadable by checkpoint.load
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    skipped_files: list[tuple[str, str]]


def _check_init(cfg: Config, s3: storage.S3Options) -> None:
    """``train.init`` must name a checkpoint of the same model (architecture and sizes)."""
    if not cfg.train.init:
        return
    saved = checkpoint.load(cfg.train.init, s3=s3).config.model
    differ = [f"model.{k}: {v!r} there, {getattr(cfg.model, k)!r} here"
              for k, v in saved.__dict__.items() if getattr(cfg.model, k) != v]
    if differ:
        raise SkinrayError(f"train.init: {cfg.train.init} holds another model ({'; '.join(differ)}); "
                           f"set the model section to match or drop train.init")


RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of a run's checkpoints


def latest_checkpoint(cfg: Config, s3: storage.S3Options) -> str | None:
    """The checkpoint a run with this name and storage resumes from, found as Ray Train finds it
    (the latest checkpoint in STORAGE/NAME/checkpoint_manager_snapshot.json); None: a fresh run."""
    run_uri = storage.join(cfg.train.storage, cfg.train.name)
    snapshot_uri = storage.join(run_uri, RAY_SNAPSHOT)
    if not storage.exists(snapshot_uri, s3):
        return None
    try:
        latest = json.loads(storage.read_bytes(snapshot_uri, s3)).get("latest_checkpoint_result")
        return storage.join(run_uri, latest["checkpoint_dir_name"]) if latest else None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SkinrayError(f"{snapshot_uri}: unreadable ({exc}); pick another --name or remove "
                           f"{run_uri}") from None


def check_resume(cfg: Config, manifest: ingest.Manifest, s3: storage.S3Options) -> str | None:
    """Before Ray starts: if this run resumes, check that the stored run trained the same model on
    the same data (fingerprint and split) with the same degradations, and that its training state
    is safe to load. ``train.resume=force`` accepts other data or degradations. Returns the
    checkpoint resumed from, or None for a fresh run."""
    latest = latest_checkpoint(cfg, s3)
    if latest is None:
        return None
    meta = checkpoint.read_metadata(latest, s3)
    saved, here = meta.get("config", {}), cfg.to_dict()

    def changed(section: str, keys: Sequence[str] | None = None) -> list[str]:
        there = saved.get(section, {})
        return [f"{section}.{k} {there[k]!r} there, {v!r} here" for k, v in here[section].items()
                if (keys is None or k in keys) and k in there and there[k] != v]

    model = changed("model")
    others = changed("data", ("val_fraction", "seed", "test_fraction", "split_by", "synthetic",
                              "synthetic_share")) + changed("degrade")
    stored_fp, fp = meta.get("data_fingerprint", ""), manifest.fingerprint()
    if stored_fp != fp:
        others.insert(0, f"data fingerprint {stored_fp[:12] or 'none'} there "
                         f"({saved.get('data', {}).get('source', '?')}), {fp[:12]} here ({cfg.data.source})")
    run = f"run {cfg.train.name!r} (latest checkpoint {latest})"
    if model:
        raise SkinrayError(f"{run} holds another model: {'; '.join(model + others)}. Use --name NEW for a "
                           f"new run (train.resume=force cannot load weights of another model)")
    if others and cfg.train.resume != "force":
        raise SkinrayError(f"{run} was trained with other settings: {'; '.join(others)}. Use --name NEW "
                           f"for a new run, or --set train.resume=force to resume it anyway")
    checkpoint.check_training_state(latest, s3)  # refused here, before Ray, if it could run code
    if others:
        print(f"[skinray] train.resume=force: resuming {run} although {'; '.join(others)}", flush=True)
    return latest


def prepare(cfg: Config) -> tuple[ingest.Manifest, storage.S3Options]:
    """Validate the config and the data (before any Ray work): the manifest and S3 options."""
    cfg.validate()
    s3 = storage.S3Options.from_config(cfg.storage)
    _check_init(cfg, s3)
    if cfg.train.task_weight:
        from skinray.downstream import check_task_models  # it imports this module

        check_task_models(cfg, s3)
    manifest = ingest.load_or_build_manifest(cfg, s3)
    n_train, n_val = manifest.count("train"), manifest.count("val")
    if n_train == 0 or n_val == 0:
        raise SkinrayError(f"{cfg.data.source}: found {n_train} training and {n_val} validation images "
                           f"({len(manifest.skipped)} unreadable); need at least one of each - add images "
                           f"or change data.val_fraction")
    print(f"[skinray] data {cfg.data.source}: {n_train} train / {n_val} val images"
          + (f" ({manifest.count('test')} test, not used in training)" if manifest.count("test") else "")
          + f", {len(manifest.skipped)} unreadable skipped, fingerprint {manifest.fingerprint()[:12]}", flush=True)
    pool = data.synthetic_pool(cfg, s3)  # before Ray: an empty data.synthetic is an error here
    if pool:
        print(f"[skinray] synthetic {cfg.data.synthetic}: {len(pool)} photos, "
              f"{data.synthetic_slots(n_train, cfg.data.synthetic_share)} of them drawn anew each epoch "
              f"(data.synthetic_share {cfg.data.synthetic_share:g} of the training pairs)", flush=True)
    return manifest, s3


def make_trainer(cfg: Config, manifest: ingest.Manifest, s3: storage.S3Options, callbacks: Sequence = (),
                 keep_best_by: tuple[str, str] = ("val_loss", "min"), loop=None, datasets=None,
                 extra_config: dict[str, Any] | None = None):
    """The Ray Train TorchTrainer of one run (Ray must be initialised). ``callbacks`` go to its
    RunConfig (the tuner passes Tune's report callback); ``keep_best_by`` (metric, min|max)
    decides which ``train.keep`` checkpoints survive. ``loop``, ``datasets`` and
    ``extra_config`` (added to the loop's config): another job's (the downstream models',
    :mod:`skinray.downstream`); by default the enhancer's loop on its pairs."""
    import ray.train
    from ray.data import DataContext
    from ray.train.torch import TorchTrainer

    DataContext.get_current().enable_progress_bars = False
    datasets = datasets if datasets is not None else data.pair_datasets(manifest, cfg, s3)
    fs, storage_path = storage.resolve(cfg.train.storage, s3)
    resources = {"CPU": cfg.train.cpus_per_worker}
    if cfg.train.gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        loop or train_loop_per_worker,
        train_loop_config={"config": cfg.to_dict(), "fingerprint": manifest.fingerprint(),
                           "train_images": manifest.count("train") + (  # for the progress within an epoch
                               data.synthetic_slots(manifest.count("train"), cfg.data.synthetic_share)
                               if cfg.data.synthetic else 0),
                           "progress_every_s": float(os.environ.get("SKINRAY_PROGRESS_EVERY_S", "30")),
                           **(extra_config or {})},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.train.workers, use_gpu=cfg.train.gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=cfg.train.name, storage_path=storage_path, storage_filesystem=fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep,
                                                         checkpoint_score_attribute=keep_best_by[0],
                                                         checkpoint_score_order=keep_best_by[1]),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=list(callbacks),
        ),
        datasets=datasets,
    )


def fit(cfg: Config, ray_address: str | None = None) -> FitSummary:
    """Validate the data, run Ray Train, export the best checkpoint to STORAGE/NAME/best. A
    downstream model (``model.task``) is trained by :func:`skinray.downstream.fit`."""
    import ray.train

    from skinray.runtime import init_ray

    if cfg.model.task:
        from skinray import downstream

        return downstream.fit(cfg, ray_address)

    manifest, s3 = prepare(cfg)
    check_resume(cfg, manifest, s3)  # before Ray starts
    init_ray(ray_address)
    trainer = make_trainer(cfg, manifest, s3)
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise SkinrayError(f"training run {cfg.train.name!r} failed: {_root_cause(exc)}") from None
    return _export_best(cfg, result, manifest, s3)


def _root_cause(exc: BaseException) -> str:
    """The innermost message of a Ray error chain, one line."""
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip().splitlines()
    for line in reversed(text):
        if "SkinrayError" in line or "Error:" in line:
            return line.split("Error: ", 1)[-1].strip()
    return text[-1] if text else type(seen).__name__


def _export_best(cfg: Config, result, manifest: ingest.Manifest, s3: storage.S3Options) -> FitSummary:
    """Copy the checkpoint with the lowest validation loss to STORAGE/NAME/best."""
    run_uri = storage.join(cfg.train.storage, cfg.train.name)

    def uri_of(ckpt) -> str:  # Ray returns paths inside the storage filesystem
        return storage.join(run_uri, ckpt.path.rstrip("/").rsplit("/", 1)[-1])

    candidates = [(ckpt, metrics) for ckpt, metrics in (result.best_checkpoints or [])
                  if not math.isnan(metrics.get("val_loss", float("nan")))]
    if not candidates or result.checkpoint is None:
        raise SkinrayError(f"training run {cfg.train.name!r} produced no checkpoint")
    best_ckpt, best_metrics = min(candidates, key=lambda item: item[1]["val_loss"])
    best_uri = checkpoint.export(uri_of(best_ckpt), storage.join(run_uri, checkpoint.BEST_DIR), s3)
    history = checkpoint.read_metadata(uri_of(result.checkpoint), s3).get("history", [])
    return FitSummary(run_uri=run_uri, best_uri=best_uri, best_metrics=dict(best_metrics),
                      history=history, skipped_files=manifest.skipped)
