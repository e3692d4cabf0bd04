"""Training data: the Ray Data pipelines that turn a manifest (:mod:`skinray.ingest`) into
(degraded input, clean target) pairs in parallel.

Pipeline rows: ``input`` and ``target`` are ``uint8`` ``(S, S, 3)``; ``ok`` is False for images
that could not be read or decoded (their arrays are zeros and ``error`` says why: the training
loop skips and counts them); ``subset`` says which faults the input got: ``colour`` (a colour
fault, perhaps blur/noise/JPEG too), ``camera`` (blur/noise/JPEG only) or ``clean`` (input ==
target), see :attr:`skinray.degrade.Degradation.subset`.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from skinray import degrade, images, storage
from skinray.config import Config, DegradeConfig
from skinray.errors import SkinrayError
from skinray.ingest import Manifest

log = logging.getLogger("skinray.data")


def make_pairs(batch: dict[str, np.ndarray], *, split: str, image_size: int, degrade_cfg: dict,
               seed: int, s3: storage.S3Options | None) -> dict[str, np.ndarray]:
    """Ray Data batch function: ``{key, uri}`` -> ``{key, input, target, ok, subset, error}``.

    Training draws fresh randomness on every call, so each epoch (a new pass over the dataset)
    degrades each image differently (other images jittered or left clean, new parameters).
    Validation draws from :func:`skinray.degrade.key_rng` (seed, key): the same degradation
    every epoch.
    """
    cfg = DegradeConfig(**degrade_cfg)
    keys = [str(k) for k in batch["key"]]
    n = len(keys)
    inputs = np.zeros((n, image_size, image_size, 3), np.uint8)
    targets = np.zeros_like(inputs)
    ok = np.zeros(n, bool)
    subsets = [""] * n  # "" for rows that could not be read
    errors = [""] * n
    train_rng = np.random.default_rng()  # fresh OS entropy: a new draw every epoch
    for i, (key, uri) in enumerate(zip(keys, batch["uri"])):
        try:
            clean = images.resize_square(images.decode(storage.read_bytes(str(uri), s3)), image_size)
        except SkinrayError as exc:
            errors[i] = str(exc)
            log.warning("skipping %s: %s", key, exc)
            continue
        rng = train_rng if split == "train" else degrade.key_rng(seed, key)
        clean = degrade.vary_uint8(clean, rng, cfg.natural_variation)
        drawn = degrade.sample(rng, cfg, image=clean)
        inputs[i] = degrade.apply_uint8(clean, drawn)
        targets[i] = clean
        ok[i] = True
        subsets[i] = drawn.subset
    return {"key": np.array(keys, dtype=object), "input": inputs, "target": targets, "ok": ok,
            "subset": np.array(subsets, dtype=object), "error": np.array(errors, dtype=object)}


def pair_datasets(manifest: Manifest, cfg: Config, s3: storage.S3Options | None = None,
                  rows_per_block: int = 16) -> dict[str, "ray.data.Dataset"]:  # noqa: F821
    """Ray Data datasets of pairs for each split, read and degraded in parallel tasks."""
    import ray.data

    out = {}
    for split in ("train", "val"):
        table = manifest.table.filter(pa.compute.equal(manifest.table["split"], split)).select(["key", "uri"])
        blocks = max(1, min(200, (table.num_rows + rows_per_block - 1) // rows_per_block))
        ds = ray.data.from_arrow(table).repartition(blocks)
        if split == "train":
            ds = ds.randomize_block_order()
        out[split] = ds.map_batches(
            make_pairs, batch_format="numpy", batch_size=rows_per_block,
            fn_kwargs={"split": split, "image_size": cfg.data.image_size,
                       "degrade_cfg": cfg.degrade.__dict__.copy(), "seed": cfg.data.seed, "s3": s3},
        )
    return out
