from pathlib import Path

import pytest
import torch
from torch import nn

from skinray.config import ModelConfig, load_config
from skinray.model import build_model

POSTER_YAML = Path(__file__).parents[1] / "jobs" / "configs" / "poster.yaml"


@pytest.mark.parametrize("size", [(16, 16), (37, 53), (128, 96)])
@pytest.mark.parametrize("arch", ["lut", "poster"])
def test_output_shape_equals_input_shape_in_unit_range(size, arch):
    model = build_model(ModelConfig(arch=arch)).eval()
    x = torch.rand(2, 3, *size)
    y = model(x)
    assert y.shape == x.shape
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_poster_is_conv_only_with_dropout_and_leaky_relu():
    model = build_model(load_config(POSTER_YAML).model)
    layers = list(model.modules())
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    assert not any(isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d)) for m in layers)
    assert all(m.p == 0.15 for m in layers if isinstance(m, nn.Dropout))
    assert sum(isinstance(m, nn.Dropout) for m in layers) == 3, "after each hidden layer"
    assert any(isinstance(m, nn.LeakyReLU) for m in layers)


@pytest.mark.parametrize("skip", ["concat", "add", "none"])
@pytest.mark.parametrize("depth", [2, 4, 8])
def test_width_depth_and_skip_are_configurable(skip, depth):
    model = build_model(ModelConfig(arch="poster", depth=depth, width=8, skip=skip)).eval()
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == depth
    assert model(torch.rand(1, 3, 20, 24)).shape == (1, 3, 20, 24)


def test_skip_connections_change_the_function():
    torch.manual_seed(0)
    with_skip = build_model(ModelConfig(arch="poster", skip="add", dropout=0.0)).eval()
    torch.manual_seed(0)
    without = build_model(ModelConfig(arch="poster", skip="none", dropout=0.0)).eval()
    x = torch.rand(1, 3, 16, 16)
    assert not torch.allclose(with_skip(x), without(x))


@pytest.mark.parametrize("arch", ["context", "affine"])
def test_context_model_starts_as_identity_and_sees_the_whole_image(arch):
    model = build_model(ModelConfig(arch=arch)).eval()
    x = torch.rand(1, 3, 40, 40) * 0.9 + 0.05
    assert torch.allclose(model(x), x, atol=1e-5), "zero-initialised correction: identity at start"
    torch.nn.init.normal_(model.decoder[-1].weight, std=0.1)
    darker_corner = x.clone()
    darker_corner[:, :, 30:, 30:] *= 0.2
    changed = (model(x) - model(darker_corner)).abs()[:, :, :10, :10]
    assert float(changed.max()) > 1e-4, "a far-away change reaches this corner through the context"
    assert model(torch.rand(2, 3, 17, 29)).shape == (2, 3, 17, 29)


def test_affine_model_can_undo_a_colour_cast_exactly():
    """The colour head's transform is applied to every pixel: set it to the inverse of a known
    affine cast and the cast is gone (no training needed to check the plumbing)."""
    model = build_model(ModelConfig(arch="affine")).eval()
    cast = torch.tensor([[0.8, 0.1, 0.0], [0.0, 0.9, 0.0], [0.05, 0.0, 0.7]])
    offset = torch.tensor([0.05, 0.02, 0.1])
    inverse = torch.linalg.inv(cast)
    params = torch.cat([(inverse - torch.eye(3)).flatten(), -inverse @ offset])
    with torch.no_grad():
        model.colour[-1].bias.copy_(params)
    clean = torch.rand(2, 3, 24, 24) * 0.6 + 0.2
    casted = torch.einsum("ij,njhw->nihw", cast, clean) + offset[None, :, None, None]
    assert torch.allclose(model(casted), clean, atol=1e-5)


def _trained_looking_lut(width: int = 32) -> torch.nn.Module:
    """A `lut` model whose zero-initialised output layers are set to random values, so that it
    changes colours and detail like a trained one would."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="lut", width=width, depth=2, thumbnail=32)).eval()
    torch.nn.init.normal_(model.predict[-1].weight, std=0.05)
    if width:
        torch.nn.init.normal_(model.detail.out[0].weight, std=0.05)
    return model


@pytest.mark.parametrize("width", [0, 32])
def test_lut_model_is_the_identity_at_initialisation(width):
    model = build_model(ModelConfig(arch="lut", width=width, depth=2)).eval()
    x = torch.rand(2, 3, 45, 70)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.equal((y * 255 + 0.5).floor(), (x * 255 + 0.5).floor()), "every grey level unchanged"


def test_lut_model_colours_come_from_the_whole_image():
    model = _trained_looking_lut(width=0)
    x = torch.rand(1, 3, 64, 64) * 0.8 + 0.1
    far_change = x.clone()
    far_change[:, :, 40:, 40:] *= 0.3
    with torch.no_grad():
        changed = (model(x) - model(far_change)).abs()[:, :, :20, :20]
    assert float(changed.max()) > 1e-3, "a change far away alters this corner's colours"
    assert float((model(x) - x).abs().max()) > 1e-3, "the perturbed head changes colours"


def test_lut_model_colour_mapping_is_the_same_for_every_pixel_of_one_colour():
    """Without the detail branch the output is one colour mapping applied per pixel: two
    pixels of equal colour come out equal wherever they are."""
    model = _trained_looking_lut(width=0)
    x = torch.rand(1, 3, 32, 32)
    x[:, :, 3, 5] = x[:, :, 30, 28] = torch.tensor([0.6, 0.4, 0.3])
    with torch.no_grad():
        y = model(x)
    assert torch.allclose(y[:, :, 3, 5], y[:, :, 30, 28])


def test_lut_model_trains_towards_a_colour_cast_inverse():
    """Fifty Adam steps on one cast photo lower the loss a lot: the gradients reach the head."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="lut", width=0, thumbnail=32))
    clean = torch.rand(4, 3, 32, 32) * 0.6 + 0.2
    cast = (clean * torch.tensor([1.2, 0.9, 0.7])[None, :, None, None]).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(50):
        loss = (model(cast) - clean).abs().mean() + model.regularization()
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.3 * first


# ----------------------------------------------------------------------------- light (model v3)


def _light(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(arch="light")).eval()


def _random_head(model: nn.Module, confidence_logit: float | None = None) -> nn.Module:
    """The light model with a non-zero output layer, as after training."""
    with torch.no_grad():
        model.predict[-1].weight.normal_(0.0, 0.05)
        model.predict[-1].bias.copy_(torch.tensor([0.3, -0.4, 0.5, 0.0]))
        if confidence_logit is not None:
            model.predict[-1].weight[3].zero_()
            model.predict[-1].bias[3] = confidence_logit
    return model


def test_light_model_is_exactly_the_identity_at_initialisation():
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        assert torch.equal(_light()(x), x)
        tables = _light().channel_tables(_light().colour_params(torch.rand(1, 3, 64, 64)))
    assert torch.equal(tables, torch.arange(256, dtype=torch.uint8).expand(3, 256))


def test_light_model_is_the_identity_at_zero_confidence():
    model = _random_head(_light(), confidence_logit=-60.0)  # sigmoid(-60) == 0 in float32
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        params = model.colour_params(x)
        assert params[0, :3].abs().max() > 0.1  # it would correct, at full strength
        assert torch.equal(model(x), x)
        assert torch.equal(model.channel_tables(params), torch.arange(256, dtype=torch.uint8).expand(3, 256))


def test_light_model_maps_equal_colours_to_equal_colours_anywhere_in_the_photo():
    """A lesion keeps its colour relative to the skin: the correction is one per-channel mapping."""
    model = _random_head(_light(), confidence_logit=2.0)
    x = torch.rand(1, 3, 48, 48)
    lesion_red = torch.tensor([0.7, 0.25, 0.3])
    x[0, :, 3, 5] = lesion_red
    x[0, :, 40, 44] = lesion_red
    with torch.no_grad():
        y = model(x)
    assert not torch.allclose(y[0, :, 3, 5], lesion_red, atol=1e-3)  # it did change
    assert torch.equal(y[0, :, 3, 5], y[0, :, 40, 44])


def test_light_model_training_output_is_full_strength_and_confidence_scaled():
    model = _random_head(_light(), confidence_logit=0.0).train()
    model.predict[2].p = 0.0  # no dropout, so both passes see the same network
    x = torch.rand(2, 3, 32, 32)
    full, applied = model(x)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(applied, model(x), atol=1e-6)  # inference applies the confident one
    assert not torch.allclose(full, applied, atol=1e-3)
    # the confidence-scaled output trains the confidence alone: no gradient reaches the estimate
    model.zero_grad()
    applied.sum().backward()
    assert model.predict[-1].weight.grad[:3].abs().max() == 0 and model.predict[-1].weight.grad[3].abs().max() > 0


def test_light_model_tables_agree_with_its_float_output():
    model = _random_head(_light(), confidence_logit=1.0)
    x = (torch.randint(0, 256, (1, 3, 24, 24)).float() / 255.0)
    with torch.no_grad():
        params = model.colour_params(torch.nn.functional.interpolate(x, size=64, mode="bilinear"))
        y = model(x, params)
        tables = model.channel_tables(params).long()  # (3, 256)
    levels = (x[0] * 255).round().long()  # (3, H, W)
    looked_up = torch.stack([tables[c][levels[c]] for c in range(3)]).float()
    assert (looked_up - (y[0] * 255)).abs().max() <= 0.51
