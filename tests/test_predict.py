import numpy as np
import pytest
import torch

from skinray import synth
from skinray.checkpoint import LoadedModel
from skinray.config import Config, ModelConfig
from skinray.model import build_model
from skinray.predict import Enhancer


def _enhancer(arch: str = "poster", **kwargs) -> Enhancer:
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(width=8, arch=arch))
    return Enhancer(LoadedModel(build_model(cfg.model), cfg, {}), "cpu", **kwargs)


@pytest.mark.parametrize("arch", ["poster", "context", "affine", "lut"])
def test_tiled_3000x2000_matches_whole_image_inference(arch):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (50, 75, 3), dtype=np.uint8)
    image = np.kron(small, np.ones((40, 40, 1), np.uint8))  # (2000, 3000, 3), smooth-ish blocks
    image = np.clip(image.astype(int) + rng.integers(-8, 8, image.shape), 0, 255).astype(np.uint8)
    tiled_enhancer = _enhancer(arch, tile=512, margin=32)
    if arch in ("context", "affine"):  # a trained-looking correction, not the zero-initialised identity
        torch.nn.init.normal_(tiled_enhancer.model.decoder[-1].weight, std=0.1)
    if arch == "lut":
        torch.nn.init.normal_(tiled_enhancer.model.predict[-1].weight, std=0.05)
        torch.nn.init.normal_(tiled_enhancer.model.detail.out[0].weight, std=0.05)
    if arch == "affine":
        torch.nn.init.normal_(tiled_enhancer.model.colour[-1].weight, std=0.05)
    whole_enhancer = Enhancer(tiled_enhancer.loaded, "cpu", tile=4096, margin=32)
    tiled, whole = tiled_enhancer.enhance(image), whole_enhancer.enhance(image)
    assert tiled.shape == whole.shape == image.shape
    interior = (slice(16, -16), slice(16, -16))
    assert np.abs(tiled[interior].astype(int) - whole[interior]).max() <= 1, "no seams away from borders"


def test_batch_of_mixed_sizes_keeps_every_shape_and_order():
    enhancer = _enhancer(tile=64, margin=8)
    images = [np.full((1, 1, 3), 10, np.uint8), np.zeros((3, 300, 3), np.uint8),
              np.zeros((40, 30, 3), np.uint8), np.full((40, 30, 3), 200, np.uint8)]
    out = enhancer.enhance_batch(images)
    assert [o.shape for o in out] == [i.shape for i in images]
    assert all(o.dtype == np.uint8 for o in out)
    np.testing.assert_array_equal(out[3], enhancer.enhance(images[3]))


def test_rejects_non_rgb_arrays_and_bad_tiles():
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        _enhancer().enhance(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="twice the margin"):
        _enhancer(tile=64, margin=32)


def test_threads_and_batch_mates_leave_each_photo_as_it_is_alone():
    """A photo gets the same bytes alone on one thread, among other photos of its size, and
    with its tiles (or the batch's photos) spread over threads: the archive job's output does
    not depend on how it was batched or how many CPUs its process holds."""
    from skinray import synth

    # a confident light model that changes pixels (the bundled one leaves good photos alone)
    loaded = _light_enhancer().loaded
    photos = [synth.skin_image(0, i, 256) for i in range(5)] + [synth.skin_image(0, 9, 700)]  # 700 px: tiled
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one intra-op thread per image or tile (what the archive job sets)
    try:
        alone = [Enhancer(loaded, "cpu").enhance(p) for p in photos]
        for n in (1, 2, 3):
            together = Enhancer(loaded, "cpu", threads=n).enhance_batch(photos)
            for i, (a, b) in enumerate(zip(alone, together)):
                np.testing.assert_array_equal(a, b, err_msg=f"photo {i}, {n} threads")
    finally:
        torch.set_num_threads(threads)
    assert all(np.abs(a.astype(int) - p).max() > 0 for a, p in zip(alone, photos)), "the model changed them"
    with pytest.raises(ValueError, match="threads"):
        Enhancer(loaded, "cpu", threads=0)


def _colour_only_lut(**kwargs) -> Enhancer:
    """A trained-looking colour-only `lut` (the default model's architecture: no detail branch)."""
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(arch="lut", width=0))
    model = build_model(cfg.model).eval()
    torch.nn.init.normal_(model.predict[-1].weight, std=0.05)
    return Enhancer(LoadedModel(model, cfg, {}), "cpu", **kwargs)


def test_colour_only_lut_on_cpu_is_the_model_within_a_grey_level_in_any_strips():
    """On the CPU a colour-only lut maps 8-bit pixels through Pillow's 3-D table in strips: the
    model's own float output within 1 grey level, the same bytes whatever the strip height and
    thread count, and no tile margin (its pixels do not depend on their neighbours)."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (700, 450, 3), dtype=np.uint8)
    enhancer = _colour_only_lut(tile=4096)
    assert enhancer.margin == 0
    with torch.no_grad():
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        reference = (enhancer.model(x)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    out = enhancer.enhance(image)
    difference = np.abs(out.astype(int) - reference)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.05
    assert np.abs(out.astype(int) - image).mean() > 2, "the trained-looking model changes colours"
    for strips in (_colour_only_lut(tile=64, margin=8), _colour_only_lut(tile=200, threads=2)):
        np.testing.assert_array_equal(strips.enhance(image), out)


def test_colour_only_lut_stops_between_strips():
    from skinray.errors import EnhanceStopped

    calls = []

    def stop_on_third() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(EnhanceStopped):
        _colour_only_lut(tile=64, margin=0).enhance(np.zeros((640, 64, 3), np.uint8), should_stop=stop_on_third)
    assert len(calls) == 3, "strips after the stop are not computed"


def _light_enhancer(**kwargs) -> Enhancer:
    """The light model with a trained-looking output layer: a warm-light correction, confident."""
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(arch="light"))
    model = build_model(cfg.model)
    with torch.no_grad():
        model.predict[-1].bias.copy_(torch.tensor([-0.4, 0.5, 0.2, 3.0]))
    return Enhancer(LoadedModel(model, cfg, {}), "cpu", **kwargs)


def test_light_model_tables_are_its_float_output_within_a_grey_level_in_any_strips():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (600, 300, 3), dtype=np.uint8)
    enhancer = _light_enhancer(tile=4096)
    assert enhancer.margin == 0
    with torch.no_grad():  # the torch module's float correction, with the parameters the Enhancer found
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        params = torch.from_numpy(enhancer._whole_image_context(image))
        reference = (enhancer.loaded.model.eval()(x, params)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    out = enhancer.enhance(image)
    assert np.abs(out.astype(int) - reference).max() <= 1
    assert np.abs(out.astype(int) - image).mean() > 2
    for strips in (_light_enhancer(tile=64, margin=8), _light_enhancer(tile=200, threads=2)):
        np.testing.assert_array_equal(strips.enhance(image), out)


def test_light_model_reports_the_correction_it_applies():
    enhancer = _light_enhancer()
    photo = np.full((64, 64, 3), 128, np.uint8)
    (found,) = enhancer.corrections([photo])
    assert 0.9 < found.confidence < 1.0
    assert found.gains[0] < 1.0 < found.gains[2]  # less red, more blue: it undid a warm light
    assert 3000 < found.kelvin < 6000 and abs(found.tint) < 0.5
    assert abs(found.ev - 0.2 * found.confidence) < 1e-3
    assert _enhancer("lut").corrections([photo]) == [None]


def test_one_pass_gives_the_output_and_the_correction_it_applied():
    """enhance_corrected (the endpoint's and assess_batch's one pass) = enhance_batch + corrections."""
    photos = [synth.skin_image(0, 2, 96), np.full((64, 80, 3), 128, np.uint8)]
    for enhancer in (_light_enhancer(), _light_enhancer(tile=64, margin=8), _enhancer("lut")):
        together = enhancer.enhance_corrected(photos)
        for (out, fix), alone, expected in zip(together, enhancer.enhance_batch(photos), enhancer.corrections(photos)):
            np.testing.assert_array_equal(out, alone)
            assert fix == expected


def test_a_light_model_that_leaves_the_photo_alone_returns_its_very_pixels_in_a_new_array():
    """At initialisation the light model is the identity (zero correction): the photo comes back
    bit-exact, its correction reported as no change, and the caller's array is not shared."""
    image = synth.skin_image(seed=0, index=3, size=300)
    enhancer = _enhancer("light")
    [(out, correction)] = enhancer.enhance_corrected([image])
    assert out.tobytes() == image.tobytes() and not np.shares_memory(out, image)
    assert correction is not None and correction.gains == (1.0, 1.0, 1.0) and correction.ev == 0.0
