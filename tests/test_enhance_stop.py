"""Enhancer.enhance(..., should_stop=...): checked between tiles (the endpoint's deadline and
client-disconnect stop)."""

import numpy as np
import pytest

from skinray.checkpoint import LoadedModel
from skinray.config import Config, ModelConfig
from skinray.errors import EnhanceStopped
from skinray.model import build_model
from skinray.predict import Enhancer


def _enhancer() -> Enhancer:
    import torch

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(arch="poster", width=4))  # a tiled model (the default light one maps strips)
    return Enhancer(LoadedModel(model=build_model(cfg.model), config=cfg, metrics={}, uri="mem"),
                    tile=64, margin=8)


def test_should_stop_is_checked_between_tiles():
    enhancer = _enhancer()
    image = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    calls = []

    def stop_after_three() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(EnhanceStopped):
        enhancer.enhance(image, should_stop=stop_after_three)
    assert len(calls) == 4, "one check per tile, stopped at the fourth"
    np.testing.assert_array_equal(enhancer.enhance(image, should_stop=lambda: False), enhancer.enhance(image))
