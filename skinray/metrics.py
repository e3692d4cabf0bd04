"""Image-quality metrics on (N, 3, H, W) tensors in [0, 1], one value per image."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, shape (N,). Identical images give +inf."""
    mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image, shape (N,), 1 for identical images."""
    return ssim(pred.float(), target.float(), data_range=1.0, size_average=False)
