"""Training losses on (N, 3, H, W) tensors in [0, 1]; each returns a scalar to minimise."""

from __future__ import annotations

from typing import Callable

import torch

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (pytorch-msssim, 11-px Gaussian window, data_range=1), averaged over the batch."""
    from pytorch_msssim import (
        ssim,  # here: the other losses (benchmarks/gpu_check.py) run without it
    )

    return 1.0 - ssim(pred.float(), target.float(), data_range=1.0, size_average=True)


def mae_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).abs().mean()


PSNR_FLOOR_MSE = 1e-4  # 40 dB: beyond it, an image that is already right weighs no more


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over images of -PSNR/10 = log10(MSE + 1e-4): the mean per-image PSNR the evaluation
    reports, as a loss. Its gradient on each image is that of its MSE divided by the MSE, so a
    photo that is nearly right (a clean one, left alone) weighs as much as a badly wrong one:
    doing no harm to good photos is trained for, not averaged away. Floored at 40 dB."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)  # (N,)
    return torch.log10(mse + PSNR_FLOOR_MSE).mean()


def make_loss(name: str, ssim_weight: float = 0.84) -> LossFn:
    """``ssim`` | ``mae`` | ``psnr`` | ``mae+ssim`` (= w * (1 - SSIM) + (1 - w) * MAE)."""
    if name == "ssim":
        return ssim_loss
    if name == "mae":
        return mae_loss
    if name == "psnr":
        return psnr_loss
    if name == "mae+ssim":
        def mixed(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return ssim_weight * ssim_loss(pred, target) + (1.0 - ssim_weight) * mae_loss(pred, target)
        return mixed
    raise ValueError(f"unknown loss {name!r}")
