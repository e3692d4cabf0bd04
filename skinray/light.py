"""The ``light`` model (:class:`skinray.model.LightCorrector`, the default) at inference, in numpy.

The light model looks at a 64 px thumbnail of the whole photo through a network of a few
thousand multiply-adds a pixel and predicts four numbers; the correction itself is three
256-entry tables that Pillow applies to the 8-bit pixels. Nothing of that needs PyTorch, whose
import alone (2-3 s on a laptop core) was most of the time one photo took from the command to
the written file. :class:`LightTables` computes the same numbers as the torch module's
``colour_params`` / ``gains`` / ``channel_tables`` (float32, the same operations in the same
order; tests/test_light.py holds the two together), from the same state dict, so the one
predictor (:class:`skinray.predict.Enhancer`) runs it on the CPU for batch, online and the API
alike. Training, export and the other architectures keep the torch module.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
# Log-chroma histogram bins (log R/G, log B/G) and the correction's bounds: the torch module
# (skinray.model.LightCorrector) takes them from here.
HIST_U, HIST_V, HIST_BINS = (-1.5, 2.5), (-3.5, 1.0), (32, 36)
LOG_GAIN_MAX, EV_MAX = 2.0, 3.0
SLOPE = np.float32(0.2)  # LeakyReLU's


def _leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, x * SLOPE)


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for the network's small matrices with numpy's own loops: OpenBLAS spreads even
    a 16 x 45 x 1024 product over its threads, 2-10x slower than one core on a shared machine."""
    return np.einsum("ij,j...->i...", a, b)


def _conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """``F.conv2d(x, weight, bias, stride, padding=1)`` for one image: (C, H, W) -> (C_out, H', W')."""
    c, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    cols = np.empty((c, 3, 3, ho, wo), np.float32)  # im2col, in the weight's (C_in, kh, kw) order
    for ky in range(3):
        for kx in range(3):
            cols[:, ky, kx] = padded[:, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
    out = _product(weight.reshape(weight.shape[0], -1), cols.reshape(c * 9, ho * wo))
    return (out + bias[:, None]).reshape(-1, ho, wo)


def _quantile(x: np.ndarray, q: float) -> np.ndarray:
    """:func:`skinray.model._quantile` (linear interpolation along the last axis)."""
    ordered, last = np.sort(x, axis=-1), x.shape[-1] - 1
    low = int(q * last)
    frac, high = np.float32(q * last - low), min(low + 1, last)
    return ordered[..., low] + frac * (ordered[..., high] - ordered[..., low])


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """:func:`skinray.lut.thumbnail` of one 8-bit photo (H, W, 3) -> (3, size, size) float32 in
    [0, 1]: area averages over ``F.adaptive_avg_pool2d``'s windows, or a bilinear stretch
    (``align_corners=False``) of photos smaller than ``size``."""
    h, w = image.shape[:2]
    planes = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)  # (3, H, W)
    if h >= size and w >= size:
        return _pool(_pool(planes, 1, size), 2, size)
    return _stretch(_stretch(planes, 1, size), 2, size)


def _pool(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Adaptive average pooling along ``axis``: window i is [floor(i n / size), ceil((i+1) n / size))."""
    n = x.shape[axis]
    starts = (np.arange(size) * n) // size
    ends = -((-(np.arange(size) + 1) * n) // size)
    csum = np.cumsum(np.moveaxis(x, axis, 0).astype(np.float64), axis=0)
    csum = np.concatenate([np.zeros_like(csum[:1]), csum])
    means = (csum[ends] - csum[starts]) / (ends - starts).reshape((-1,) + (1,) * (x.ndim - 1))
    return np.moveaxis(means.astype(np.float32), 0, axis)


def _stretch(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Bilinear resampling along ``axis`` as ``F.interpolate(..., align_corners=False)`` does it."""
    n = x.shape[axis]
    scale = np.float32(n / size)
    src = np.maximum((np.arange(size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    low = np.minimum(src.astype(np.int64), n - 1)
    high = np.minimum(low + 1, n - 1)
    frac = (src - low).astype(np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    moved = np.moveaxis(x, axis, 0)
    return np.moveaxis(moved[low] * (1 - frac) + moved[high] * frac, 0, axis).astype(np.float32)


def decode(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded in [0, 1] -> linear light (:meth:`LightCorrector.decode`)."""
    return np.where(x > 0.04045, ((np.maximum(x, np.float32(0.04045)) + np.float32(0.055)) / np.float32(1.055))
                    ** np.float32(2.4), x / np.float32(12.92)).astype(np.float32)


def encode(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded in [0, 1], clipped (:meth:`LightCorrector.encode`)."""
    c = np.clip(linear, 0, 1).astype(np.float32)
    return np.where(c > 0.0031308, np.float32(1.055) * np.maximum(c, np.float32(0.0031308)) ** np.float32(1 / 2.4)
                    - np.float32(0.055), np.float32(12.92) * c).astype(np.float32)


class LightTables:
    """A ``light`` model's weights and the numbers it predicts, for inference without PyTorch.

    ``state``: the torch module's state dict as float32 arrays; ``config``: its ``model`` section
    (``thumbnail``). Parameters are (1, 4) float32 arrays: log gain R/G, log gain B/G, exposure
    (stops), confidence logit."""

    uses_global_context = True
    ALIGN, halo = 1, 0  # an output pixel depends on its own input pixel and the thumbnail alone
    HIST_U, HIST_V, HIST_BINS = HIST_U, HIST_V, HIST_BINS
    LOG_GAIN_MAX, EV_MAX = LOG_GAIN_MAX, EV_MAX

    def __init__(self, state: Mapping[str, Any], thumbnail_size: int):
        self.thumbnail_size = int(thumbnail_size)
        self._w = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in state.items()}
        self._head = self._layers("head.")
        self._hist = self._layers("histogram_head.")
        self._predict = self._layers("predict.")
        for name, layers in (("head", self._head), ("histogram_head", self._hist), ("predict", self._predict)):
            if not layers:
                raise ValueError(f"not a light model's state: no {name}.* weights")

    @classmethod
    def from_module(cls, module) -> "LightTables":
        """From a torch :class:`skinray.model.LightCorrector` (weights copied)."""
        return cls({k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()},
                   module.thumbnail_size)

    def parameter_count(self) -> int:
        """The torch module's parameter count (its state dict holds its parameters only)."""
        return int(sum(w.size for w in self._w.values()))

    def _layers(self, prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight, bias) of every conv or linear layer under ``prefix``, in the module's order."""
        indices = sorted({int(k[len(prefix):].split(".")[0]) for k in self._w if k.startswith(prefix)})
        return [(self._w[f"{prefix}{i}.weight"], self._w[f"{prefix}{i}.bias"]) for i in indices]

    def _stats(self, linear: np.ndarray) -> np.ndarray:
        """(3, T, T) linear -> (17,): :meth:`LightCorrector._stats`."""
        flat = np.maximum(linear.reshape(3, -1), np.float32(1e-4))
        grey_world = flat.mean(1, dtype=np.float32)
        shades = ((flat ** 6).mean(1, dtype=np.float32) ** np.float32(1 / 6)).astype(np.float32)
        bright = np.maximum(_quantile(flat, 0.99), np.float32(1e-4))
        dy = np.abs(linear[:, 1:] - linear[:, :-1]).mean((1, 2), dtype=np.float32)
        dx = np.abs(linear[..., 1:] - linear[..., :-1]).mean((1, 2), dtype=np.float32)
        edges = np.maximum(dy + dx, np.float32(1e-5))
        lum = np.einsum("c,cp->p", LUMA, flat)  # (T*T,)
        q = np.array([_quantile(lum, p) for p in (0.01, 0.5, 0.99)], np.float32)
        clipped = np.float32((flat.max(0) > 0.98).mean())
        dark = np.float32((lum < 0.005).mean())
        return np.concatenate([np.log(grey_world), np.log(shades), np.log(bright), np.log(edges),
                               np.log(np.maximum(q, np.float32(1e-4))), [clipped, dark]]).astype(np.float32)

    def _histogram(self, chroma: np.ndarray, linear: np.ndarray) -> np.ndarray:
        """(2, T, T) log-chroma -> (1, 32, 36): :meth:`LightCorrector._histogram`."""
        (u0, u1), (v0, v1), (bu, bv) = self.HIST_U, self.HIST_V, self.HIST_BINS
        iu = np.clip(np.floor((chroma[0] - np.float32(u0)) / np.float32(u1 - u0) * np.float32(bu)), 0, bu - 1)
        iv = np.clip(np.floor((chroma[1] - np.float32(v0)) / np.float32(v1 - v0) * np.float32(bv)), 0, bv - 1)
        usable = ((linear.max(0) < 0.98) & (linear.min(0) > 0.002)).astype(np.float32).reshape(-1)
        index = (iu.astype(np.int64) * bv + iv.astype(np.int64)).reshape(-1)
        hist = np.bincount(index, weights=usable, minlength=bu * bv).astype(np.float32)
        hist = hist / np.float32(max(float(usable.sum()), 1.0))
        return np.sqrt(hist).reshape(1, bu, bv)

    def colour_params(self, thumb: np.ndarray) -> np.ndarray:
        """Thumbnail (3, T, T) or (1, 3, T, T) float32 in [0, 1] -> (1, 4), as the torch module."""
        thumb = np.asarray(thumb, np.float32).reshape(3, *np.shape(thumb)[-2:])
        linear = decode(thumb)
        chroma = np.log(np.maximum(linear[[0, 2]], np.float32(1e-4)) / np.maximum(linear[1:2], np.float32(1e-4)))
        h = np.concatenate([thumb, chroma.astype(np.float32)])
        for weight, bias in self._head:
            h = _leaky(_conv3x3(h, weight, bias, 2))
        head = h.mean((1, 2), dtype=np.float32)  # AdaptiveAvgPool2d(1) + Flatten: (128,)
        g = self._histogram(chroma, linear)
        (w0, b0), (w1, b1), (w2, b2), (wl, bl) = self._hist
        g = _leaky(_conv3x3(g, w0, b0, 1))
        g = _leaky(_conv3x3(g, w1, b1, 2))
        g = _leaky(_conv3x3(g, w2, b2, 2))
        g = _leaky(_product(wl, g.reshape(-1)) + bl)
        x = np.concatenate([head, g, self._stats(linear)]).astype(np.float32)
        (wa, ba), (wb, bb) = self._predict
        raw = _product(wb, _leaky(_product(wa, x) + ba)) + bb  # dropout is off at inference
        bound = np.array([self.LOG_GAIN_MAX, self.LOG_GAIN_MAX, self.EV_MAX], np.float32)
        return np.concatenate([bound * np.tanh(raw[:3] / bound), raw[3:]]).astype(np.float32)[None]

    def params_of(self, image: np.ndarray) -> np.ndarray:
        """An 8-bit photo (H, W, 3) -> its (1, 4) parameters, from its thumbnail."""
        return self.colour_params(thumbnail(image, self.thumbnail_size))

    @staticmethod
    def confidence(params: np.ndarray) -> np.ndarray:
        """(N, 4) -> (N,) in [0, 1]."""
        logit = np.asarray(params, np.float32)[:, 3]
        return (1.0 / (1.0 + np.exp(-logit.astype(np.float64)))).astype(np.float32)

    def gains(self, params: np.ndarray, strength: np.ndarray | None = None) -> np.ndarray:
        """(N, 4) -> linear-light multipliers (N, 3): :meth:`LightCorrector.gains`."""
        params = np.asarray(params, np.float32)
        strength = self.confidence(params) if strength is None else np.asarray(strength, np.float32)
        log_rb = params[:, :2] * strength[:, None]
        gains = np.exp(np.stack([log_rb[:, 0], np.zeros_like(log_rb[:, 0]), log_rb[:, 1]], axis=1))
        gains = gains / (gains @ LUMA)[:, None]
        return (gains * np.power(np.float32(2.0), params[:, 2] * strength)[:, None]).astype(np.float32)

    def channel_tables(self, params: np.ndarray) -> np.ndarray:
        """(1, 4) -> the correction as three 256-entry tables (3, 256) uint8 (Pillow's ``Image.point``)."""
        gains = self.gains(params)[0]
        levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
        if (gains == 1.0).all():  # the module's exact identity at unit gains
            out = np.broadcast_to(levels, (3, 256))
        else:
            out = encode(decode(np.broadcast_to(levels, (3, 256))) * gains[:, None])
        return np.clip(np.floor(out * np.float32(255.0) + np.float32(0.5)), 0, 255).astype(np.uint8)


def is_light(config_model) -> bool:
    """Whether a saved ``model`` config is the light enhancer (not a downstream task model)."""
    return getattr(config_model, "arch", "") == "light" and not getattr(config_model, "task", "")

