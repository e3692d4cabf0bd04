"""Ray Train loop vs a plain single-process PyTorch loop: same data, model, batch size, threads.

    .venv/bin/python benchmarks/train_throughput.py [--images 240] [--size 96] [--epochs 4] [--threads 2]

Both loops train on the same synthetic photos with the same degradations. Ray's figure is the
steady-state training throughput its workers report (epochs after the first, training phase
only, data streamed by Ray Data); the baseline trains on the same number of pre-degraded images
held in memory, so the ratio is Ray's per-step overhead. Prints images/s and the ratio, and
writes them to benchmarks/results/ (_results.py).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from _results import write_result

from skinray import degrade, images, ingest, synth
from skinray.config import load_config
from skinray.losses import make_loss
from skinray.model import build_model
from skinray.train import fit


def _pairs(cfg, rows: list[dict], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, decode and degrade: (input, target) float tensors (N, 3, S, S)."""
    clean = np.stack([images.resize_square(images.decode(open(r["uri"], "rb").read()), cfg.data.image_size)
                      for r in rows]).astype(np.float32) / 255.0
    noisy = np.stack([degrade.apply(img, degrade.sample(rng, cfg.degrade)) for img in clean])
    return (torch.from_numpy(noisy).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(clean).permute(0, 3, 1, 2).contiguous())


def plain_loop(cfg, manifest: ingest.Manifest, epochs: int, threads: int, preprocess_each_epoch: bool) -> float:
    """Images/s of a single-process loop; with ``preprocess_each_epoch`` it also reads, decodes
    and degrades every epoch in the same process (inside the timed region), else it trains on
    pairs prepared once in memory (pure compute)."""
    torch.set_num_threads(threads)
    rows = [r for r in manifest.table.to_pylist() if r["split"] == "train"]
    rng = np.random.default_rng(0)
    x, y = _pairs(cfg, rows, rng)
    model = build_model(cfg.model).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    loss_fn = make_loss(cfg.train.loss)
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        if preprocess_each_epoch:
            x, y = _pairs(cfg, rows, rng)
        order = torch.randperm(len(x))
        for i in range(0, len(x), cfg.train.batch_size):
            idx = order[i:i + cfg.train.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rates.append(len(x) / (time.perf_counter() - start))
    return float(np.median(rates[1:] if len(rates) > 1 else rates))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (= CPUs per Ray worker)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synth.write_dataset(f"{tmp}/data", args.images, size=args.size, seed=0)
        cfg = load_config(overrides={"data.source": f"{tmp}/data", "data.image_size": args.size,
                                     "train.storage": f"{tmp}/runs", "train.name": "bench",
                                     "train.epochs": args.epochs, "train.workers": 1,
                                     "train.cpus_per_worker": args.threads, "model.arch": "poster",
                                     "train.loss": "ssim"})  # the README's figures: the poster network
        manifest = ingest.load_or_build_manifest(cfg)
        compute_only = plain_loop(cfg, manifest, args.epochs, args.threads, preprocess_each_epoch=False)
        with_data = plain_loop(cfg, manifest, args.epochs, args.threads, preprocess_each_epoch=True)
        summary = fit(cfg)
        later = summary.history[1:] or summary.history
        ray_rates = [h["images_per_s"] for h in later]
        ray_rate = float(np.median(ray_rates))
        steady_rate = float(np.median([h["steady_images_per_s"] for h in later]))
    print(f"\n{args.images} images ({manifest.count('train')} train) at {args.size}px, batch "
          f"{cfg.train.batch_size}, {args.threads} threads, {args.epochs} epochs")
    print(f"plain loop, pairs prepared once in memory : {compute_only:8.1f} img/s")
    print(f"plain loop, decode+degrade in-process     : {with_data:8.1f} img/s")
    print(f"Ray Train + Ray Data (1 worker), epoch    : {ray_rate:8.1f} img/s  (per epoch: "
          f"{', '.join(f'{r:.1f}' for r in ray_rates)})")
    print(f"Ray, after each epoch's first step       : {steady_rate:8.1f} img/s  (per-step, excludes the "
          f"wait for a new epoch's stream to start)")
    print(f"ratio Ray / plain compute-only: whole epoch {ray_rate / compute_only:.3f}, per-step "
          f"{steady_rate / compute_only:.3f} (per-step overhead {100 * (1 - steady_rate / compute_only):.1f}%)")
    print(f"ratio Ray / plain with data   : whole epoch {ray_rate / with_data:.3f}, per-step "
          f"{steady_rate / with_data:.3f}")
    write_result("train_throughput", {
        "plain_compute_only_img_s": compute_only, "plain_with_data_img_s": with_data,
        "ray_epoch_img_s": ray_rate, "ray_epoch_img_s_each": ray_rates, "ray_steady_img_s": steady_rate,
        "ratio_ray_to_compute_only": {"epoch": ray_rate / compute_only, "step": steady_rate / compute_only},
        "ratio_ray_to_plain_with_data": {"epoch": ray_rate / with_data, "step": steady_rate / with_data},
    }, params={**vars(args), "train_images": manifest.count("train"), "batch_size": cfg.train.batch_size})


if __name__ == "__main__":
    main()
