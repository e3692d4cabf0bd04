import math

import pytest
import torch

from skinray.losses import make_loss
from skinray.metrics import psnr, ssim_per_image


def test_psnr_known_values():
    a = torch.zeros(1, 3, 16, 16)
    assert math.isinf(float(psnr(a, a)[0]))
    assert float(psnr(a, a + 0.1)[0]) == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB


def test_ssim_identical_is_one_and_noise_lowers_it():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim_per_image(a, a), torch.ones(2), atol=1e-5)
    assert float(ssim_per_image(a, (a + 0.3 * torch.rand_like(a)).clamp(0, 1)).max()) < 0.95


@pytest.mark.parametrize("name", ["ssim", "mae", "mae+ssim"])
def test_losses_are_zero_for_identical_and_positive_otherwise(name):
    loss = make_loss(name, ssim_weight=0.5)
    a = torch.rand(2, 3, 32, 32)
    assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(a, 1 - a)) > 0.1


def test_mixed_loss_weights_its_parts():
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    ssim_part, mae_part = float(make_loss("ssim")(a, b)), float(make_loss("mae")(a, b))
    assert float(make_loss("mae+ssim", 0.25)(a, b)) == pytest.approx(0.25 * ssim_part + 0.75 * mae_part, rel=1e-5)
