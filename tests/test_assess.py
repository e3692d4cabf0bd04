"""Photo triage on synthetic photos with known faults, through the bundled model's one Enhancer."""

import json

import numpy as np
import pytest

from skinray import assess, degrade, synth
from skinray.config import AssessConfig
from skinray.correction import Correction
from skinray.predict import Enhancer


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def enhancer():
    return Enhancer.from_checkpoint("bundled", "cpu")


@pytest.fixture(scope="module")
def clean():
    return synth.skin_image(0, 0, 256)


def _one(enhancer, image, cfg=None):
    outputs, (assessment,) = assess.assess_batch(enhancer, [image], cfg)
    assert outputs[0].shape == image.shape
    return assessment


def test_clean_photo_is_good_and_little_changed(enhancer, clean):
    a = _one(enhancer, clean)
    assert a.verdict == "good" and a.reasons == ()
    assert a.change_mean < 1.0 and a.blur_factor < 2.5 and a.clipped_high < 0.05
    assert a.light_source == "model"  # the bundled light model predicts its correction
    json.dumps(a.as_dict())  # JSON-ready (NaN confidence -> null)
    assert a.verdict_header() == "good"


def test_blurred_photo_is_retake_blurred(enhancer, clean):
    a = _one(enhancer, _u8(degrade.down_up(clean.astype(np.float32) / 255.0, 3.0)))
    assert a.verdict == "retake" and "blurred" in a.reasons
    assert 2.5 <= a.blur_factor <= 3.5
    assert a.verdict_header().startswith("retake (blurred")
    # the threshold is a config key: raised past the blur, the photo is no longer a retake
    assert "blurred" not in _one(enhancer, _u8(degrade.down_up(clean / 255.0, 3.0)),
                                 AssessConfig(blur_factor=5.0)).reasons


@pytest.mark.parametrize("fault", ["noise", "jpeg"])
def test_blur_is_read_through_sensor_noise_and_jpeg(clean, fault):
    # Noise added after a blur used to read as detail (a 3x blur plus noise read 1.0), and JPEG
    # block edges too: the noise floor and the block edges are now discounted.
    f = clean.astype(np.float32) / 255.0

    def spoil(img):
        return _u8(degrade.add_noise(img, 0.04, seed=3) if fault == "noise" else degrade.jpeg(img, 30))
    blurred, sharp = spoil(degrade.down_up(f, 3.0)), spoil(f)
    assert assess.blur_factor(blurred) >= AssessConfig().blur_factor
    assert assess.blur_factor(sharp) < 2.5
    # the noise handed in is the one the assessment measures
    assert assess.blur_factor(blurred, noise=assess.noise_sigma(blurred)) == assess.blur_factor(blurred)


def _dermoscopy_like(seed: int, n: int = 256) -> np.ndarray:
    """Smooth shaded skin with a dozen sharp-edged darker patches (lesions), float (n, n, 3):
    flat areas like a dermoscopy photo's, unlike the textured synthetic skin."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.75 + 0.1 * x, 0.55 + 0.1 * y, 0.5 + 0.05 * x * y], -1)
    for _ in range(12):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.03, 0.12)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] *= rng.uniform(0.5, 0.85)
    return img.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_blur_is_read_through_noise_then_jpeg(seed):
    # Noise FOLLOWED BY JPEG: the quantisation removes the noise's finest frequencies, so
    # noise_sigma reads a fraction of it and nothing was subtracted; what survived read as detail
    # (a 3x blur read 1.6). The noise floor from the down-up losses catches it (4.3 here).
    f = _dermoscopy_like(seed)

    def spoil(img):
        return _u8(degrade.jpeg(degrade.add_noise(img, 0.04, seed=3), 70))
    blurred, sharp = spoil(degrade.down_up(f, 3.0)), spoil(f)
    assert assess.noise_sigma(blurred) < 2.0  # the finest-scale estimate misses most of sigma 10
    assert assess.blur_factor(blurred) >= AssessConfig().blur_factor
    assert assess.blur_factor(sharp) < 2.5
    # the assessment reads the same blur as blur_factor (they share the crop's flat half)
    out = assess.assess(blurred, blurred)
    assert out.blur_factor == assess.blur_factor(blurred) and "blurred" in out.reasons


def test_cast_photo_is_corrected_and_its_light_measured(enhancer, clean):
    kelvin = 3500.0
    cast = _u8(degrade.relight(clean.astype(np.float32) / 255.0, kelvin))
    a, base = _one(enhancer, cast), _one(enhancer, clean)
    assert a.verdict == "corrected" and a.change_mean >= 1.0
    # the estimate is relative to the photo's skin: the cast's shift in mired within 30 of the drawn one
    shift, truth = 1e6 / a.kelvin - 1e6 / base.kelvin, 1e6 / kelvin - 1e6 / degrade.NEUTRAL_KELVIN
    assert abs(shift - truth) <= 30, (shift, truth)
    assert "kelvin=" in a.change_header() and "de=" in a.change_header()


def test_noisy_over_and_under_exposed_photos_are_retakes(enhancer, clean):
    f = clean.astype(np.float32) / 255.0
    noisy = _u8(degrade.add_noise(f, 0.08, seed=1))
    assert "noisy" in _one(enhancer, noisy).reasons
    bright = _u8(degrade.relight(f, ev=2.0))
    assert "overexposed" in _one(enhancer, bright).reasons
    dark = _u8(degrade.relight(f, ev=-7.0))
    assert "underexposed" in _one(enhancer, dark).reasons


@pytest.mark.parametrize("shape", [(1, 1, 3), (20, 300, 3), (63, 63, 3)])
def test_too_small_photo_is_retake_never_a_crash(enhancer, shape):
    a = _one(enhancer, np.full(shape, 128, np.uint8))
    assert a.verdict == "retake" and a.reasons == ("too-small",)
    assert a.width == shape[1] and a.height == shape[0]
    json.dumps(a.as_dict())


def test_flat_and_black_photos_do_not_crash(enhancer):
    for value in (0, 128, 255):
        a = _one(enhancer, np.full((96, 128, 3), value, np.uint8))
        assert a.verdict in assess.VERDICTS


def test_a_models_own_correction_is_reported_as_given(clean):
    fix = Correction(gains=(1.2, 1.0, 0.8), ev=0.5, confidence=0.9, kelvin=9000.0, tint=0.01)
    a = assess.assess(clean, clean, fix)
    assert (a.kelvin, a.tint, a.ev, a.confidence, a.light_source) == (9000.0, 0.01, 0.5, 0.9, "model")
    assert a.verdict == "good" and a.change_mean == 0.0


def test_assess_config_is_validated():
    from skinray.errors import ConfigError

    with pytest.raises(ConfigError, match="assess.clipped"):
        AssessConfig(clipped=0.0).validate()


def test_numpy_gaussian_and_corner_regions_are_scipys():
    """The assessment's Gaussian and its dark-corner regions (numpy and Pillow, so that a one-photo
    command need not import scipy) against scipy.ndimage's, on planes and masks of odd shapes."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for shape in [(256, 256), (30, 41), (9, 9), (5, 300), (1, 7)]:
        plane = (rng.random(shape) * 255).astype(np.float32)
        np.testing.assert_allclose(assess._gaussian(plane, 2.0), ndimage.gaussian_filter(plane, 2.0), atol=1e-4)
    for _ in range(100):
        mask = rng.random((rng.integers(1, 40), rng.integers(1, 40))) < rng.uniform(0.2, 0.8)
        labels, _ = ndimage.label(mask)
        corners = {labels[0, 0], labels[0, -1], labels[-1, 0], labels[-1, -1]} - {0}
        np.testing.assert_array_equal(assess._touching_corners(mask), np.isin(labels, list(corners)) & mask)
