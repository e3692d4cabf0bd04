"""Downstream tasks: does enhancement help diagnosis? Two small models that read a photo as a
dermatologist's software would, trained from scratch as Ray Train jobs on the clean train split,
and the enhancer's task-loss term they make possible (the poster's "classifier on top").

* :class:`AttributeClassifier` (``model.task=attributes``): a photo -> one logit per dermoscopic
  attribute of ISIC 2018 Task 2 (:data:`skinray.ground_truth.ATTRIBUTES`), a small CNN.
* :class:`LesionSegmenter` (``model.task=segmentation``): a photo -> a lesion logit per pixel
  (ISIC 2018 Task 1), a small U-Net.

Both take ``(N, 3, S, S)`` float in [0, 1] (any S; the segmenter's output has the input's size).
``model.width`` is the first layer's channels (0: :data:`DEFAULT_WIDTH`), doubled per level.

Training (``skinray train --set model.task=attributes``: :func:`skinray.train.fit` hands the run
here) reads the manifest's train and val splits with Ray Data as the enhancer's pairs are read
(:mod:`skinray.data`), photos with their mask (``mask_uri``) or attributes (the manifest's
attribute columns; ``skinray ingest --masks DIR --attributes FILE``), keeps the best
``train.keep`` checkpoints by validation loss (:mod:`skinray.checkpoint`, which builds these
models when ``model.task`` is set) and exports the best to ``STORAGE/NAME/best``.

:class:`TaskLoss` (``train.task_weight`` > 0, ``train.task_model``): the frozen models' features
of the enhanced degraded photo are pulled towards their features of the clean photo.
The evaluation is :mod:`skinray.downstream_eval`.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from skinray import checkpoint, harm, images, ingest, storage, train
from skinray.config import Config, ModelConfig
from skinray.errors import SkinrayError
from skinray.ground_truth import ATTRIBUTES

TASKS = ("attributes", "segmentation")
DEFAULT_WIDTH = 16
LABEL = "label_"  # the training tables' attribute columns: float32, NaN where unknown


# ----------------------------------------------------------------------------- models


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def _level(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_block(c_in, c_out, stride), _block(c_out, c_out, 1))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.25  # [0, 1] -> about zero mean, unit spread


class AttributeClassifier(nn.Module):
    """Four stride-2 levels (``width`` .. 8 x ``width`` channels), global average pooling, dropout
    and a linear head: (N, 3, S, S) in [0, 1] -> logits (N, 5) in :data:`ATTRIBUTES` order."""

    def __init__(self, width: int = DEFAULT_WIDTH, dropout: float = 0.15):
        super().__init__()
        channels = [width * 2 ** i for i in range(4)]
        self.levels = nn.ModuleList(_level(c_in, c_out, 2) for c_in, c_out in zip([3, *channels], channels))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], len(ATTRIBUTES)))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each level's output, (N, C_i, S / 2^(i+1), S / 2^(i+1))."""
        out, h = [], _normalise(x)
        for level in self.levels:
            h = level(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))  # (N, C) -> (N, 5)


class LesionSegmenter(nn.Module):
    """A small U-Net: four stride-2 levels (``width`` .. 8 x ``width`` channels, the first at
    half resolution), decoded back to half resolution with bilinear upsampling and concatenated
    skips, the logits upsampled bilinearly: (N, 3, S, S) in [0, 1] -> lesion logits (N, 1, S, S)."""

    def __init__(self, width: int = DEFAULT_WIDTH):
        super().__init__()
        channels = [width * 2 ** i for i in range(4)]
        self.down = nn.ModuleList([_level(3, channels[0], 2)] + [
            _level(c_in, c_out, 2) for c_in, c_out in zip(channels, channels[1:])])
        self.up = nn.ModuleList(_level(c_deep + c_skip, c_skip, 1)
                                for c_deep, c_skip in zip(channels[:0:-1], channels[-2::-1]))
        self.out = nn.Conv2d(channels[0], 1, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's levels, (N, C_i, S / 2^(i+1), S / 2^(i+1))."""
        out, h = [], _normalise(x)
        for level in self.down:
            h = level(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.features(x)
        h = skips[-1]
        for up, skip in zip(self.up, skips[-2::-1]):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = up(torch.cat([h, skip], dim=1))  # (N, C_deep + C_skip, s, s) -> (N, C_skip, s, s)
        return F.interpolate(self.out(h), size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_task_model(cfg: ModelConfig) -> nn.Module:
    """The downstream model ``cfg.task`` names (fresh weights)."""
    width = cfg.width or DEFAULT_WIDTH
    if cfg.task == "attributes":
        return AttributeClassifier(width, cfg.dropout)
    if cfg.task == "segmentation":
        return LesionSegmenter(width)
    raise SkinrayError(f"model.task {cfg.task!r}: not a downstream task; choose from {TASKS}")


# ----------------------------------------------------------------------------- losses


def attribute_loss(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy over the known labels ((N, 5), NaN = unknown), positives weighted
    by ``pos_weight`` (5,) (negatives / positives of the train split: balanced classes)."""
    known = ~torch.isnan(labels)
    per = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(labels), pos_weight=pos_weight,
                                             reduction="none")
    return (per * known).sum() / known.sum().clamp(min=1)


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss; ``mask`` (N, 1, S, S) in {0, 1}."""
    prob = torch.sigmoid(logits)
    inter = (prob * mask).sum(dim=(1, 2, 3))
    dice = (2 * inter + 1.0) / (prob.sum(dim=(1, 2, 3)) + mask.sum(dim=(1, 2, 3)) + 1.0)
    return F.binary_cross_entropy_with_logits(logits, mask) + (1 - dice).mean()


class TaskLoss:
    """The poster's "classifier on top": ``weight`` x the mean, over frozen downstream models and
    their feature levels, of ``|f(enhanced) - f(clean)|^2 / mean(f(clean)^2)``: the enhanced
    degraded photo should read as the clean photo does. ``weight`` 0 adds an exact zero."""

    def __init__(self, models: Sequence[nn.Module], weight: float):
        self.models, self.weight = list(models), float(weight)
        for model in self.models:
            model.eval()
            model.requires_grad_(False)

    def __call__(self, pred, target: torch.Tensor, ok: torch.Tensor) -> torch.Tensor | float:
        """``pred``: the enhancer's training output (a tensor, or several, summed over as the
        reconstruction loss is: ``light``'s full-strength and confidence-scaled corrections);
        ``target`` the clean photos, ``ok`` (N,) the decodable rows."""
        if self.weight == 0 or not self.models or not bool(ok.any()):
            return 0.0
        outputs = pred if isinstance(pred, (tuple, list)) else (pred,)
        total = 0.0
        for model in self.models:
            with torch.no_grad():
                wanted = model.features(target[ok])
            for out in outputs:
                got = model.features(out.float()[ok])
                total = total + torch.stack([F.mse_loss(g, r) / r.pow(2).mean().clamp(min=1e-6)
                                             for g, r in zip(got, wanted)]).mean()
        return self.weight * total / len(self.models)


def load_task_loss(cfg: Config, device: torch.device | str = "cpu") -> TaskLoss | None:
    """The :class:`TaskLoss` of ``train.task_weight`` and ``train.task_model``; None when off."""
    if cfg.train.task_weight == 0:
        return None
    s3 = storage.S3Options.from_config(cfg.storage)
    return TaskLoss([checkpoint.load(uri.strip(), device=device, s3=s3).model
                     for uri in task_model_uris(cfg)], cfg.train.task_weight)


def task_model_uris(cfg: Config) -> list[str]:
    return [uri.strip() for uri in cfg.train.task_model.split(",") if uri.strip()]


def check_task_models(cfg: Config, s3: storage.S3Options | None) -> None:
    """Before Ray: each ``train.task_model`` must be a downstream checkpoint."""
    if cfg.train.task_weight == 0:
        return
    for uri in task_model_uris(cfg):
        task = checkpoint.load(uri, s3=s3).config.model.task
        if task not in TASKS:
            raise SkinrayError(f"train.task_model: {uri} is not a downstream model (model.task {task!r}); "
                               f"train one with `skinray train --set model.task=attributes` or segmentation")


# ----------------------------------------------------------------------------- data


def example_tables(manifest: ingest.Manifest, task: str) -> dict[str, pa.Table]:
    """``{"train", "val"}`` tables of (key, uri, mask_uri, label_<attribute>...): the photos of
    each split with what ``task`` learns from (a mask, or at least one known attribute)."""
    table = manifest.table
    labels = {f"{LABEL}{name}": pc.cast(table[name], pa.float32()).fill_null(float("nan"))
              for name in ATTRIBUTES}
    table = pa.table({"key": table["key"], "uri": table["uri"], "split": table["split"],
                      "mask_uri": table["mask_uri"].fill_null(""), **labels})
    if task == "segmentation":
        usable = pc.not_equal(table["mask_uri"], "")
    else:
        usable = functools.reduce(pc.or_, [pc.invert(pc.is_nan(table[f"{LABEL}{n}"])) for n in ATTRIBUTES])
    table = table.filter(usable)
    out = {split: table.filter(pc.equal(table["split"], split)).drop_columns(["split"]) for split in ("train", "val")}
    if not all(t.num_rows for t in out.values()):
        what = "a lesion mask" if task == "segmentation" else "dermoscopic attributes"
        raise SkinrayError(f"model.task {task}: {out['train'].num_rows} train and {out['val'].num_rows} val photos "
                           f"with {what}; need both (skinray ingest --masks DIR --attributes FILE, then train "
                           f"on the manifest)")
    return out


def positive_weights(table: pa.Table) -> list[float]:
    """Per attribute, negatives / positives among the known labels (1 when either is absent)."""
    weights = []
    for name in ATTRIBUTES:
        values = table[f"{LABEL}{name}"].to_numpy(zero_copy_only=False)
        pos, neg = np.nansum(values), np.sum(values == 0)
        weights.append(float(neg / pos) if pos and neg else 1.0)
    return weights


def make_examples(batch: dict[str, np.ndarray], *, image_size: int, task: str,
                  s3: storage.S3Options | None) -> dict[str, np.ndarray]:
    """Ray Data batch function: ``{key, uri, mask_uri, label_*}`` -> ``{key, image (N, S, S, 3)
    uint8, mask (N, S, S) uint8 in {0, 1}, labels (N, 5) float32 (NaN unknown), ok, error}``.
    Photos and masks share :func:`skinray.images.resize_square`'s geometry."""
    n = len(batch["key"])
    image = np.zeros((n, image_size, image_size, 3), np.uint8)
    mask = np.zeros((n, image_size, image_size), np.uint8)
    ok, errors = np.zeros(n, bool), [""] * n
    for i in range(n):
        try:
            image[i] = images.resize_square(images.decode(storage.read_bytes(str(batch["uri"][i]), s3)), image_size)
            if task == "segmentation":
                mask[i] = harm.read_mask(str(batch["mask_uri"][i]), image_size, s3)
            ok[i] = True
        except (SkinrayError, OSError, ValueError) as exc:
            errors[i] = str(exc)
    labels = np.stack([np.asarray(batch[f"{LABEL}{name}"], np.float32) for name in ATTRIBUTES], axis=1)
    return {"key": np.asarray(batch["key"], dtype=object), "image": image, "mask": mask, "labels": labels,
            "ok": ok, "error": np.array(errors, dtype=object)}


def example_datasets(tables: dict[str, pa.Table], cfg: Config, s3: storage.S3Options | None,
                     rows_per_block: int = 16) -> dict[str, "ray.data.Dataset"]:  # noqa: F821
    """Ray Data datasets of examples (read and decoded in parallel tasks), as
    :func:`skinray.data.pair_datasets` makes the enhancer's pairs."""
    import ray.data

    out = {}
    for split, table in tables.items():
        blocks = max(1, min(200, (table.num_rows + rows_per_block - 1) // rows_per_block))
        ds = ray.data.from_arrow(table).repartition(blocks)
        if split == "train":
            ds = ds.randomize_block_order()
        out[split] = ds.map_batches(make_examples, batch_format="numpy", batch_size=rows_per_block,
                                    fn_kwargs={"image_size": cfg.data.image_size, "task": cfg.model.task, "s3": s3})
    return out


# ----------------------------------------------------------------------------- the Ray Train loop


def _sum_keys(task: str) -> tuple[str, ...]:
    base = ("train_loss", "train_images", "train_bad", "val_loss", "val_images", "val_bad")
    if task == "segmentation":
        return base + ("val_dice", "val_iou")
    return base + tuple(f"{c}_{name}" for name in ATTRIBUTES for c in ("tp", "fn", "tn", "fp"))


def _tensors(batch: dict[str, np.ndarray], task: str, device: torch.device):
    """(photos (N, 3, S, S) float in [0, 1], targets: masks (N, 1, S, S) or labels (N, 5), ok (N,))."""
    x = torch.from_numpy(np.ascontiguousarray(batch["image"])).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if task == "segmentation":
        y = torch.from_numpy(np.ascontiguousarray(batch["mask"])).to(device).float()[:, None]
    else:
        y = torch.from_numpy(np.ascontiguousarray(batch["labels"])).to(device).float()
    return x, y, torch.from_numpy(batch["ok"].astype(bool)).to(device)


def _augment(x: torch.Tensor, y: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch turned by a random multiple of 90 degrees and perhaps mirrored (the mask too):
    a lesion has no up."""
    turns, mirror = int(torch.randint(4, ())), bool(torch.randint(2, ()))
    x = torch.rot90(x, turns, (2, 3))
    x = x.flip(3) if mirror else x
    if task == "segmentation":
        y = torch.rot90(y, turns, (2, 3))
        y = y.flip(3) if mirror else y
    return x.contiguous(), y.contiguous()


def _loss(w: train._Worker, logits: torch.Tensor, y: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    if not bool(ok.any()):
        return logits.sum() * 0.0  # every DDP worker runs the same backward passes
    return w.loss_fn(logits[ok], y[ok])


def _train_epoch(w: train._Worker, shard, sums: dict[str, float], bad_seen: set[str]) -> float:
    """One pass over this worker's training shard (augmented); returns its seconds."""
    started = time.perf_counter()
    w.model.train()
    for batch in shard.iter_batches(batch_size=w.cfg.train.batch_size, batch_format="numpy",
                                    prefetch_batches=2, local_shuffle_buffer_size=4 * w.cfg.train.batch_size):
        x, y, ok = _tensors(batch, w.cfg.model.task, w.device)
        x, y = _augment(x, y, w.cfg.model.task)
        loss = _loss(w, w.model(x), y, ok)
        w.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        w.optimizer.step()
        n_ok = int(ok.sum())
        sums["train_loss"] += float(loss.detach()) * n_ok
        sums["train_images"] += n_ok
        sums["train_bad"] += train._note_bad(batch, bad_seen)
    return time.perf_counter() - started


def dice_iou(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> tuple[Any, Any]:
    """Per-image Dice and IoU of boolean masks (N, ...); 1 where both are empty."""
    dims = tuple(range(1, pred.ndim))
    inter = (pred & truth).sum(dims) * 1.0
    total = pred.sum(dims) + truth.sum(dims) * 1.0
    union = total - inter
    empty = total == 0
    dice = 2 * inter / (total + empty)
    iou = inter / (union + empty)
    return dice + empty, iou + empty


def _score_batch(task: str, logits: torch.Tensor, y: torch.Tensor, sums: dict[str, float]) -> None:
    if task == "segmentation":
        dice, iou = dice_iou(logits > 0, y > 0.5)
        sums["val_dice"] += float(dice.sum())
        sums["val_iou"] += float(iou.sum())
        return
    pred = logits > 0
    for j, name in enumerate(ATTRIBUTES):
        known = ~torch.isnan(y[:, j])
        truth, said = y[known, j] > 0.5, pred[known, j]
        for count, hit in (("tp", truth & said), ("fn", truth & ~said), ("tn", ~truth & ~said), ("fp", ~truth & said)):
            sums[f"{count}_{name}"] += float(hit.sum())


@torch.no_grad()
def _validate(w: train._Worker, shard, sums: dict[str, float], bad_seen: set[str]) -> None:
    w.model.eval()
    for batch in shard.iter_batches(batch_size=w.cfg.train.batch_size, batch_format="numpy"):
        sums["val_bad"] += train._note_bad(batch, bad_seen)
        x, y, ok = _tensors(batch, w.cfg.model.task, w.device)
        if not bool(ok.any()):
            continue
        logits, y = w.model(x[ok]), y[ok]
        sums["val_loss"] += float(w.loss_fn(logits, y)) * len(y)
        sums["val_images"] += len(y)
        _score_batch(w.cfg.model.task, logits, y, sums)


def balanced_accuracy(tp: float, fn: float, tn: float, fp: float) -> float:
    """(sensitivity + specificity) / 2; NaN when the positives or the negatives are missing."""
    if not (tp + fn) or not (tn + fp):
        return float("nan")
    return 0.5 * (tp / (tp + fn) + tn / (tn + fp))


def _epoch_metrics(task: str, epoch: int, sums: dict[str, float], seconds: float) -> dict[str, Any]:
    def mean(key: str, count: str) -> float:
        return sums[key] / sums[count] if sums[count] else float("nan")
    m = {"epoch": epoch, "task": task, "train_loss": mean("train_loss", "train_images"),
         "val_loss": mean("val_loss", "val_images"), "train_images": int(sums["train_images"]),
         "val_images": int(sums["val_images"]), "skipped": int(sums["train_bad"] + sums["val_bad"]),
         "images_per_s": sums["train_images"] / seconds if seconds > 0 else 0.0, "epoch_seconds": seconds}
    if task == "segmentation":
        m.update(val_dice=mean("val_dice", "val_images"), val_iou=mean("val_iou", "val_images"))
        return m
    per = {name: balanced_accuracy(*(sums[f"{c}_{name}"] for c in ("tp", "fn", "tn", "fp"))) for name in ATTRIBUTES}
    m.update({f"val_balanced_accuracy_{name}": value for name, value in per.items()})
    known = [v for v in per.values() if not math.isnan(v)]
    m["val_balanced_accuracy"] = float(np.mean(known)) if known else float("nan")
    return m


def summary_line(m: dict[str, Any], epochs: int | None = None) -> str:
    """One line of a downstream epoch's metrics (``epochs``: an epoch line, else the best's)."""
    head = f"epoch {m['epoch'] + 1}/{epochs}" if epochs else f"best epoch {m['epoch'] + 1}:"
    score = (f"val_dice={m['val_dice']:.4f} val_iou={m['val_iou']:.4f}" if m["task"] == "segmentation" else
             f"val_balanced_accuracy={m['val_balanced_accuracy']:.4f} (" + ", ".join(
                 f"{name} {m[f'val_balanced_accuracy_{name}']:.3f}" for name in ATTRIBUTES) + ")")
    return (f"{head} {m['task']} train_loss={m['train_loss']:.4f} val_loss={m['val_loss']:.4f} {score} "
            f"skipped={m['skipped']} {m['images_per_s']:.1f} img/s")


def _setup(cfg: Config, pos_weight: list[float]) -> train._Worker:
    import ray.train
    import ray.train.torch

    device = ray.train.torch.get_device()
    model = build_task_model(cfg.model)
    if cfg.train.init and ray.train.get_checkpoint() is None:
        model.load_state_dict(checkpoint.load(cfg.train.init, s3=storage.S3Options.from_config(cfg.storage))
                              .model.state_dict())
    model = ray.train.torch.prepare_model(model)
    weights = torch.tensor(pos_weight, device=device)

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, y) if cfg.model.task == "segmentation" else attribute_loss(logits, y, weights)
    context = ray.train.get_context()
    return train._Worker(cfg, context.get_world_rank(), context.get_world_size(), device, False, model,
                         torch.optim.Adam(model.parameters(), lr=cfg.train.lr), loss_fn)


def _all_reduce(sums: dict[str, float], device: torch.device) -> dict[str, float]:
    keys = list(sums)
    values = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return dict(zip(keys, values.tolist()))


def _report(w: train._Worker, epoch: int, metrics: dict[str, Any], history: list, fingerprint: str) -> None:
    import ray.train

    if w.rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    train._say(summary_line(metrics, w.cfg.train.epochs))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(tmp, w.model, w.cfg, metrics, history, fingerprint, optimizer=w.optimizer, epoch=epoch)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=f"epoch_{epoch:04d}")


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: ``loop_config`` {"config", "fingerprint", "pos_weight"}."""
    import ray.train

    w = _setup(Config.from_dict(loop_config["config"]), loop_config["pos_weight"])
    start_epoch, history = train._resume(w)
    shards = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    bad_seen: set[str] = set()
    for epoch in range(start_epoch, w.cfg.train.epochs):
        sums = dict.fromkeys(_sum_keys(w.cfg.model.task), 0.0)
        for group in w.optimizer.param_groups:
            group["lr"] = train.learning_rate(w.cfg, epoch)
        seconds = _train_epoch(w, shards[0], sums, bad_seen)
        _validate(w, shards[1], sums, bad_seen)
        totals = _all_reduce(sums, w.device)
        if totals["train_images"] == 0:
            raise SkinrayError("no training image could be decoded: every file was skipped")
        history.append(_epoch_metrics(w.cfg.model.task, epoch, totals, seconds))
        _report(w, epoch, history[-1], history, loop_config["fingerprint"])


def fit(cfg: Config, ray_address: str | None = None) -> train.FitSummary:
    """Train the downstream model ``model.task`` names with Ray Train (``train.workers`` workers),
    checkpoints in ``train.storage``/``train.name``; the best (lowest validation loss) exported."""
    import ray.train

    from skinray.runtime import init_ray

    manifest, s3 = train.prepare(cfg)
    tables = example_tables(manifest, cfg.model.task)
    print(f"[skinray] {cfg.model.task}: {tables['train'].num_rows} train / {tables['val'].num_rows} val photos "
          f"with {'a lesion mask' if cfg.model.task == 'segmentation' else 'attributes'}", flush=True)
    train.check_resume(cfg, manifest, s3)
    init_ray(ray_address)
    trainer = train.make_trainer(cfg, manifest, s3, loop=train_loop_per_worker,
                                 datasets=example_datasets(tables, cfg, s3),
                                 extra_config={"pos_weight": positive_weights(tables["train"])})
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise SkinrayError(f"training run {cfg.train.name!r} failed: {train._root_cause(exc)}") from None
    return train._export_best(cfg, result, manifest, s3)
