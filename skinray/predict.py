"""The one predictor: an :class:`Enhancer` turns decoded photos into enhanced photos of the same
size. The batch job (Ray Data ``map_batches``) and the online endpoint both call it.

Large images are enhanced in tiles: each output tile of at most ``tile - 2 * margin`` pixels is
computed from an input window ``margin`` pixels larger on every side (clipped at the image
border), and only the window's centre is kept. For a fully convolutional model whose receptive
field radius is at most ``margin`` this gives exactly the whole-image result, with bounded
memory and no seams.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from skinray import checkpoint, storage
from skinray.checkpoint import LoadedModel

DEFAULT_TILE = 512  # pixels per side of the window fed to the model
DEFAULT_MARGIN = 32  # context pixels around each kept tile; >= the model's receptive radius


class Enhancer:
    """Wraps a loaded checkpoint. Inputs and outputs are RGB ``uint8`` arrays ``(H, W, 3)``."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu",
                 tile: int = DEFAULT_TILE, margin: int = DEFAULT_MARGIN):
        if tile <= 2 * margin:
            raise ValueError(f"tile ({tile}) must be larger than twice the margin ({margin})")
        self.loaded = loaded
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        self.tile, self.margin = tile, margin

    @classmethod
    def from_checkpoint(cls, uri: str, device: str | torch.device | None = None,
                        s3: storage.S3Options | None = None, **kwargs) -> "Enhancer":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(checkpoint.load(uri, device="cpu", s3=s3), device, **kwargs)

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    @torch.no_grad()
    def _forward(self, stack: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, H, W, 3) uint8 through the model in one pass."""
        x = torch.from_numpy(np.ascontiguousarray(stack)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W) in [0, 1]
        y = self.model(x).clamp_(0, 1).mul_(255.0).add_(0.5).to(torch.uint8)  # (N, 3, H, W)
        return y.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, 3)

    def _tiled(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        step = self.tile - 2 * self.margin  # size of the kept centre of each window
        out = np.empty_like(image)
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                y1, x1 = min(y0 + step, h), min(x0 + step, w)
                wy0, wx0 = max(0, y0 - self.margin), max(0, x0 - self.margin)
                wy1, wx1 = min(h, y1 + self.margin), min(w, x1 + self.margin)
                window = self._forward(image[None, wy0:wy1, wx0:wx1])[0]
                out[y0:y1, x0:x1] = window[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
        return out

    def enhance_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Enhance any number of images of any sizes. Images of equal size that fit in one tile
        share a forward pass; larger ones are tiled. Returns uint8 arrays of the input shapes."""
        results: list[np.ndarray | None] = [None] * len(images)
        same_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            image = np.asarray(image, np.uint8)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {image.shape}")
            if max(image.shape[:2]) > self.tile:
                results[i] = self._tiled(image)
            else:
                same_size[image.shape[:2]].append(i)
        for indices in same_size.values():
            enhanced = self._forward(np.stack([np.asarray(images[i], np.uint8) for i in indices]))
            for i, out in zip(indices, enhanced):
                results[i] = out
        return results  # type: ignore[return-value]

    def enhance(self, image: np.ndarray) -> np.ndarray:
        return self.enhance_batch([image])[0]
