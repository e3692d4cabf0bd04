"""Real-photo metrics (skinray.harm) and the skin-prior baseline on known values: ITA and its bands,
lesion-to-skin contrast, the von Kries oracle, Shades of Gray with a skin prior."""

from __future__ import annotations

import numpy as np
import pytest

from skinray import baselines, colour, harm, synth

PHOTO = synth.skin_image(1, 0, 64)  # well exposed: its 99th-percentile luminance is 0.45


def _mask(img: np.ndarray) -> np.ndarray:
    lightness = colour.srgb_to_lab(img)[..., 0]
    return lightness < np.percentile(lightness, 25)


@pytest.mark.parametrize("angle, band", [(60, "very light"), (55, "light"), (41.5, "light"), (41, "intermediate"),
                                         (20, "tan"), (10, "brown"), (-29, "brown"), (-30, "dark"), (-80, "dark")])
def test_ita_bands(angle, band):
    assert harm.band_of(angle) == band


def test_ita_of_known_skin_and_only_outside_the_lesion():
    lab = np.zeros((4, 4, 3))
    lab[..., 0], lab[..., 2] = 65.0, 15.0  # skin: L* 65, b* 15 -> atan(15 / 15) = 45 degrees
    lesion = np.zeros((4, 4), bool)
    lesion[:3, :3] = True
    lab[lesion] = (30.0, 20.0, 25.0)  # a dark lesion over 9 of 16 pixels must not count
    assert harm.ita(lab, harm.skin_of(lesion, lab.shape)) == pytest.approx(45.0)
    assert harm.ita(lab, harm.skin_of(None, lab.shape)) < 45.0  # without a mask, all pixels


def test_identity_scores_zero_and_a_recoloured_lesion_changes_the_contrast():
    mask = _mask(PHOTO)
    photo = harm.describe("p", PHOTO, mask)
    assert photo.contrast > 2  # the synthetic lesion is darker than the skin around it
    assert harm.good_row(PHOTO.copy(), photo) == {"ciede2000": 0.0, "ita_shift": 0.0, "contrast_change": 0.0}
    redder = PHOTO.copy()
    redder[mask] = np.clip(redder[mask].astype(int) * [1.0, 0.8, 0.8], 0, 255).astype(np.uint8)  # the lesion only
    row = harm.good_row(redder, photo)
    assert row["ciede2000"] > 0 and abs(row["contrast_change"]) > 1
    assert row["ita_shift"] == pytest.approx(0.0, abs=1e-9), "the skin outside the lesion is unchanged"
    assert harm.good_row(PHOTO, harm.describe("p", PHOTO, None))["contrast_change"] is None


def test_von_kries_oracle_finds_a_known_uniform_gain():
    gains = np.array([0.8, 0.95, 0.6])  # below 1: nothing clips
    cast = harm.apply_gains(PHOTO, gains)
    np.testing.assert_allclose(harm.fit_von_kries(cast, PHOTO), 1 / gains, rtol=0.01)
    assert colour.mean_ciede2000(harm.von_kries_oracle(cast, PHOTO), PHOTO) < 0.5 < colour.mean_ciede2000(cast, PHOTO)


def test_cast_draws_are_fixed_per_key_and_light_only():
    first, again = harm.cast_draw(PHOTO, "a", 1234), harm.cast_draw(PHOTO, "a", 1234)
    assert first == again and first != harm.cast_draw(PHOTO, "b", 1234)
    assert first.subset == "colour" and first.scale == 1.0 and first.jpeg_quality == 0 and first.noise == 0.0


def test_skin_prior_undoes_a_von_kries_cast_better_than_leaving_it():
    """Towards the skin chromaticity of other synthetic photos (not this one's own): a warm cast in
    linear light comes mostly undone, and the photo's exposure is left alone."""
    reference = baselines.skin_reference([synth.skin_image(6, i, 64) for i in range(6)])
    for gains in ([1.25, 1.0, 0.7], [0.85, 1.0, 1.2]):
        cast = harm.apply_gains(PHOTO, np.array(gains) / np.dot(gains, [0.2126, 0.7152, 0.0722]))
        fixed = baselines.shades_of_gray_skin(cast, reference)
        assert colour.mean_ciede2000(fixed, PHOTO) < 0.6 * colour.mean_ciede2000(cast, PHOTO)
    assert baselines.exposure_gain(PHOTO, reference) == 1.0  # a well-exposed photo is not re-exposed
    dark = harm.apply_gains(PHOTO, np.full(3, 0.1))
    assert baselines.exposure_gain(dark, reference) > 5  # an under-exposed one is


def test_darker_skin_row_flags_a_method_that_takes_darker_skin_for_a_cast():
    """The 'darker' row shows the good photo on darker skin: leaving it alone scores 0; a grey-world
    correction towards light skin's colour (Shades of Gray to this very photo's own illuminant before
    it was darkened) takes the darker, yellower skin for a warm cast and moves it by a lot."""
    photo = harm.describe("p", PHOTO, _mask(PHOTO))
    dark = harm.darker(photo)
    assert dark.ita < photo.ita - 20 and dark.band != photo.band
    assert harm.good_row(dark.img.copy(), dark)["ciede2000"] == 0.0
    moved = harm.good_row(baselines.shades_of_gray(dark.img, target=baselines.reference_illuminant([PHOTO])), dark)
    assert moved["ciede2000"] > 3 and moved["ita_shift"] > 10
    light = harm.cast_draw(PHOTO, "p", 1)
    rec = [harm.record(photo, {"m": harm.good_row(PHOTO, photo)}, {"m": 1.0, "degraded input": 2.0}, light,
                       {"m": moved})]
    real = harm.tables(rec, 1)
    assert real["darker"]["m"]["all"]["ciede2000_mean"] == pytest.approx(moved["ciede2000"])
    goals = harm.goals(real, ["m"], "degraded input", None)["m"]
    assert goals["darker_ciede2000_mean_le_1"] is False and goals["good_ciede2000_mean_le_1"] is True
    assert any("darker skin" in line for line in harm.report_lines(real))
