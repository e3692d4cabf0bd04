"""Figures: the loss curve and before/after grids (PNG files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw


def loss_curve(history: Sequence[dict[str, Any]], path: str | Path, title: str = "skinray training") -> Path:
    """Training and validation loss per epoch (the poster's Fig. 4), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], path: str | Path) -> Path:
    """A grid of equally sized uint8 RGB images, one labelled column per entry of ``labels``."""
    h, w = rows[0][0].shape[:2]
    header = 18
    sheet = Image.new("RGB", (len(labels) * w, header + len(rows) * h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((c * w + 4, 3), label, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            sheet.paste(Image.fromarray(np.asarray(img, np.uint8)), (c * w, header + r * h))
    sheet.save(path)
    return Path(path)
