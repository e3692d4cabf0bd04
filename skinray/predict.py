"""The one predictor: an :class:`Enhancer` turns decoded photos into enhanced photos of the same
size. Batch jobs (Ray Data ``map_batches``) and the online endpoint both call it."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from skinray import checkpoint, storage
from skinray.checkpoint import LoadedModel


class Enhancer:
    """Wraps a loaded checkpoint. Inputs and outputs are RGB ``uint8`` arrays ``(H, W, 3)``."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu"):
        self.loaded = loaded
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, uri: str, device: str | torch.device | None = None,
                        s3: storage.S3Options | None = None) -> "Enhancer":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(checkpoint.load(uri, device="cpu", s3=s3), device)

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    @torch.no_grad()
    def enhance_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Enhance images of equal size in one forward pass; returns uint8 arrays of the same shapes."""
        if not images:
            return []
        stack = np.stack([np.asarray(img, np.uint8) for img in images])  # (N, H, W, 3)
        x = torch.from_numpy(stack).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W)
        y = self.model(x).clamp_(0, 1).mul_(255.0).add_(0.5).to(torch.uint8)  # (N, 3, H, W)
        return list(y.permute(0, 2, 3, 1).cpu().numpy())  # N x (H, W, 3)

    def enhance(self, image: np.ndarray) -> np.ndarray:
        return self.enhance_batch([image])[0]
