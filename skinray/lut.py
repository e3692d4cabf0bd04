"""Colour lookup: per-channel 1-D curves and 3-D lookup tables, applied to image tensors.

Tensor contract: images are ``float32`` tensors ``(N, 3, H, W)`` with values in ``[0, 1]`` (RGB).
A 3-D table of size ``D`` is a tensor ``(N, 3, D, D, D)`` indexed ``[n, out_channel, b, g, r]``:
the output colour at lattice point ``(r, g, b) = (i, j, k) / (D - 1)``. Colours between lattice
points are interpolated trilinearly (:func:`torch.nn.functional.grid_sample`, CPU and GPU), so a
table that is linear in ``(r, g, b)`` -- the identity, a channel swap, any 3x4 colour matrix --
is applied exactly. Curves are ``(N, 3, K)``: ``K`` evenly spaced samples of one monotone
function per channel on ``[0, 1]``, interpolated linearly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import ImageFilter


def identity_lut(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The identity table, ``(3, D, D, D)``: ``lut[c, b, g, r]`` is channel ``c`` of ``(r, g, b)``."""
    axis = torch.linspace(0.0, 1.0, size, device=device)
    b, g, r = torch.meshgrid(axis, axis, axis, indexing="ij")  # each (D, D, D), [b, g, r]
    return torch.stack([r, g, b])  # (3, D, D, D)


def apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map every pixel of ``x`` (N, 3, H, W) through its image's table ``lut`` (N, 3, D, D, D)."""
    n, _, h, w = x.shape
    # grid_sample's last grid axis is (x, y, z) = (W, H, D) of the table = (r, g, b) of the pixel.
    grid = x.permute(0, 2, 3, 1).reshape(n, 1, h, w, 3) * 2.0 - 1.0  # (N, 1, H, W, 3) in [-1, 1]
    out = F.grid_sample(lut, grid.to(lut.dtype), mode="bilinear", padding_mode="border",
                        align_corners=True)  # (N, 3, 1, H, W)
    return out.reshape(n, 3, h, w)


def to_pillow(table: torch.Tensor) -> ImageFilter.Color3DLUT:
    """One image's table ``(1, 3, D, D, D)`` as Pillow's ``Color3DLUT``, which applies it to 8-bit
    RGB pixels in C: the same trilinear interpolation in fixed point (1/64 of a grey level; table
    values limited to [-2, 2]), within 1 grey level of :func:`apply_lut` rounded to 8 bits."""
    d = table.shape[-1]
    flat = table[0].permute(1, 2, 3, 0).reshape(-1).float().cpu().numpy()  # [b, g, r, c]: c fastest, then r
    return ImageFilter.Color3DLUT(d, flat, channels=3)


def identity_curves(points: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(3, K)``: the identity curve sampled at K points, for each channel."""
    return torch.linspace(0.0, 1.0, points, device=device).expand(3, points).clone()


def apply_curves(x: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """Per-channel piecewise-linear curves: ``x`` (N, 3, H, W), ``curves`` (N, 3, K) -> (N, 3, H, W)."""
    n, c, h, w = x.shape
    k = curves.shape[-1]
    pos = x.clamp(0.0, 1.0).reshape(n, c, h * w) * (k - 1)  # (N, 3, HW) in [0, K-1]
    low = pos.floor().clamp(max=k - 2)
    frac = pos - low
    low = low.long()
    left = torch.gather(curves, 2, low)  # (N, 3, HW)
    right = torch.gather(curves, 2, low + 1)
    return (left + frac * (right - left)).reshape(n, c, h, w)


def thumbnail(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-averaged ``size x size`` view of whole images: (N, 3, H, W) -> (N, 3, size, size).
    Images smaller than ``size`` are stretched bilinearly. The same function serves training,
    whole-image and tiled inference, so all three see the same thumbnail."""
    h, w = x.shape[-2:]
    if h >= size and w >= size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def smoothness(lut: torch.Tensor) -> torch.Tensor:
    """Mean squared second difference along each lattice axis (tables ``(..., D, D, D)``): 0 for
    any table linear in (r, g, b) (identity, colour matrices), so it pulls towards smooth,
    locally near-linear mappings without penalising a steep (high-contrast) one."""
    return sum(lut.diff(n=2, dim=d).pow(2).mean() for d in (-1, -2, -3))


def monotonicity(lut: torch.Tensor) -> torch.Tensor:
    """How much each output channel decreases along its own input axis (tables ``(..., 3, D, D, D)``):
    0 when brighter red in gives no less red out, and likewise for green and blue."""
    red = lut[..., 0, :, :, :].diff(dim=-1)
    green = lut[..., 1, :, :, :].diff(dim=-2)
    blue = lut[..., 2, :, :, :].diff(dim=-3)
    return sum(F.relu(-d).mean() for d in (red, green, blue))
