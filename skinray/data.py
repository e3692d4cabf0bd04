"""Training data: the Ray Data pipelines that turn a manifest (:mod:`skinray.ingest`) into
(degraded input, clean target) pairs in parallel.

Pipeline rows: ``input`` and ``target`` are ``uint8`` ``(S, S, 3)``; ``ok`` is False for images
that could not be read or decoded (their arrays are zeros and ``error`` says why: the training
loop skips and counts them); ``subset`` says which faults the input got: ``colour`` (a colour
fault, perhaps blur/noise/JPEG too), ``camera`` (blur/noise/JPEG only) or ``clean`` (input ==
target), see :attr:`skinray.degrade.Degradation.subset`.

Only the manifest's ``train`` split is trained on and only ``val`` picks the model; ``test`` is
never read here. With ``data.synthetic`` (a folder of ``skinray synth`` photos), a
``data.synthetic_share`` of each epoch's training pairs are synthetic: the train table gets that
many slots (:func:`training_tables`), each filled by a synthetic photo drawn afresh every epoch
(:func:`pick_synthetic`); their keys read ``synthetic/<key>``.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from skinray import degrade, ground_truth, images, storage
from skinray.config import Config, DegradeConfig
from skinray.errors import SkinrayError
from skinray.ingest import Manifest

log = logging.getLogger("skinray.data")
SLOT = "synthetic:"  # key prefix of a training slot that a synthetic photo fills
SYNTHETIC = "synthetic/"  # key prefix of a pair made from a synthetic photo


def synthetic_pool(cfg: Config, s3: storage.S3Options | None = None) -> list[tuple[str, str]]:
    """(key, URI) of the photos under ``data.synthetic`` (listed, not read: unreadable ones are
    skipped in training like any photo); [] when it is not set. No photo there is an error."""
    if not cfg.data.synthetic:
        return []
    pool = [(e.key, e.uri) for e in storage.list_files(cfg.data.synthetic, s3)
            if images.is_image_key(e.key) and not ground_truth.is_annotation(e.key)]
    if not pool:
        raise SkinrayError(f"data.synthetic {cfg.data.synthetic}: no photos there; make some with "
                           f"`skinray synth {cfg.data.synthetic}` or set data.synthetic to ''")
    return pool


def synthetic_slots(n_real: int, share: float) -> int:
    """How many synthetic pairs an epoch of ``n_real`` real training pairs gets, so that they are
    ``share`` of all its pairs (``share`` in [0, 1))."""
    return round(n_real * share / (1.0 - share)) if n_real else 0


def training_tables(manifest: Manifest, cfg: Config, n_synthetic: int = 0) -> dict[str, pa.Table]:
    """``{"train", "val"}`` tables of (key, uri): the manifest's train split (plus the synthetic
    slots, when ``n_synthetic`` photos are mixed in) and its val split. The test split is in neither."""
    table = manifest.table.select(["key", "uri", "split"])
    out = {split: table.filter(pa.compute.equal(table["split"], split)).select(["key", "uri"])
           for split in ("train", "val")}
    slots = synthetic_slots(out["train"].num_rows, cfg.data.synthetic_share) if n_synthetic else 0
    if slots:  # spread evenly through the table, so that every block (and batch) mixes both
        real = out["train"].num_rows
        filler = pa.table({"key": [f"{SLOT}{i}" for i in range(slots)], "uri": [""] * slots},
                          schema=out["train"].schema)
        order = np.argsort(np.concatenate([(np.arange(real) + 0.5) / real, (np.arange(slots) + 0.5) / slots]),
                           kind="stable")
        out["train"] = pa.concat_tables([out["train"], filler]).take(pa.array(order))
    return out


def pick_synthetic(key: str, uri: str, pool: list[tuple[str, str]], rng: np.random.Generator) -> tuple[str, str]:
    """The photo behind one training row: itself, or for a synthetic slot a photo of ``pool``
    drawn with ``rng`` (anew every epoch), keyed ``synthetic/<key>``."""
    if not key.startswith(SLOT):
        return key, uri
    picked_key, picked_uri = pool[int(rng.integers(len(pool)))]
    return SYNTHETIC + picked_key, picked_uri


def make_pairs(batch: dict[str, np.ndarray], *, split: str, image_size: int, degrade_cfg: dict,
               seed: int, s3: storage.S3Options | None,
               synthetic: list[tuple[str, str]] | None = None) -> dict[str, np.ndarray]:
    """Ray Data batch function: ``{key, uri}`` -> ``{key, input, target, ok, subset, error}``.

    Training draws fresh randomness on every call, so each epoch (a new pass over the dataset)
    degrades each image differently (other images jittered or left clean, new parameters).
    Validation draws from :func:`skinray.degrade.key_rng` (seed, key): the same degradation
    every epoch. Synthetic slots (keys ``synthetic:<i>``) are filled from ``synthetic``, the
    (key, URI) pairs of :func:`synthetic_pool`.
    """
    cfg = DegradeConfig(**degrade_cfg)
    train_rng = np.random.default_rng()  # fresh OS entropy: a new draw every epoch
    picked = [pick_synthetic(str(k), str(u), synthetic or [], train_rng) for k, u in zip(batch["key"], batch["uri"])]
    keys = [key for key, _ in picked]
    n = len(keys)
    inputs = np.zeros((n, image_size, image_size, 3), np.uint8)
    targets = np.zeros_like(inputs)
    ok = np.zeros(n, bool)
    subsets = [""] * n  # "" for rows that could not be read
    errors = [""] * n
    for i, (key, uri) in enumerate(picked):
        try:
            clean = images.resize_square(images.decode(storage.read_bytes(str(uri), s3)), image_size)
        except SkinrayError as exc:
            errors[i] = str(exc)
            log.warning("skipping %s: %s", key, exc)
            continue
        rng = train_rng if split == "train" else degrade.key_rng(seed, key)
        clean = degrade.vary_uint8(clean, rng, cfg.natural_variation)
        clean = degrade.vary_tone_uint8(clean, rng, cfg.tone_prob, cfg.tone_depth)
        drawn = degrade.sample(rng, cfg, image=clean)
        inputs[i] = degrade.apply_uint8(clean, drawn)
        targets[i] = clean
        ok[i] = True
        subsets[i] = drawn.subset
    return {"key": np.array(keys, dtype=object), "input": inputs, "target": targets, "ok": ok,
            "subset": np.array(subsets, dtype=object), "error": np.array(errors, dtype=object)}


def pair_datasets(manifest: Manifest, cfg: Config, s3: storage.S3Options | None = None,
                  rows_per_block: int = 16) -> dict[str, "ray.data.Dataset"]:  # noqa: F821
    """Ray Data datasets of pairs for training (the train split, with ``data.synthetic``'s
    share of synthetic photos) and validation (the val split), read and degraded in parallel tasks."""
    import ray.data

    pool = synthetic_pool(cfg, s3)
    out = {}
    for split, table in training_tables(manifest, cfg, len(pool)).items():
        blocks = max(1, min(200, (table.num_rows + rows_per_block - 1) // rows_per_block))
        ds = ray.data.from_arrow(table).repartition(blocks)
        if split == "train":
            ds = ds.randomize_block_order()
        out[split] = ds.map_batches(
            make_pairs, batch_format="numpy", batch_size=rows_per_block,
            fn_kwargs={"split": split, "image_size": cfg.data.image_size,
                       "degrade_cfg": cfg.degrade.__dict__.copy(), "seed": cfg.data.seed, "s3": s3,
                       "synthetic": pool if split == "train" else None},
        )
    return out
