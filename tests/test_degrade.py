import numpy as np

from skinray import degrade
from skinray.config import DegradeConfig
from skinray.synth import skin_image

IMG = skin_image(0, 0, 64).astype(np.float32) / 255.0


def test_contract_shape_dtype_range():
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = degrade.apply(IMG, degrade.sample(rng, DegradeConfig()))
        assert out.shape == IMG.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_identity_parameters_change_nothing():
    same = degrade.apply(IMG, degrade.Degradation(jitter=True))
    np.testing.assert_allclose(same, IMG, atol=2e-3)


def test_brightness_range_reaches_very_dark_and_very_light():
    cfg = DegradeConfig()
    darkest = degrade.adjust_brightness(IMG, 1 - cfg.brightness).mean()
    lightest = degrade.adjust_brightness(IMG, 1 + cfg.brightness).mean()
    assert darkest < 0.5 * IMG.mean() and lightest > 1.4 * IMG.mean()


def test_saturation_zero_is_gray_and_hue_keeps_luma():
    gray = degrade.adjust_saturation(IMG, 0.0)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() < 1e-5
    shifted = degrade.adjust_hue(IMG, 0.2)
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    assert abs((shifted @ luma).mean() - (IMG @ luma).mean()) < 0.02
    assert np.abs(shifted - IMG).mean() > 0.01


def test_down_up_blurs_fine_detail():
    noise = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    blurred = degrade.down_up(noise, 3.0)
    assert blurred.shape == noise.shape
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.5 * np.abs(np.diff(noise, axis=1)).mean()
    np.testing.assert_array_equal(degrade.down_up(noise, 1.0), noise)


def test_jitter_fraction_is_respected():
    rng = np.random.default_rng(1)
    draws = [degrade.sample(rng, DegradeConfig(jitter_fraction=0.6)).jitter for _ in range(2000)]
    assert 0.56 < np.mean(draws) < 0.64


def test_key_rng_is_a_function_of_seed_and_key():
    cfg = DegradeConfig()
    assert degrade.sample(degrade.key_rng(0, "a.jpg"), cfg) == degrade.sample(degrade.key_rng(0, "a.jpg"), cfg)
    assert degrade.sample(degrade.key_rng(0, "a.jpg"), cfg) != degrade.sample(degrade.key_rng(1, "a.jpg"), cfg)
