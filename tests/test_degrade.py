import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from skinray import degrade
from skinray.config import POSTER_DEGRADE, V2_DEGRADE, DegradeConfig, load_config
from skinray.errors import ConfigError
from skinray.synth import skin_image

REPO = Path(__file__).resolve().parents[1]
IMG8 = skin_image(0, 0, 64)
IMG = IMG8.astype(np.float32) / 255.0
# fixed random inputs for the torchvision comparison: uniform colours (every hue sector, ties
# after clipping) and a real-looking photo
RANDOM = np.random.default_rng(42).random((24, 40, 3), dtype=np.float32)
INPUTS = {"random": RANDOM, "skin": IMG}
# Tolerance of the torchvision parity checks: both sides run the same float32 formulas, so they
# differ only by float32 rounding (summation order of the grayscale dot product and of the mean,
# a few ulps of values <= 1, i.e. ~1e-7); 1e-5 leaves room for that and for it compounding over
# the four ops, and is far below one uint8 step (3.9e-3) and any formula difference (torchvision's
# 0.2989 grey weight instead of 0.299 alone would be ~1e-4).
ATOL = 1e-5


def _torchvision():
    """``torchvision.transforms.v2`` (import only). The PyPI torchvision 0.28.0 wheel is built
    against CUDA torch; with the CPU torch of the development machines its C extension cannot
    load, and its import then fails registering a fake kernel for the missing ``torchvision::nms``
    op. The colour ops are pure torch and never call it: declaring the two op schemas it registers
    lets the import finish."""
    torch = pytest.importorskip("torch")
    try:
        from torchvision.transforms import v2
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision.keep = lib  # a Library object unregisters its ops when collected
        from torchvision.transforms import v2
    return torch, v2


def _tv(torch, fn, img, *args, **kwargs):
    """Run a torchvision op on an HWC numpy image, back to HWC numpy."""
    out = fn(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), *args, **kwargs)
    return out.numpy().transpose(1, 2, 0)


# ----------------------------------------------------------------------------- torchvision parity


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_each_jitter_op_matches_torchvision(name):
    torch, v2 = _torchvision()
    F = v2.functional
    img = INPUTS[name]
    for factor in (0.0, 0.4, 0.93, 1.0, 1.6):
        np.testing.assert_allclose(degrade.adjust_brightness(img, factor),
                                   _tv(torch, F.adjust_brightness, img, factor), atol=ATOL, rtol=0)
        np.testing.assert_allclose(degrade.adjust_contrast(img, factor),
                                   _tv(torch, F.adjust_contrast, img, factor), atol=ATOL, rtol=0)
        np.testing.assert_allclose(degrade.adjust_saturation(img, factor),
                                   _tv(torch, F.adjust_saturation, img, factor), atol=ATOL, rtol=0)
    for shift in (-0.5, -0.3, -0.05, 0.0, 0.01, 0.2, 0.5):
        np.testing.assert_allclose(degrade.adjust_hue(img, shift),
                                   _tv(torch, F.adjust_hue, img, shift), atol=ATOL, rtol=0)


def test_whole_jitter_in_a_drawn_order_matches_torchvision_colorjitter():
    torch, v2 = _torchvision()
    jitter = v2.ColorJitter(brightness=0.6, contrast=0.5, saturation=0.5, hue=0.05)
    rng = np.random.default_rng(7)
    orders = set()
    for i in range(12):
        d = degrade.sample(rng, V2_DEGRADE, subset="colour")
        d = dataclasses.replace(d, wb_gains=(1.0, 1.0, 1.0), exposure=1.0, gamma=1.0, scale=1.0,
                                jpeg_quality=0, noise=0.0)  # the jitter alone
        orders.add(d.order)
        params = dict(fn_idx=torch.tensor(d.order), brightness_factor=d.brightness,
                      contrast_factor=d.contrast, saturation_factor=d.saturation, hue_factor=d.hue)
        img = INPUTS["random" if i % 2 else "skin"]
        expected = _tv(torch, jitter.transform, img, params)  # ColorJitter with these draws
        np.testing.assert_allclose(degrade.apply(img, d), expected, atol=ATOL, rtol=0)
    assert len(orders) > 4, "the order of the four ops is drawn per image"


def test_jitter_factor_ranges_are_torchvisions():
    rng = np.random.default_rng(3)
    cfg = dataclasses.replace(V2_DEGRADE, brightness=0.6, contrast=0.5, saturation=0.5, hue=0.05)
    draws = [degrade.sample(rng, cfg, subset="colour") for _ in range(500)]
    b = [d.brightness for d in draws]
    assert 0.4 <= min(b) < 0.45 and 1.55 < max(b) <= 1.6
    assert 0.5 <= min(d.contrast for d in draws) and max(d.saturation for d in draws) <= 1.5
    assert -0.05 <= min(d.hue for d in draws) < -0.045 and 0.045 < max(d.hue for d in draws) <= 0.05
    assert all(sorted(d.order) == [0, 1, 2, 3] for d in draws)


def test_hue_shift_turns_pure_red_into_green_and_blue():
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 0.8
    np.testing.assert_allclose(degrade.adjust_hue(red, 1 / 3)[0, 0], [0, 0.8, 0], atol=1e-6)
    np.testing.assert_allclose(degrade.adjust_hue(red, -1 / 3)[0, 0], [0, 0, 0.8], atol=1e-6)
    gray = degrade.adjust_saturation(IMG, 0.0)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() < 1e-6


# ----------------------------------------------------------------------------- contract, clean share


def test_contract_shape_dtype_range_for_every_subset():
    rng = np.random.default_rng(0)
    for subset in (None, "colour", "camera", "clean"):
        for _ in range(8):
            d = degrade.sample(rng, V2_DEGRADE, subset=subset)
            out = degrade.apply(IMG, d)
            assert out.shape == IMG.shape and out.dtype == np.float32
            assert 0.0 <= out.min() and out.max() <= 1.0
            out8 = degrade.apply_uint8(IMG8, d)
            assert out8.shape == IMG8.shape and out8.dtype == np.uint8


def test_untouched_defaults_and_clean_draws_are_bit_exact():
    rng = np.random.default_rng(5)
    clean_draws = [d for d in (degrade.sample(rng, V2_DEGRADE) for _ in range(50)) if d.clean]
    assert clean_draws and all(d == degrade.Degradation(clean=True) for d in clean_draws)
    for d in clean_draws[:3] + [degrade.sample(rng, V2_DEGRADE, subset="clean")]:
        out = degrade.apply_uint8(IMG8, d)
        np.testing.assert_array_equal(out, IMG8)
        assert out is not IMG8
        np.testing.assert_array_equal(degrade.apply(IMG, d), IMG)
    # jitter with identity factors, and a draw with nothing in it, change nothing either
    np.testing.assert_array_equal(degrade.apply_uint8(IMG8, degrade.Degradation(jitter=True)), IMG8)
    np.testing.assert_array_equal(degrade.apply_uint8(IMG8, degrade.Degradation()), IMG8)
    assert degrade.Degradation().subset == "clean"


def test_clean_subset_is_clean_even_if_fields_say_otherwise():
    assert degrade.Degradation(clean=True, jitter=True, scale=2.0).subset == "clean"


@pytest.mark.parametrize("subset", ["colour", "camera", "clean"])
def test_forced_subset_is_the_drawn_subset(subset):
    rng = np.random.default_rng(11)
    draws = [degrade.sample(rng, V2_DEGRADE, subset=subset) for _ in range(300)]
    assert {d.subset for d in draws} == {subset}
    if subset == "colour":
        assert all(d.jitter for d in draws)
        assert 0.2 < np.mean([d.wb_gains != (1.0, 1.0, 1.0) for d in draws]) < 0.4  # wb_prob 0.3
        assert 0.6 < np.mean([d.scale > 1 for d in draws]) < 0.8  # blur_prob 0.7, as usual
    if subset == "camera":
        assert all(d.scale >= 1.25 and not d.jitter and d.exposure == 1.0 for d in draws)
    with pytest.raises(ValueError, match="unknown subset"):
        degrade.sample(rng, V2_DEGRADE, subset="blur")


def test_training_draws_hit_the_configured_shares():
    cfg = V2_DEGRADE
    rng = np.random.default_rng(2024)
    draws = [degrade.sample(rng, cfg) for _ in range(2000)]
    faulty = [d for d in draws if not d.clean]
    assert abs(np.mean([d.clean for d in draws]) - cfg.clean_fraction) < 0.03
    assert all(d.subset != "clean" for d in faulty), "a non-clean pair has at least one fault"

    def share(pred):
        return np.mean([pred(d) for d in faulty])

    assert abs(share(lambda d: d.jitter) - cfg.jitter_fraction) < 0.04
    assert abs(share(lambda d: d.wb_gains != (1.0, 1.0, 1.0)) - cfg.wb_prob) < 0.04
    assert abs(share(lambda d: d.exposure != 1.0) - cfg.exposure_prob) < 0.04
    assert abs(share(lambda d: d.jpeg_quality > 0) - cfg.jpeg_prob) < 0.04
    assert abs(share(lambda d: d.noise > 0) - cfg.noise_prob) < 0.04
    # the blur also goes to the few pairs that drew no other fault
    no_fault = np.prod([1 - p for p in (cfg.jitter_fraction, cfg.wb_prob, cfg.exposure_prob,
                                        cfg.blur_prob, cfg.jpeg_prob, cfg.noise_prob)])
    assert abs(share(lambda d: d.scale > 1) - (cfg.blur_prob + no_fault)) < 0.04
    assert {d.down_kernel for d in faulty} == set(degrade.DOWN_KERNELS)
    assert {d.up_kernel for d in faulty} == set(degrade.UP_KERNELS)
    q = [d.jpeg_quality for d in faulty if d.jpeg_quality]
    assert cfg.jpeg_quality_min <= min(q) < 40 and 85 < max(q) <= cfg.jpeg_quality_max
    assert max(d.noise for d in faulty) <= cfg.noise_max


def test_poster_preset_is_the_posters_degradations():
    rng = np.random.default_rng(9)
    draws = [degrade.sample(rng, POSTER_DEGRADE) for _ in range(2000)]
    assert abs(np.mean([d.jitter for d in draws]) - 0.6) < 0.03
    assert all(1.5 <= d.scale <= 3.0 and (d.down_kernel, d.up_kernel) == ("box", "bicubic") for d in draws)
    assert not any(d.clean or d.jpeg_quality or d.noise or d.exposure != 1.0 or d.wb_gains != (1.0, 1.0, 1.0)
                   for d in draws)
    assert (POSTER_DEGRADE.brightness, POSTER_DEGRADE.contrast, POSTER_DEGRADE.saturation,
            POSTER_DEGRADE.hue) == (0.6, 0.5, 0.5, 0.05)


def test_poster_yaml_uses_the_poster_preset():
    cfg = load_config(REPO / "jobs" / "configs" / "poster.yaml")
    assert cfg.degrade == POSTER_DEGRADE


def test_old_checkpoint_degrade_sections_still_load():
    old = {"jitter_fraction": 0.6, "brightness": 0.6, "contrast": 0.5, "saturation": 0.5, "hue": 0.05,
           "scale_min": 1.5, "scale_max": 3.0}
    DegradeConfig(**old).validate()


# ----------------------------------------------------------------------------- the faults


def test_apply_is_deterministic_noise_included():
    d = degrade.Degradation(jitter=True, brightness=1.2, contrast=0.8, saturation=1.3, hue=0.03,
                            order=(3, 1, 0, 2), wb_gains=(1.1, 1.0, 0.85), exposure=0.8, gamma=1.2,
                            scale=2.0, down_kernel="lanczos", up_kernel="bilinear", jpeg_quality=60,
                            noise=0.015, noise_seed=123)
    np.testing.assert_array_equal(degrade.apply(IMG, d), degrade.apply(IMG, d))
    np.testing.assert_array_equal(degrade.apply_uint8(IMG8, d), degrade.apply_uint8(IMG8, d))
    other = dataclasses.replace(d, noise_seed=124)
    assert not np.array_equal(degrade.apply(IMG, d), degrade.apply(IMG, other))
    rng = np.random.default_rng(0)
    drawn = [degrade.sample(rng, DegradeConfig(noise_prob=1.0)) for _ in range(10)]
    for d in drawn:
        np.testing.assert_array_equal(degrade.apply(IMG, d), degrade.apply(IMG, d))


def test_noise_has_the_drawn_sigma():
    grey = np.full((128, 128, 3), 0.5, np.float32)
    noisy = degrade.apply(grey, degrade.Degradation(noise=0.02, noise_seed=1))
    assert abs((noisy - grey).std() - 0.02) < 0.001 and abs((noisy - grey).mean()) < 0.001


def _high_freq(img: np.ndarray) -> float:
    return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())


def test_blur_lowers_high_frequency_energy_with_every_kernel():
    texture = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    for down in degrade.DOWN_KERNELS:
        for up in degrade.UP_KERNELS:
            blurred = degrade.apply(texture, degrade.Degradation(scale=2.0, down_kernel=down, up_kernel=up))
            assert blurred.shape == texture.shape
            assert _high_freq(blurred) < 0.6 * _high_freq(texture), (down, up)
    assert _high_freq(degrade.down_up(IMG, 3.0)) < _high_freq(degrade.down_up(IMG, 1.5)) < _high_freq(IMG)
    np.testing.assert_array_equal(degrade.down_up(texture, 1.0), texture)


def test_jpeg_quality_30_changes_pixels_more_than_95():
    err30 = np.abs(degrade.apply_uint8(IMG8, degrade.Degradation(jpeg_quality=30)).astype(int) - IMG8).mean()
    err95 = np.abs(degrade.apply_uint8(IMG8, degrade.Degradation(jpeg_quality=95)).astype(int) - IMG8).mean()
    assert err30 > 1.0 and err30 > 2 * err95


def test_white_balance_casts_colour_but_keeps_grey_luma():
    rng = np.random.default_rng(4)
    d = degrade.sample(rng, DegradeConfig(wb_prob=1.0, jitter_fraction=0.0, exposure_prob=0.0, blur_prob=0.0,
                                          jpeg_prob=0.0, noise_prob=0.0, light_prob=0.0, clean_fraction=0.0))
    gains = np.array(d.wb_gains)
    assert d.subset == "colour" and not np.allclose(gains, 1.0)
    assert abs(gains @ [0.299, 0.587, 0.114] - 1.0) < 1e-9 and gains.min() < 1.0 < gains.max()
    grey = np.full((4, 4, 3), 0.4, np.float32)
    out = degrade.apply(grey, d)
    assert abs(float(out[0, 0] @ np.array([0.299, 0.587, 0.114], np.float32)) - 0.4) < 1e-5


def test_exposure_and_gamma_change_brightness():
    dark = degrade.apply(IMG, degrade.Degradation(exposure=0.5))
    flat = degrade.apply(IMG, degrade.Degradation(gamma=0.5))
    np.testing.assert_allclose(dark, IMG * 0.5, atol=1e-6)
    np.testing.assert_allclose(flat, np.sqrt(IMG), atol=1e-6)


# ----------------------------------------------------------------------------- config, rng


@pytest.mark.parametrize("key, value", [
    ("clean_fraction", 1.2), ("jitter_fraction", -0.1), ("wb_prob", 2.0), ("exposure_prob", -1.0),
    ("blur_prob", 1.5), ("jpeg_prob", 3.0), ("noise_prob", -0.5), ("brightness", 1.0), ("hue", 0.6),
    ("wb", -0.1), ("exposure", 5.0), ("gamma", 1.5), ("scale_min", 0.5), ("jpeg_quality_min", 0),
    ("noise_max", 0.5),
])
def test_invalid_degrade_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as info:
        load_config(overrides={f"degrade.{key}": value})
    assert str(info.value).startswith(f"degrade.{key}:"), str(info.value)


def test_jpeg_quality_range_must_be_ordered():
    with pytest.raises(ConfigError, match="degrade.jpeg_quality_min: need"):
        DegradeConfig(jpeg_quality_min=90, jpeg_quality_max=50).validate()
    with pytest.raises(ConfigError, match="degrade.random_kernels must be bool"):
        load_config(overrides={"degrade.random_kernels": "maybe"})


def test_key_rng_is_a_function_of_seed_and_key():
    cfg = V2_DEGRADE
    assert degrade.sample(degrade.key_rng(0, "a.jpg"), cfg) == degrade.sample(degrade.key_rng(0, "a.jpg"), cfg)
    assert degrade.sample(degrade.key_rng(0, "a.jpg"), cfg) != degrade.sample(degrade.key_rng(1, "a.jpg"), cfg)


def test_natural_variation_changes_good_photos_a_little_and_zero_leaves_them():
    photo = skin_image(0, 5, 64)
    assert degrade.vary_uint8(photo, np.random.default_rng(0), 0.0) is photo
    varied = [degrade.vary_uint8(photo, np.random.default_rng(seed), 0.2) for seed in range(20)]
    means = np.array([v.reshape(-1, 3).mean(0) for v in varied])
    assert np.ptp(means, axis=0).min() > 10, "white balance and exposure really vary"
    ratio = means / photo.reshape(-1, 3).mean(0)
    assert ratio.min() > 0.6 and ratio.max() < 1.6, "by a little: within about +-0.4 stops and 20% casts"
    again = degrade.vary_uint8(photo, np.random.default_rng(3), 0.2)
    np.testing.assert_array_equal(again, varied[3])  # a function of the generator's draws


def test_training_pairs_carry_the_variation_in_input_and_target_alike(tmp_path):
    import dataclasses
    import io

    from PIL import Image

    from skinray.config import DegradeConfig as DC
    from skinray.data import make_pairs

    buf = io.BytesIO()
    Image.fromarray(skin_image(0, 6, 48)).save(buf, format="PNG")
    path = tmp_path / "good.png"
    path.write_bytes(buf.getvalue())
    cfg = dataclasses.asdict(DC(clean_fraction=1.0, natural_variation=0.2))
    batch = {"key": np.array(["a"] * 8, dtype=object), "uri": np.array([str(path)] * 8, dtype=object)}
    out = make_pairs(batch, split="train", image_size=48, degrade_cfg=cfg, seed=0, s3=None)
    assert (out["input"] == out["target"]).all(), "clean pairs stay exact"
    assert len({t.tobytes() for t in out["target"]}) > 4, "each draw varies the good photo anew"


# ----------------------------------------------------------------------------- v3: the light


def test_the_6500_k_illuminant_without_tint_is_the_identity():
    img = skin_image(seed=0, index=1, size=32).astype(np.float32) / 255.0
    assert np.array_equal(degrade.cast_gains(6500.0), np.ones(3))
    assert np.array_equal(degrade.relight(img, 6500.0, 0.0, 0.0), img)
    near = degrade.cast_gains(6499.0)  # the locus is continuous through the neutral point
    assert np.allclose(near, 1.0, atol=1e-3)


def test_black_body_casts_go_warm_below_and_cool_above_6500_k_keeping_white_luminance():
    warm, cool = degrade.cast_gains(2800.0), degrade.cast_gains(10000.0)
    assert warm[0] > 1.0 > warm[2] and cool[2] > 1.0 > cool[0]  # tungsten is orange, shade is blue
    for gains in (warm, cool, degrade.cast_gains(4000.0, 0.05)):
        assert abs(gains @ [0.2126, 0.7152, 0.0722] - 1.0) < 1e-12  # a cast, not an exposure change
    assert degrade.cast_gains(6500.0, 0.05)[1] > degrade.cast_gains(6500.0, -0.05)[1]  # tint: green vs magenta


def test_a_von_kries_cast_in_linear_light_is_undone_exactly_by_its_inverse_gains():
    # mid-tones only, so that nothing clips under the cast
    img = (0.25 + 0.3 * skin_image(seed=0, index=2, size=32).astype(np.float32) / 255.0).astype(np.float32)
    cast = degrade.relight(img, 3200.0, 0.03, 0.0)
    assert np.abs(cast - img).max() > 0.05
    gains = degrade.cast_gains(3200.0, 0.03)
    undone = degrade.srgb_encode(degrade.srgb_decode(cast) / gains.astype(np.float32))
    assert np.abs(undone - img).max() < 1e-5


def test_v3_draws_are_deterministic_per_seed_and_relight_in_linear_light():
    img = skin_image(seed=0, index=3, size=48)
    cfg = DegradeConfig()
    first = [degrade.sample(degrade.key_rng(7, f"k{i}"), cfg, image=img) for i in range(20)]
    again = [degrade.sample(degrade.key_rng(7, f"k{i}"), cfg, image=img) for i in range(20)]
    assert first == again
    lit = [d for d in first if d.kelvin != degrade.NEUTRAL_KELVIN]
    assert lit and all(cfg.kelvin_min - 1e-6 <= d.kelvin <= cfg.kelvin_max + 1e-6 for d in lit)
    d = lit[0]
    assert np.array_equal(degrade.apply_uint8(img, d), degrade.apply_uint8(img, d))
    assert d.subset == "colour"


def test_exposure_errors_are_drawn_only_past_what_good_photos_show():
    """Under-exposure pushes the highlights below dark_p99, over-exposure the median above
    bright_p50: a model never learns to brighten or darken a photo that looks like a good one."""
    img = skin_image(seed=0, index=4, size=64)
    cfg = DegradeConfig(clean_fraction=0.0, light_prob=0.0, exposure_error_prob=1.0, blur_prob=0.0,
                        jpeg_prob=0.0, noise_prob=0.0)
    draws = [degrade.sample(np.random.default_rng(i), cfg, image=img) for i in range(40)]
    assert all(d.ev != 0.0 for d in draws)
    lum = np.array([0.2126, 0.7152, 0.0722], np.float32)
    linear = degrade.srgb_decode(img.astype(np.float32) / 255.0) @ lum
    for d in draws[:12]:
        out = degrade.srgb_decode(degrade.apply_uint8(img, d).astype(np.float32) / 255.0) @ lum
        if d.ev < 0:  # the highlights end up darker than in 99% of good photos
            assert np.percentile(out, 99) < cfg.dark_p99 * 1.05
        else:  # the light on the median pixel is past any good photo's, and highlights clip
            assert np.percentile(linear, 50) * 2.0 ** d.ev > cfg.bright_p50 * 0.95
            assert (degrade.apply_uint8(img, d).max(axis=2) == 255).mean() > 0.05
    assert any(d.ev < 0 for d in draws) and any(d.ev > 0 for d in draws)
    no_photo = degrade.sample(np.random.default_rng(0), cfg)  # no photo, no exposure error
    assert no_photo.ev == 0.0


# ----------------------------------------------------------------------------- skin tones


def test_melanin_darkens_skin_towards_brown_and_zero_leaves_it():
    from skinray import harm

    photo = skin_image(1, 0, 64)
    assert degrade.melanin_uint8(photo, 0.0).tolist() == photo.tolist()
    before = harm.describe("p", photo, None)
    after = harm.describe("p", degrade.melanin_uint8(photo, 0.7), None)
    lab0, lab1 = before.lab.reshape(-1, 3).mean(0), after.lab.reshape(-1, 3).mean(0)
    assert lab1[0] < lab0[0] - 15, "darker"
    assert lab1[2] > lab0[2], "and yellower (melanin absorbs blue most)"
    assert after.ita < before.ita - 30, "a skin-tone band or more lower"


def test_skin_tone_variation_is_drawn_only_when_asked_and_carried_by_input_and_target(tmp_path):
    import dataclasses
    import io

    from PIL import Image

    from skinray.config import DegradeConfig as DC
    from skinray.data import make_pairs

    photo = skin_image(0, 6, 48)
    rng = np.random.default_rng(5)
    assert degrade.vary_tone_uint8(photo, rng, 0.0, 0.9) is photo
    assert rng.random() == np.random.default_rng(5).random(), "probability 0 draws nothing"
    darker = degrade.vary_tone_uint8(photo, np.random.default_rng(5), 1.0, 0.9)
    assert darker.mean() < photo.mean()

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    path = tmp_path / "good.png"
    path.write_bytes(buf.getvalue())
    cfg = dataclasses.asdict(DC(clean_fraction=1.0, tone_prob=1.0, tone_depth=0.9))
    batch = {"key": np.array(["a"] * 8, dtype=object), "uri": np.array([str(path)] * 8, dtype=object)}
    out = make_pairs(batch, split="train", image_size=48, degrade_cfg=cfg, seed=0, s3=None)
    assert (out["input"] == out["target"]).all(), "a darker good photo is a good photo: the pair stays clean"
    # depth is uniform in [0, 0.9]: a draw under ~0.003 rounds back to the same uint8 photo
    # (about 1 draw in 300), so every target is no lighter and nearly all are visibly darker
    means = [float(t.mean()) for t in out["target"]]
    assert all(m <= photo.mean() for m in means), "melanin never lightens"
    assert sum(m < photo.mean() - 0.5 for m in means) >= 6, f"targets darkened (tone_prob 1): {means}"
    assert len(set(means)) > 1, "each training pair draws its own depth"


def test_tone_settings_are_checked():
    from skinray.config import DegradeConfig as DC
    from skinray.errors import ConfigError

    with pytest.raises(ConfigError, match="tone_prob"):
        DC(tone_prob=1.5).validate()
    with pytest.raises(ConfigError, match="tone_depth"):
        DC(tone_depth=-0.1).validate()
