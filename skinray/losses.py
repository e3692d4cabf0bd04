"""Training losses on (N, 3, H, W) tensors in [0, 1]; each returns a scalar to minimise."""

from __future__ import annotations

from typing import Callable

import torch
from pytorch_msssim import ssim

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (pytorch-msssim, 11-px Gaussian window, data_range=1), averaged over the batch."""
    return 1.0 - ssim(pred.float(), target.float(), data_range=1.0, size_average=True)


def mae_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).abs().mean()


def make_loss(name: str, ssim_weight: float = 0.84) -> LossFn:
    """``ssim`` | ``mae`` | ``mae+ssim`` (= w * (1 - SSIM) + (1 - w) * MAE)."""
    if name == "ssim":
        return ssim_loss
    if name == "mae":
        return mae_loss
    if name == "mae+ssim":
        def mixed(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return ssim_weight * ssim_loss(pred, target) + (1.0 - ssim_weight) * mae_loss(pred, target)
        return mixed
    raise ValueError(f"unknown loss {name!r}")
