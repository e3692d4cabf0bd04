"""GPU check (at most a few minutes): training steps and inference in bf16 mixed precision with
channels_last, against fp32 in the same run. Needs no Ray and no data: synthetic skin photos.

    python benchmarks/gpu_check.py [--size 256] [--batch 16] [--steps 50] [--arch lut]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from skinray import degrade
from skinray.config import DegradeConfig, ModelConfig
from skinray.losses import make_loss
from skinray.model import build_model
from skinray.synth import skin_image


def batches(size: int, batch: int, device: torch.device):
    clean = np.stack([skin_image(0, i, size) for i in range(batch)]).astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    noisy = np.stack([degrade.apply(img, degrade.sample(rng, DegradeConfig())) for img in clean])
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous().to(device)  # (N, 3, S, S)
    return to(noisy), to(clean)


def timed(fn, steps: int, device: torch.device) -> float:
    for _ in range(3):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(mode: str, args, device: torch.device) -> tuple[float, float]:
    fast = mode == "bf16+channels_last"
    model = build_model(ModelConfig(arch=args.arch)).to(device)
    x, y = batches(args.size, args.batch, device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    loss_fn = make_loss("ssim")

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            pred = model(x)
        loss = loss_fn(pred.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            model(x)

    model.train()
    train_s = timed(train_step, args.steps, device)
    model.eval()
    infer_s = timed(infer_step, args.steps, device)
    return args.steps * args.batch / train_s, args.steps * args.batch / infer_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--arch", default="lut")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (no GPU found)"
    print(f"device: {name}; torch {torch.__version__}; {args.size}x{args.size}, batch {args.batch}, "
          f"{args.steps} steps")
    results = {mode: run(mode, args, device) for mode in ("fp32", "bf16+channels_last")}
    for mode, (train_ips, infer_ips) in results.items():
        print(f"{mode:>20}: train {train_ips:9.1f} img/s   inference {infer_ips:9.1f} img/s")
    base, fast = results["fp32"], results["bf16+channels_last"]
    print(f"speed-up bf16+channels_last / fp32: train {fast[0] / base[0]:.2f}x, inference {fast[1] / base[1]:.2f}x")


if __name__ == "__main__":
    main()
