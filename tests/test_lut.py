"""Colour tables and curves (skinray.lut): exact where the maths says they must be."""

import numpy as np
import pytest
import torch

from skinray import lut


def _image(n=2, h=23, w=31, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [2, 9, 17, 33])
def test_identity_table_returns_the_image(size):
    x = _image()
    out = lut.apply_lut(x, lut.identity_lut(size).expand(2, -1, -1, -1, -1))
    assert torch.allclose(out, x, atol=1e-6)


def test_every_uint8_colour_survives_the_identity_table_bit_exactly():
    levels = torch.arange(256, dtype=torch.float32) / 255  # every grey level in each channel
    x = torch.stack(torch.meshgrid(levels, levels.flip(0), levels.roll(7), indexing="ij")[::-1])[:, :, :, 0]
    x = x[None]  # (1, 3, 256, 256): all 256 levels in every channel
    out = lut.apply_lut(x, lut.identity_lut(17)[None])
    assert torch.equal((out * 255 + 0.5).floor(), (x * 255 + 0.5).floor())


def test_a_channel_swap_table_swaps_channels():
    swap = lut.identity_lut(17)[[2, 0, 1]]  # out = (b, r, g)
    x = _image()
    out = lut.apply_lut(x, swap.expand(2, -1, -1, -1, -1))
    assert torch.allclose(out, x[:, [2, 0, 1]], atol=1e-6)


def test_a_linear_colour_matrix_as_a_table_is_applied_exactly():
    """Trilinear interpolation is exact for mappings linear in (r, g, b): a 3x4 colour transform
    baked into a coarse 5^3 table gives the same colours as the matrix itself."""
    matrix = torch.tensor([[0.7, 0.2, 0.05], [0.1, 0.8, 0.05], [0.0, 0.15, 0.6]])
    offset = torch.tensor([0.05, 0.0, 0.1])
    table = torch.einsum("ij,jbgr->ibgr", matrix, lut.identity_lut(5)) + offset[:, None, None, None]
    x = _image()
    expected = torch.einsum("ij,njhw->nihw", matrix, x) + offset[None, :, None, None]
    assert torch.allclose(lut.apply_lut(x, table.expand(2, -1, -1, -1, -1)), expected, atol=1e-6)


def test_each_image_uses_its_own_table():
    x = _image(n=2)
    tables = torch.stack([lut.identity_lut(9), 1.0 - lut.identity_lut(9)])  # identity, negative
    out = lut.apply_lut(x, tables)
    assert torch.allclose(out[0], x[0], atol=1e-6) and torch.allclose(out[1], 1 - x[1], atol=1e-6)


def test_curves_identity_and_a_known_curve():
    x = _image()
    assert torch.allclose(lut.apply_curves(x, lut.identity_curves(32).expand(2, -1, -1)), x, atol=1e-6)
    squares = (torch.linspace(0, 1, 257) ** 2).expand(2, 3, 257)  # y = x^2, finely sampled
    assert torch.allclose(lut.apply_curves(x, squares), x ** 2, atol=1e-5)


def test_thumbnail_is_the_area_average_and_stretches_small_images():
    x = _image(n=1, h=256, w=128)
    thumb = lut.thumbnail(x, 64)
    assert thumb.shape == (1, 3, 64, 64)
    assert torch.allclose(thumb[0, :, 0, 0], x[0, :, :4, :2].mean(dim=(1, 2)), atol=1e-6)
    assert lut.thumbnail(_image(n=1, h=20, w=30), 64).shape == (1, 3, 64, 64)


def test_regularisers_are_zero_for_the_identity_and_see_an_inversion():
    ident = lut.identity_lut(9)
    assert float(lut.monotonicity(ident)) == 0.0
    linear = torch.einsum("ij,jbgr->ibgr", torch.tensor([[1.5, 0.2, 0], [0, 0.7, 0.1], [0.3, 0, 2.0]]), ident)
    assert float(lut.smoothness(ident)) < 1e-12 and float(lut.smoothness(linear)) < 1e-12
    inverted = ident.clone()
    inverted[0] = 1 - inverted[0]  # red out falls as red in rises
    assert float(lut.monotonicity(inverted)) > 0.01
    rough = ident + torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, ident.shape)).float()
    assert float(lut.smoothness(rough)) > 0.01
