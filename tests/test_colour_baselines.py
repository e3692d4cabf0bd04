"""Colour science (skinray.colour) and classical baselines (skinray.baselines): known values."""

from __future__ import annotations

import numpy as np
import pytest

from skinray import baselines, colour
from skinray.synth import skin_image

# Sharma, Wu & Dalal (2005), Table 1: all 34 test pairs, (L1, a1, b1, L2, a2, b2, ΔE00).
# Pairs 1-6: the G term near blue; 7-8: one colour achromatic; 9-15: mean hue and hue difference
# at the 180-degree discontinuities; 16-24: hue and chroma weighting; 25-34: CIE/RIT-DuPont data.
SHARMA_2005 = np.array([
    [50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425],
    [50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615],
    [50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412],
    [50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669],
    [50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461],
    [50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065],
    [50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492],
    [50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977],
    [50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030],
    [50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000],
    [60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644],
    [63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630],
    [61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731],
    [35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645],
    [22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373],
    [36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146],
    [90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441],
    [90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381],
    [6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377],
    [2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082],
])

TINT = np.array([1.2, 1.0, 0.8])
SKIN = skin_image(0, 0, 64)


def _spread(rgb: np.ndarray) -> int:
    """Largest per-pixel difference between channels (0 for a perfectly grey image)."""
    arr = rgb.astype(int)
    return int((arr.max(axis=-1) - arr.min(axis=-1)).max())


def _grey_noise(lo: int, hi: int, size: int = 64, seed: int = 0) -> np.ndarray:
    grey = np.random.default_rng(seed).integers(lo, hi, (size, size, 1), dtype=np.uint8)
    return np.repeat(grey, 3, axis=2)


# --- CIEDE2000 -----------------------------------------------------------------------------

@pytest.mark.parametrize("row", SHARMA_2005, ids=[f"pair{i:02d}" for i in range(1, 35)])
def test_ciede2000_matches_sharma_2005_pair(row):
    lab1, lab2, expected = row[:3], row[3:6], row[6]
    assert colour.ciede2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)
    assert colour.ciede2000(lab2, lab1) == pytest.approx(expected, abs=1e-4)  # symmetric


def test_ciede2000_is_vectorized_over_images():
    lab1 = SHARMA_2005[:, :3].reshape(2, 17, 3)
    lab2 = SHARMA_2005[:, 3:6].reshape(2, 17, 3)
    out = colour.ciede2000(lab1, lab2)
    assert out.shape == (2, 17)
    np.testing.assert_allclose(out.ravel(), SHARMA_2005[:, 6], atol=1e-4, rtol=0)


def test_identical_images_have_zero_delta_e():
    lab = np.random.default_rng(1).uniform([0, -100, -100], [100, 100, 100], (32, 32, 3))
    assert np.all(colour.ciede2000(lab, lab) == 0.0)
    assert colour.mean_ciede2000(SKIN, SKIN.copy()) == 0.0
    assert colour.mean_ciede2000(SKIN, SKIN.astype(np.float64) / 255.0) == pytest.approx(0.0)


def test_mean_ciede2000_rejects_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        colour.mean_ciede2000(SKIN, SKIN[:32])


# --- sRGB <-> Lab --------------------------------------------------------------------------

def test_white_and_black_in_lab():
    white = colour.srgb_to_lab(np.full((2, 2, 3), 255, np.uint8))
    np.testing.assert_allclose(white, np.broadcast_to([100.0, 0.0, 0.0], (2, 2, 3)), atol=0.01)
    assert white[0, 0, 0] == pytest.approx(100.0, abs=1e-9)
    np.testing.assert_array_equal(colour.srgb_to_lab(np.zeros((2, 2, 3))), 0.0)


def test_uint8_and_float_inputs_agree():
    as_float = SKIN.astype(np.float32) / 255.0
    np.testing.assert_allclose(colour.srgb_to_lab(SKIN), colour.srgb_to_lab(as_float), atol=1e-4)


def test_srgb_primaries_in_lab():
    # Published CIELAB (D65) values of the sRGB primaries, e.g. Lindbloom's and EasyRGB's calculators.
    primaries = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    expected = [[53.2408, 80.0925, 67.2032], [87.7347, -86.1827, 83.1793], [32.2970, 79.1875, -107.8602]]
    np.testing.assert_allclose(colour.srgb_to_lab(primaries), expected, atol=0.01)
    assert colour.srgb_to_lab(primaries).dtype == np.float64
    assert colour.srgb_to_lab(primaries.astype(np.float32) / 255).dtype == np.float64


def test_lab_to_srgb_round_trip():
    pixels = np.random.default_rng(3).random((4096, 3))
    np.testing.assert_allclose(colour.lab_to_srgb(colour.srgb_to_lab(pixels)), pixels, atol=1e-9)
    every_level = np.stack(np.meshgrid(*[np.arange(0, 256, 5, dtype=np.uint8)] * 3), axis=-1)
    back = colour.to_uint8(colour.lab_to_srgb(colour.srgb_to_lab(every_level)))
    np.testing.assert_array_equal(back, every_level)


def test_lab_to_srgb_clips_out_of_gamut_colours():
    out = colour.lab_to_srgb(np.array([[50.0, 120.0, -120.0], [100.0, 0.0, 100.0]]))
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        colour.srgb_to_lab(np.zeros((4, 4)))
    with pytest.raises(TypeError, match="dtype"):
        colour.srgb_to_lab(np.zeros((4, 4, 3), np.int32))


# --- No-reference statistics ---------------------------------------------------------------

def test_brightness_and_contrast():
    assert colour.mean_brightness(np.full((4, 4, 3), 255, np.uint8)) == pytest.approx(100.0)
    assert colour.mean_brightness(np.zeros((4, 4, 3), np.uint8)) == 0.0
    half = np.zeros((4, 4, 3), np.uint8)
    half[:2] = 255
    assert colour.contrast(half) == pytest.approx(50.0)
    assert colour.contrast(np.full((4, 4, 3), 77, np.uint8)) == pytest.approx(0.0, abs=1e-9)


def test_colourfulness_is_zero_for_grey_and_grows_with_saturation():
    assert colour.colourfulness(_grey_noise(0, 256)) == 0.0
    flat = np.full((8, 8, 3), 128.0)
    tints = [flat * [1.0 + s, 1.0, 1.0 - s] for s in (0.05, 0.2, 0.5)]
    values = [colour.colourfulness(np.clip(t, 0, 255).astype(np.uint8)) for t in tints]
    assert 0.0 < values[0] < values[1] < values[2]
    # Pure red is "highly colourful" (M > 82) on Hasler & Süsstrunk's scale.
    assert colour.colourfulness(np.broadcast_to(np.uint8([255, 0, 0]), (4, 4, 3))) > 82.0


# --- Baselines -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_baseline_contract(name):
    fn = baselines.BASELINES[name]
    before = SKIN.copy()
    out = fn(SKIN)
    assert out.shape == SKIN.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(SKIN, before)  # input untouched
    with pytest.raises(TypeError):
        fn(SKIN.astype(np.float32) / 255.0)


def test_baselines_registry_names():
    assert set(baselines.BASELINES) == {"gray_world", "shades_of_gray", "clahe"}


@pytest.mark.parametrize("balance", [baselines.gray_world, baselines.shades_of_gray])
def test_white_balance_turns_a_tinted_grey_grey(balance):
    tinted = np.broadcast_to(np.round(128 * TINT).astype(np.uint8), (16, 16, 3)).copy()
    assert tinted[0, 0].tolist() == [154, 128, 102]
    out = balance(tinted)
    assert _spread(out) <= 1
    assert 120 <= out.mean() <= 140  # brightness kept, not pushed to black or white


@pytest.mark.parametrize("balance", [baselines.gray_world, baselines.shades_of_gray])
def test_white_balance_undoes_a_coloured_illuminant(balance):
    grey = _grey_noise(40, 200)
    cast = colour.to_uint8(colour.linear_to_srgb(colour.srgb_to_linear(grey) * TINT))
    assert _spread(cast) > 30
    out = balance(cast)
    assert _spread(out) <= 1
    assert np.abs(out.astype(int) - grey).max() <= 1  # TINT averages to 1: the scene comes back


@pytest.mark.parametrize("balance", [baselines.gray_world, baselines.shades_of_gray])
def test_white_balance_leaves_a_neutral_image_alone(balance):
    grey = _grey_noise(0, 256, seed=4)
    assert np.abs(balance(grey).astype(int) - grey).max() <= 1
    np.testing.assert_array_equal(balance(np.zeros((4, 4, 3), np.uint8)), 0)  # no 0/0


def test_shades_of_gray_norm_orders():
    linear = colour.srgb_to_linear(SKIN)
    gw = baselines.minkowski_illuminant(linear, 1.0)
    np.testing.assert_allclose(gw, linear.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(baselines.minkowski_illuminant(linear, np.inf),
                               linear.reshape(-1, 3).max(axis=0))
    assert np.all(gw <= baselines.minkowski_illuminant(linear, 6.0))  # power-mean inequality
    np.testing.assert_array_equal(baselines.gray_world(SKIN), baselines.shades_of_gray(SKIN, p=1))
    with pytest.raises(ValueError, match="p >= 1"):
        baselines.shades_of_gray(SKIN, p=0.5)


def test_clahe_keeps_a_neutral_image_neutral():
    pytest.importorskip("skimage")
    ramp = np.tile(np.linspace(20, 235, 64), (64, 1))[..., None] + _grey_noise(0, 9)
    ramp = np.clip(ramp, 0, 255).astype(np.uint8)
    out = baselines.clahe_lightness(ramp)
    assert out.shape == ramp.shape and out.dtype == np.uint8
    assert _spread(out) <= 1


def test_clahe_raises_the_contrast_of_a_flat_looking_image():
    pytest.importorskip("skimage")
    ramp = np.tile(np.linspace(90, 160, 64), (64, 1))[..., None] + _grey_noise(0, 9)
    dull = np.clip(ramp * [1.1, 1.0, 0.9], 0, 255).astype(np.uint8)
    out = baselines.clahe_lightness(dull)
    assert colour.contrast(out) > 1.5 * colour.contrast(dull)
    # Chroma is kept: a* and b* barely move where L* changed a lot.
    lab_in, lab_out = colour.srgb_to_lab(dull), colour.srgb_to_lab(out)
    in_gamut = (out > 0).all(axis=-1) & (out < 255).all(axis=-1)
    np.testing.assert_allclose(lab_out[in_gamut][:, 1:], lab_in[in_gamut][:, 1:], atol=1.0)


def test_clahe_leaves_a_uniform_image_unchanged():
    pytest.importorskip("skimage")
    flat = np.full((16, 16, 3), (180, 140, 120), np.uint8)
    np.testing.assert_array_equal(baselines.clahe_lightness(flat), flat)
