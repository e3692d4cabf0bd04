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


def test_psnr_loss_is_minus_the_mean_psnr_floored_at_40_db():
    a = torch.zeros(2, 3, 16, 16)
    b = a.clone()
    b[0] += 0.1  # 20 dB
    b[1] += 0.01  # 40 dB
    expected = (math.log10(0.01 + 1e-4) + math.log10(1e-4 + 1e-4)) / 2
    assert float(make_loss("psnr")(b, a)) == pytest.approx(expected, rel=1e-5)
    assert float(make_loss("psnr")(a, a)) == pytest.approx(-4.0)  # identical: the 40 dB floor


def test_psnr_loss_weighs_a_nearly_right_photo_as_much_as_a_badly_wrong_one():
    """Per-image log-MSE: the gradient on each image is its MSE gradient over its MSE, so a small
    error on a clean photo is not averaged away by the large errors of cast photos (unlike MAE)."""
    target = torch.full((2, 3, 8, 8), 0.5)
    pred = target.clone()
    pred[0] += 0.2  # badly wrong
    pred[1] += 0.01  # nearly right
    for name, ratio_bound in (("psnr", 0.3), ("mae", None)):
        p = pred.clone().requires_grad_(True)
        make_loss(name)(p, target).backward()
        per_pixel = p.grad.abs().flatten(1).mean(dim=1)
        if ratio_bound:  # the nearly-right photo gets a strong pull
            assert float(per_pixel[1] / per_pixel[0]) > ratio_bound
        else:  # MAE: equal pull per pixel whatever the error, no extra weight
            assert float(per_pixel[1] / per_pixel[0]) == pytest.approx(1.0)
