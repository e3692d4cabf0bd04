"""Synthetic degradations of clean photos: pure functions, randomness passed in.

Tensor contract for every function here: images are ``float32`` arrays of shape ``(H, W, 3)``
with values in ``[0, 1]`` (RGB); outputs have the same shape, dtype and range (every step clips).
Random choices come from a ``numpy.random.Generator`` argument, never from global state:
:func:`sample` draws one image's :class:`Degradation` (plain numbers), and :func:`apply` is a
pure function of (image, Degradation) -- the sensor noise included, which is seeded by the draw.

Faults, in the order :func:`apply` runs them:

1. colour: the light (v3, the default recipe; physically based, in linear light): an illuminant
   along the black-body locus with a green-magenta tint off it, seen by a camera white-balanced
   for 6500 K (von Kries gains, :func:`relight`), and an exposure error that leaves evidence
   (:func:`_exposure_draws`); the v2 faults: white-balance cast (per-channel gains on encoded
   values), exposure gain + gamma tone curve; and the poster's colour jitter as torchvision's
   ``ColorJitter`` defines it (brightness, contrast, saturation, HSV hue, in a random order);
2. down-then-up resize blur with a drawn resampling kernel;
3. gaussian sensor noise;
4. JPEG recompression (Pillow, 4:2:0 chroma subsampling).

A ``clean`` draw leaves the image untouched: :func:`apply_uint8` returns an exact copy.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from skinray.config import DegradeConfig

# torchvision's rgb_to_grayscale weights (0.2989, not 0.299: matched for exact parity)
_GRAY = np.array([0.2989, 0.587, 0.114], np.float32)
# luma weights that a white-balance cast keeps constant for a grey pixel
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)

SUBSETS = ("colour", "camera", "clean")
DOWN_KERNELS = ("box", "bilinear", "bicubic", "lanczos")
UP_KERNELS = ("bilinear", "bicubic", "lanczos")
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
             "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
             "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


# ----------------------------------------------------------------------------- colour jitter
# Each op follows torchvision.transforms.v2.functional's float-image kernel: same formula, same
# clipping to [0, 1]. tests/test_degrade.py checks them against torchvision.


def _blend(img: np.ndarray, other: np.ndarray | float, ratio: float) -> np.ndarray:
    return np.clip(img * np.float32(ratio) + other * np.float32(1.0 - ratio), 0.0, 1.0).astype(np.float32)


def _grayscale(img: np.ndarray) -> np.ndarray:
    return (img @ _GRAY)[..., None]  # (H, W, 1)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale all channels: factor 0 is black, 1 is unchanged, 2 is twice as bright (clipped)."""
    return np.clip(img * np.float32(factor), 0.0, 1.0).astype(np.float32)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean of the grayscale image: 0 is flat grey, 1 unchanged."""
    mean = np.float32(_grayscale(img).mean(dtype=np.float64))
    return _blend(img, mean, factor)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the per-pixel grayscale: 0 is grayscale, 1 unchanged, >1 more colourful."""
    return _blend(img, _grayscale(img), factor)


def _rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    """torchvision's ``_rgb_to_hsv`` (after Pillow's Convert.c); h, s, v in [0, 1]."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    maxc, minc = img.max(axis=-1), img.min(axis=-1)
    eqc = maxc == minc
    crange = maxc - minc
    ones = np.ones_like(maxc)
    s = crange / np.where(eqc, ones, maxc)
    divisor = np.where(eqc, ones, crange)
    rc, gc, bc = ((maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor)
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_r & (maxc != g)
    h = (bc - gc) * is_r + (2.0 + rc - bc) * is_g + (4.0 + gc - rc) * is_b
    h = np.fmod(h / np.float32(6.0) + np.float32(1.0), np.float32(1.0))
    return np.stack([h, s, maxc], axis=-1).astype(np.float32)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """torchvision's ``_hsv_to_rgb``."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    h6 = h * np.float32(6.0)
    i = np.floor(h6)
    f = h6 - i
    i = i.astype(np.int64) % 6
    q = np.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = np.clip(v * (1.0 - s + s * f), 0.0, 1.0)
    p = np.clip(v * (1.0 - s), 0.0, 1.0)
    vpqt = np.stack([v, p, q, t], axis=-1)  # (H, W, 4)
    select = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])  # rgb <- vpqt by i
    index = np.moveaxis(select[:, i], 0, -1)  # (H, W, 3)
    return np.take_along_axis(vpqt, index, axis=-1).astype(np.float32)


def adjust_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Shift hue by ``shift`` turns (-0.5..0.5) in HSV, as torchvision's ``adjust_hue``."""
    if not -0.5 <= shift <= 0.5:
        raise ValueError(f"hue shift {shift} is not in [-0.5, 0.5]")
    hsv = _rgb_to_hsv(img.astype(np.float32))
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(shift), np.float32(1.0))
    return _hsv_to_rgb(hsv)


def color_jitter(img: np.ndarray, brightness: float = 1.0, contrast: float = 1.0, saturation: float = 1.0,
                 hue: float = 0.0, order: tuple[int, ...] = (0, 1, 2, 3)) -> np.ndarray:
    """torchvision's ``ColorJitter`` with its factors drawn: ops 0 brightness, 1 contrast,
    2 saturation, 3 hue, run in ``order``; ops at their identity value are skipped."""
    out = img.astype(np.float32)
    for op in order:
        if op == 0 and brightness != 1.0:
            out = adjust_brightness(out, brightness)
        elif op == 1 and contrast != 1.0:
            out = adjust_contrast(out, contrast)
        elif op == 2 and saturation != 1.0:
            out = adjust_saturation(out, saturation)
        elif op == 3 and hue != 0.0:
            out = adjust_hue(out, hue)
    return out


# ----------------------------------------------------------------------------- camera faults


def white_balance(img: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """Per-channel gains (a colour cast), clipped."""
    return np.clip(img * np.asarray(gains, np.float32), 0.0, 1.0).astype(np.float32)


def tone(img: np.ndarray, exposure: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """Exposure gain then a gamma tone curve: ``clip(img * exposure) ** gamma``."""
    out = np.clip(img * np.float32(exposure), 0.0, 1.0)
    if gamma != 1.0:
        out = np.power(out, np.float32(gamma))
    return out.astype(np.float32)


def down_up(img: np.ndarray, factor: float, down: str = "box", up: str = "bicubic") -> np.ndarray:
    """Downscale by ``factor`` (>= 1) with resampling kernel ``down``, then back up with ``up``
    (Pillow names, lower case): blur that mimics a low-resolution camera. factor 1 returns the
    input unchanged."""
    if factor <= 1.0:
        return img
    h, w = img.shape[:2]
    small = (max(1, round(w / factor)), max(1, round(h / factor)))
    channels = []
    for c in range(3):  # Pillow resizes float images one channel ("F" mode) at a time
        plane = Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32), mode="F")
        plane = plane.resize(small, _RESAMPLE[down]).resize((w, h), _RESAMPLE[up])
        channels.append(np.asarray(plane))
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def add_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian sensor noise of standard deviation ``sigma``; a pure function of ``seed``."""
    noise = np.random.default_rng(seed).standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(img + noise, 0.0, 1.0).astype(np.float32)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` with 4:2:0 chroma subsampling (Pillow) and decode again."""
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img), "RGB").save(buf, "JPEG", quality=int(quality), subsampling="4:2:0")
    with Image.open(io.BytesIO(buf.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"), np.float32) / np.float32(255.0)


# ----------------------------------------------------------------------------- light (v3)
# sRGB (linear) from CIE XYZ, D65 (IEC 61966-2-1)
_XYZ_TO_RGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
# linear-light luminance of sRGB primaries: a cast keeps a white's luminance
_Y = np.array([0.2126, 0.7152, 0.0722])
NEUTRAL_KELVIN = 6500.0  # the illuminant a camera white-balanced for 6500 K renders neutral


def planck_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 chromaticity of a black-body radiator at ``kelvin`` (1667-25000 K), by the cubic
    spline of Kim et al. (US patent 7024034, 2006), within 0.001 in x and y of Planck's law."""
    t = float(np.clip(kelvin, 1667.0, 25000.0))
    if t <= 4000.0:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def illuminant_rgb(kelvin: float) -> np.ndarray:
    """Linear sRGB of a black-body white at ``kelvin``, luminance 1, shape (3,)."""
    x, y = planck_xy(kelvin)
    xyz = np.array([x / y, 1.0, (1.0 - x - y) / y])
    return _XYZ_TO_RGB @ xyz


def cast_gains(kelvin: float, tint: float = 0.0) -> np.ndarray:
    """Von Kries gains (linear light, shape (3,)) of a scene lit at ``kelvin`` and rendered by a
    camera white-balanced for 6500 K: ``rgb(T) / rgb(6500 K)``, the green gain times
    ``exp(tint)`` (> 0 green, < 0 magenta: fluorescent and LED light off the black-body locus),
    scaled so that white keeps its luminance (a cast, not an exposure change). 6500 K with tint
    0 is exactly (1, 1, 1)."""
    if kelvin == NEUTRAL_KELVIN and tint == 0.0:
        return np.ones(3)
    gains = illuminant_rgb(kelvin) / illuminant_rgb(NEUTRAL_KELVIN)
    gains[1] *= np.exp(tint)
    return gains / float(gains @ _Y)


def srgb_decode(img: np.ndarray) -> np.ndarray:
    """sRGB-encoded float (H, W, 3) in [0, 1] -> linear light, float32."""
    img = np.asarray(img, np.float32)
    return np.where(img > 0.04045, ((np.maximum(img, 0.04045) + 0.055) / 1.055) ** 2.4,
                    img / 12.92).astype(np.float32)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]: the sensor saturates) -> sRGB-encoded float32 in [0, 1]."""
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c > 0.0031308, 1.055 * np.power(c, 1.0 / 2.4) - 0.055, 12.92 * c).astype(np.float32)


def relight(img: np.ndarray, kelvin: float = NEUTRAL_KELVIN, tint: float = 0.0, ev: float = 0.0) -> np.ndarray:
    """The photo as a camera white-balanced for 6500 K would have taken it under a black-body
    light at ``kelvin`` with ``tint``, exposed ``ev`` stops off: in linear light, every pixel times
    :func:`cast_gains` times ``2 ** ev``, clipped where the sensor saturates. Undone exactly (up
    to clipping) by the inverse gains; 6500 K, tint 0 and ev 0 return the image unchanged."""
    gains = cast_gains(kelvin, tint) * 2.0 ** ev
    if np.all(gains == 1.0):
        return np.array(img, np.float32)
    return srgb_encode(srgb_decode(img) * gains.astype(np.float32))


def _light_draws(rng: np.random.Generator, cfg: DegradeConfig) -> dict:
    """An illuminant uniform in mired (1e6 / K) between ``kelvin_min`` and ``kelvin_max``, a tint
    uniform in [-tint, tint]."""
    mired = rng.uniform(1e6 / cfg.kelvin_max, 1e6 / cfg.kelvin_min)
    return dict(kelvin=float(1e6 / mired), tint=float(rng.uniform(-cfg.tint, cfg.tint)))


def _exposure_draws(rng: np.random.Generator, cfg: DegradeConfig, img: np.ndarray) -> dict:
    """An exposure error drawn so that the photo shows it: never asked to guess a skin tone.

    A darker skin is not an under-exposed lighter one, so an exposure fault is only drawn past
    what good photos show. Under-exposure: the image's 99th-percentile linear luminance (its
    highlights, whatever the skin) is pushed below ``dark_p99`` (lower than in 99% of good
    photos), then up to ``ev_extra`` stops further. Over-exposure: its median luminance is pushed
    above ``bright_p50`` (higher than in 99% of good photos), then up to ``ev_extra`` stops
    further, clipping the highlights. Photos already past the line get at least 0.25 stops."""
    luminance = srgb_decode(img[::4, ::4]) @ _Y.astype(np.float32)  # a quarter-resolution view
    if rng.random() < cfg.under_share:
        p99 = max(float(np.percentile(luminance, 99)), 1e-4)
        ev = min(np.log2(cfg.dark_p99 / p99), -0.25) - rng.uniform(0.0, cfg.ev_extra)
    else:
        p50 = max(float(np.percentile(luminance, 50)), 1e-4)
        ev = max(np.log2(cfg.bright_p50 / p50), 0.25) + rng.uniform(0.0, cfg.ev_extra)
    return dict(ev=float(np.clip(ev, -cfg.ev_max, cfg.ev_max)))


# ----------------------------------------------------------------------------- draws


@dataclass(frozen=True)
class Degradation:
    """One image's random draws; the defaults mean "untouched"."""

    clean: bool = False  # True: input is exactly the target (no fault at all)
    jitter: bool = False  # torchvision-ColorJitter-style colour jitter applied
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[int, ...] = (0, 1, 2, 3)  # order of the 4 jitter ops (0 b, 1 c, 2 s, 3 h)
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)  # white-balance cast, per-channel gains
    exposure: float = 1.0  # linear gain before the tone curve
    gamma: float = 1.0  # tone curve out = in ** gamma
    scale: float = 1.0  # down-up blur factor (1 = none)
    down_kernel: str = "box"
    up_kernel: str = "bicubic"
    jpeg_quality: int = 0  # 0 = no JPEG recompression
    noise: float = 0.0  # sensor noise sigma (0 = none)
    noise_seed: int = 0  # noise is a pure function of this draw
    kelvin: float = NEUTRAL_KELVIN  # v3 light: the illuminant's colour temperature (6500 = none)
    tint: float = 0.0  # v3 light: green (> 0) or magenta (< 0) off the black-body locus
    ev: float = 0.0  # v3 light: exposure error in stops, in linear light (clips)

    @property
    def subset(self) -> str:
        """"colour" if any colour fault, else "camera" if blur/JPEG/noise, else "clean"."""
        if not self.clean:
            cast = tuple(self.wb_gains) != (1.0, 1.0, 1.0)
            light = self.kelvin != NEUTRAL_KELVIN or self.tint != 0.0 or self.ev != 0.0
            if self.jitter or cast or light or self.exposure != 1.0 or self.gamma != 1.0:
                return "colour"
            if self.scale > 1.0 or self.jpeg_quality > 0 or self.noise > 0.0:
                return "camera"
        return "clean"

    def as_dict(self) -> dict:
        return asdict(self)


def _loguniform(rng: np.random.Generator, spread: float) -> float:
    """A factor log-uniform in [1 / (1 + spread), 1 + spread]."""
    return float(np.exp(rng.uniform(-np.log1p(spread), np.log1p(spread))))


def _jitter_draws(rng: np.random.Generator, cfg: DegradeConfig) -> dict:
    return dict(
        jitter=True,
        order=tuple(int(i) for i in rng.permutation(4)),
        brightness=float(rng.uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness)),
        contrast=float(rng.uniform(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast)),
        saturation=float(rng.uniform(max(0.0, 1 - cfg.saturation), 1 + cfg.saturation)),
        hue=float(rng.uniform(-cfg.hue, cfg.hue)),
    )


def _wb_draws(rng: np.random.Generator, cfg: DegradeConfig) -> dict:
    gains = np.array([_loguniform(rng, cfg.wb), 1.0, _loguniform(rng, cfg.wb)])
    gains /= float(gains @ _LUMA)  # a grey pixel keeps its luma: a cast, not an exposure change
    return dict(wb_gains=tuple(float(g) for g in gains))


def _tone_draws(rng: np.random.Generator, cfg: DegradeConfig) -> dict:
    return dict(exposure=float(2.0 ** rng.uniform(-cfg.exposure, cfg.exposure)),
                gamma=_loguniform(rng, cfg.gamma))


def _blur_draws(rng: np.random.Generator, cfg: DegradeConfig) -> dict:
    scale = float(rng.uniform(cfg.scale_min, cfg.scale_max))
    if not cfg.random_kernels:
        return dict(scale=scale, down_kernel="box", up_kernel="bicubic")
    return dict(scale=scale, down_kernel=str(rng.choice(DOWN_KERNELS)), up_kernel=str(rng.choice(UP_KERNELS)))


def sample(rng: np.random.Generator, cfg: DegradeConfig, subset: str | None = None,
           image: np.ndarray | None = None) -> Degradation:
    """Draw one image's degradation.

    ``subset=None`` is the training distribution: clean with probability ``cfg.clean_fraction``;
    otherwise each fault with its own probability (light ``light_prob``, exposure
    ``exposure_error_prob``, jitter ``jitter_fraction``, v2 white balance ``wb_prob``, v2
    exposure/gamma ``exposure_prob``, blur ``blur_prob``, JPEG ``jpeg_prob``, noise
    ``noise_prob``). A non-clean draw that drew no fault at all gets the blur, so exactly
    ``clean_fraction`` of pairs (in expectation) are clean. The exposure error needs the photo
    (``image``, (H, W, 3) uint8 or float in [0, 1]): it is drawn from what the photo shows
    (:func:`_exposure_draws`), and never without it.

    ``subset="colour"``: a colour fault always (the light if ``light_prob`` > 0, else the
    jitter), the others with their probabilities on top, camera faults as usual. ``"camera"``: no
    colour fault, the blur always, JPEG and noise as usual. ``"clean"``: ``Degradation(clean=True)``.
    """
    if subset not in (None, *SUBSETS):
        raise ValueError(f"unknown subset {subset!r}; choose from {SUBSETS} or None")
    if subset == "clean" or (subset is None and rng.random() < cfg.clean_fraction):
        return Degradation(clean=True)
    draws: dict = {}
    if subset != "camera":
        draws.update(_colour_draws(rng, cfg, subset == "colour", image))
    blur = subset == "camera" or rng.random() < cfg.blur_prob
    jpeg_on = rng.random() < cfg.jpeg_prob
    noise_on = rng.random() < cfg.noise_prob
    if not (draws or blur or jpeg_on or noise_on):
        blur = True  # a non-clean pair has at least one fault
    if blur:
        draws.update(_blur_draws(rng, cfg))
    if noise_on:
        draws.update(noise=float(rng.uniform(0.25 * cfg.noise_max, cfg.noise_max)),
                     noise_seed=int(rng.integers(2**31)))
    if jpeg_on:
        draws.update(jpeg_quality=int(rng.integers(cfg.jpeg_quality_min, cfg.jpeg_quality_max + 1)))
    return Degradation(**draws)


def _colour_draws(rng: np.random.Generator, cfg: DegradeConfig, forced: bool,
                  image: np.ndarray | None) -> dict:
    """The colour faults of one draw; ``forced``: at least one (the light, else the jitter)."""
    draws: dict = {}
    if (forced and cfg.light_prob > 0) or rng.random() < cfg.light_prob:
        draws.update(_light_draws(rng, cfg))
    if image is not None and rng.random() < cfg.exposure_error_prob:
        img = np.asarray(image)
        draws.update(_exposure_draws(rng, cfg, img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img))
    if (forced and cfg.light_prob == 0) or rng.random() < cfg.jitter_fraction:
        draws.update(_jitter_draws(rng, cfg))
    if rng.random() < cfg.wb_prob:
        draws.update(_wb_draws(rng, cfg))
    if rng.random() < cfg.exposure_prob:
        draws.update(_tone_draws(rng, cfg))
    return draws


def apply(img: np.ndarray, d: Degradation) -> np.ndarray:
    """Apply a drawn degradation: colour faults (the light, white balance, exposure/gamma, jitter), then
    the down-up blur, sensor noise and JPEG recompression. Deterministic for a given ``d``."""
    out = np.array(img, dtype=np.float32)  # a copy: the input is never modified
    if d.clean:
        return out
    if d.kelvin != NEUTRAL_KELVIN or d.tint != 0.0 or d.ev != 0.0:
        out = relight(out, d.kelvin, d.tint, d.ev)
    if tuple(d.wb_gains) != (1.0, 1.0, 1.0):
        out = white_balance(out, d.wb_gains)
    if d.exposure != 1.0 or d.gamma != 1.0:
        out = tone(out, d.exposure, d.gamma)
    if d.jitter:
        out = color_jitter(out, d.brightness, d.contrast, d.saturation, d.hue, d.order)
    out = down_up(out, d.scale, d.down_kernel, d.up_kernel)
    if d.noise > 0.0:
        out = add_noise(out, d.noise, d.noise_seed)
    if d.jpeg_quality > 0:
        out = jpeg(out, d.jpeg_quality)
    return out.astype(np.float32)


def apply_uint8(img: np.ndarray, d: Degradation) -> np.ndarray:
    """:func:`apply` for photos as stored: ``(H, W, 3)`` ``uint8`` in and out (rounded). A clean
    draw returns an exact copy."""
    if d.clean:
        return np.array(img, dtype=np.uint8, copy=True)
    return _to_uint8(apply(img.astype(np.float32) / np.float32(255.0), d))


def vary_uint8(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A good photo, as another good photo might have been taken: white balance (R and B gains
    log-uniform within +-``strength`` of G, grey brightness kept), exposure (+-2x``strength``
    stops) and saturation (factor in [1 - s, 1 + s]) varied a little. Applied to the clean photo
    of a training pair before it is degraded, so input and target both carry it and the model
    learns that such differences are no fault. ``(H, W, 3)`` uint8 in and out; 0 returns it."""
    if strength <= 0:
        return img
    rb = np.exp(rng.uniform(-strength, strength, 2))
    gains = np.array([rb[0], 1.0, rb[1]], np.float32)
    gains /= float(gains @ _LUMA)  # a grey pixel keeps its brightness
    exposure = float(2.0 ** rng.uniform(-2 * strength, 2 * strength))
    saturation = float(rng.uniform(1 - strength, 1 + strength))
    out = adjust_saturation(white_balance(img.astype(np.float32) / 255.0, tuple(gains * exposure)), saturation)
    return _to_uint8(out)


# Melanin's optical depth per channel, relative to red: its absorption falls with wavelength as
# about lambda^-3.46 (Jacques, "Optical properties of biological tissues", 2013), taken at
# 610 / 550 / 465 nm for sRGB's R / G / B.
MELANIN = np.array([1.0, 1.43, 2.56], np.float32)


def melanin(img: np.ndarray, depth: float) -> np.ndarray:
    """The photo as it would look with more melanin in the skin: linear light times
    ``exp(-depth * MELANIN)`` (depth 0.7 takes very light skin (ITA > 55 deg) to about brown).
    Float ``(H, W, 3)`` in [0, 1] in and out."""
    return np.clip(srgb_encode(srgb_decode(img) * np.exp(-depth * MELANIN)), 0.0, 1.0)


def melanin_uint8(img: np.ndarray, depth: float) -> np.ndarray:
    """:func:`melanin` on a ``(H, W, 3)`` uint8 photo."""
    return _to_uint8(melanin(img.astype(np.float32) / 255.0, depth))


def vary_tone_uint8(img: np.ndarray, rng: np.random.Generator, prob: float, depth: float) -> np.ndarray:
    """A good photo, as the same lesion on darker skin: with probability ``prob`` :func:`melanin`
    of depth uniform in [0, ``depth``]. Applied to the clean photo of a training pair before it is
    degraded, in input and target alike: most real training photos show very light skin, and a
    model that never saw darker skin as good light takes it for a warm, dark cast and
    "corrects" it. ``(H, W, 3)`` uint8 in and out; ``prob`` 0 draws nothing and returns it."""
    if prob <= 0 or rng.random() >= prob:
        return img
    return melanin_uint8(img, float(rng.uniform(0.0, depth)))


def key_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that is a pure function of (seed, key): fixed validation degradations."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
