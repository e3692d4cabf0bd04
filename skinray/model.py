"""The enhancement autoencoder(s). Every model maps (N, 3, H, W) in [0, 1] to the same shape in
[0, 1] and is fully convolutional, so any image size works at inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skinray import light, lut
from skinray.config import ModelConfig


class PosterAutoencoder(nn.Module):
    """The poster's denoising autoencoder: convolutions only (no pooling, no linear layers),
    LeakyReLU and dropout after each hidden layer, encoder-to-decoder skip connections.

    With ``depth`` layers, the first ``depth // 2`` form the encoder with channels
    ``width, 2*width, 4*width...`` (capped at ``8*width``); the decoder mirrors them back to 3
    channels. Decoder layer ``j`` receives the output of the mirrored encoder layer through the
    skip (concatenated or added). All convolutions are 3x3, stride 1, padding 1: spatial size is
    preserved at every layer.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        half = cfg.depth // 2
        enc_channels = [cfg.width * 2 ** min(i, 3) for i in range(half)]
        self.skip = cfg.skip
        self.encoder = nn.ModuleList()
        c_in = 3
        for c_out in enc_channels:
            self.encoder.append(self._block(c_in, c_out, cfg.dropout))
            c_in = c_out
        # Decoder layer j outputs the channels of encoder layer half-2-j, the last one outputs 3.
        dec_channels = enc_channels[-2::-1] + [3]
        self.decoder = nn.ModuleList()
        for j, c_out in enumerate(dec_channels):
            skip_channels = self._skip_source_channels(j, enc_channels)
            if self.skip == "concat" and skip_channels:
                c_in = c_in + skip_channels
            last = j == len(dec_channels) - 1
            self.decoder.append(nn.Conv2d(c_in, c_out, 3, padding=1) if last
                                else self._block(c_in, c_out, cfg.dropout))
            c_in = c_out

    @staticmethod
    def _block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2), nn.Dropout(dropout))

    def _skip_source_channels(self, j: int, enc_channels: list[int]) -> int:
        """Channels arriving through the skip into decoder layer j (0 when there is none).
        Decoder layer j (j >= 1) takes the output of encoder layer half-1-j."""
        source = len(enc_channels) - 1 - j
        if self.skip == "none" or j == 0 or source < 0:
            return 0
        return enc_channels[source]

    uses_global_context = False  # True when outputs depend on the whole image, not a local window

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (N, 3, H, W) in [0, 1] -> the output of every encoder layer, (N, C_i, H, W) each."""
        features = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            features.append(h)
        return features

    def decode(self, h: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """Deepest features (N, C, H, W) -> pre-activation output (N, 3, H, W), using the skips."""
        half = len(self.encoder)
        for j, layer in enumerate(self.decoder):
            source = half - 1 - j
            if self.skip != "none" and j > 0 and source >= 0:
                skip = features[source]  # (N, C_source, H, W)
                h = torch.cat([h, skip], dim=1) if self.skip == "concat" else h + skip
            h = layer(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encode(x)
        return torch.sigmoid(self.decode(features[-1], features))  # (N, 3, H, W) in [0, 1]


class ContextAutoencoder(PosterAutoencoder):
    """The poster network plus two changes for global lighting and colour casts, which a
    4-layer network (receptive field of a few pixels) cannot see:

    * a global context vector: the spatial mean of the deepest encoder features and of the input
      pixels, through a 1x1-conv MLP, added at every position of the deepest features;
    * an identity residual: output = sigmoid(logit(x) + correction), with the last layer
      zero-initialised, so training starts from "change nothing" and photos that need no
      correction are easy to leave alone.

    Still fully convolutional and size-agnostic. ``forward(x, context)`` accepts a context
    computed elsewhere (:meth:`context_from_means`), which lets tiled inference use the context
    of the whole image.
    """

    uses_global_context = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        deepest = self.encoder[-1][0].out_channels
        self.context = nn.Sequential(nn.Conv2d(deepest + 3, deepest, 1), nn.LeakyReLU(0.2),
                                     nn.Conv2d(deepest, deepest, 1))
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def context_from_means(self, feature_mean: torch.Tensor, pixel_mean: torch.Tensor) -> torch.Tensor:
        """(N, C) mean deepest features and (N, 3) mean pixels -> context (N, C, 1, 1)."""
        g = torch.cat([feature_mean, pixel_mean], dim=1)[:, :, None, None]  # (N, C + 3, 1, 1)
        return self.context(g)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encode(x)
        h = features[-1]  # (N, C, H, W)
        if context is None:
            context = self.context_from_means(h.mean(dim=(2, 3)), x.mean(dim=(2, 3)))
        correction = self.decode(h + context, features)  # context broadcasts over (H, W)
        return torch.sigmoid(torch.logit(x.clamp(1e-3, 1 - 1e-3)) + correction)


class AffineContextAutoencoder(ContextAutoencoder):
    """The context model whose global path also predicts a per-image colour transform: a 3x3
    matrix and an offset applied to every pixel, then the convolutional decoder adds a local
    correction (sharpening) on top: ``out = clamp(M x + b + correction, 0, 1)``.

    Brightness, contrast, saturation and hue changes are all affine in RGB (and commute with the
    down-up blur), so their inverse is one such transform per image: the network only has to
    infer 12 numbers from whole-image statistics instead of synthesising the colours pixel by
    pixel. Both heads start at zero: the untrained model is the identity. The transform comes
    from the same means as the context, so tiled inference stays exact.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        deepest = self.encoder[-1][0].out_channels
        self.colour = nn.Sequential(nn.Conv2d(deepest + 3, 64, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 12, 1))
        nn.init.zeros_(self.colour[-1].weight)
        nn.init.zeros_(self.colour[-1].bias)
        self.register_buffer("eye", torch.eye(3), persistent=False)

    def context_from_means(self, feature_mean: torch.Tensor, pixel_mean: torch.Tensor) -> torch.Tensor:
        """-> (N, C + 12, 1, 1): the decoder context, then the transform (9 matrix + 3 offset)."""
        g = torch.cat([feature_mean, pixel_mean], dim=1)[:, :, None, None]
        return torch.cat([self.context(g), self.colour(g)], dim=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encode(x)
        h = features[-1]  # (N, C, H, W)
        if context is None:
            context = self.context_from_means(h.mean(dim=(2, 3)), x.mean(dim=(2, 3)))
        c = h.shape[1]
        params = context[:, c:, 0, 0]  # (N, 12)
        matrix = self.eye + params[:, :9].reshape(-1, 3, 3)  # (N, 3, 3)
        recoloured = torch.einsum("nij,njhw->nihw", matrix, x) + params[:, 9:, None, None]
        correction = self.decode(h + context[:, :c], features)
        return (recoloured + correction).clamp(0.0, 1.0)


class LutEnhancer(nn.Module):
    """Image-adaptive colour lookup, optionally with a light detail branch (``arch: lut``).

    * Colour: a small strided CNN looks at a ``thumbnail x thumbnail`` view of the *whole* image
      (and at its per-channel mean, spread and percentiles) and predicts one colour mapping per
      image: per-channel 1-D curves (``curve_points`` samples) followed by a 3-D lookup table
      (``lut_size``^3 lattice) built as identity + a weighted sum of ``lut_bases`` learned basis
      tables, applied trilinearly (:mod:`skinray.lut`). After "Learning Image-adaptive 3D Lookup
      Tables" (Zeng et al., TPAMI 2020) and SepLUT (Yang et al., ECCV 2022). Cost per pixel is a
      curve and a table look-up, whatever the image size; exposure, white balance, contrast,
      saturation, hue and camera tone curves are all colour mappings.
    * Detail (``width`` > 0; off by default): a residual U-shaped branch on the recoloured image,
      all of it at 1/2 and 1/4 resolution (``width / 2`` channels at 1/2, ``width`` channels and
      ``depth / 2`` residual blocks at 1/4), for softness left by blur and compression. Trained
      with the default recipe it changed camera faults by +0.00 dB at three times the cost per
      pixel, so the default model does without it.

    Both output layers are zero-initialised: the untrained model is exactly the identity. The
    colour mapping is a function of the whole-image thumbnail alone and the detail branch has a
    bounded receptive field (< 32 px), so tiled inference with windows aligned to 4 pixels
    (:class:`skinray.predict.Enhancer`) equals whole-image inference.
    """

    uses_global_context = True
    HEAD_CHANNELS = (16, 32, 64, 128, 128)  # strided 3x3 convolutions over the thumbnail

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.thumbnail_size, self.lut_size, self.curve_points = cfg.thumbnail, cfg.lut_size, cfg.curve_points
        layers, c_in = [], 3
        for c_out in self.HEAD_CHANNELS:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.head = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, 128)
        n_stats = 3 * 5  # per channel: mean, std, 5th/50th/95th percentile of the thumbnail
        self.predict = nn.Sequential(nn.Linear(c_in + n_stats, 128), nn.LeakyReLU(0.2),
                                     nn.Linear(128, cfg.lut_bases + 3 * cfg.curve_points + 12))
        nn.init.zeros_(self.predict[-1].weight)
        nn.init.zeros_(self.predict[-1].bias)
        self.bases = nn.Parameter(torch.randn(cfg.lut_bases, 3, *(cfg.lut_size,) * 3) * 0.01)
        self.register_buffer("identity", lut.identity_lut(cfg.lut_size), persistent=False)
        self.register_buffer("identity_curves", lut.identity_curves(cfg.curve_points), persistent=False)
        self.detail = DetailBranch(cfg.width, max(1, cfg.depth // 2)) if cfg.width > 0 else None
        # What tiled inference needs (skinray.predict.Enhancer): the detail branch works at 1/4
        # resolution (windows start on multiples of 4) and sees pixels around (the configured
        # margin applies); without it an output pixel depends on its own input pixel and the
        # thumbnail alone: no margin (halo 0).
        self.ALIGN, self.halo = (4, None) if self.detail is not None else (1, 0)

    @staticmethod
    def _stats(thumb: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, T) -> (N, 15): mean, std and 5/50/95th percentiles of each channel."""
        flat = F.adaptive_avg_pool2d(thumb, 32).flatten(2)  # (N, 3, 1024): percentiles of a 32x32 view
        q = torch.quantile(flat, torch.tensor([0.05, 0.5, 0.95], device=flat.device), dim=2)  # (3, N, 3)
        return torch.cat([flat.mean(2), flat.std(2), q.permute(1, 0, 2).flatten(1)], dim=1)

    def colour_params(self, thumb: torch.Tensor) -> torch.Tensor:
        """Whole-image thumbnail (N, 3, T, T) -> the image's colour mapping as (N, P) numbers:
        basis weights, then curve offsets. This is the "context" tiled inference passes around."""
        return self.predict(torch.cat([self.head(thumb), self._stats(thumb)], dim=1))

    def tables(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, P) -> curves (N, 3, K), colour matrix (N, 3, 3), offset (N, 3), 3-D tables (N, 3, D, D, D)."""
        n_bases, k = self.bases.shape[0], self.curve_points
        weights = params[:, :n_bases]
        curves = self.identity_curves + params[:, n_bases:n_bases + 3 * k].reshape(-1, 3, k)
        affine = params[:, n_bases + 3 * k:]  # (N, 12)
        matrix = torch.eye(3, device=params.device) + affine[:, :9].reshape(-1, 3, 3)
        tables = self.identity + torch.einsum("nb,bcxyz->ncxyz", weights, self.bases)
        return curves, matrix, affine[:, 9:], tables

    def mapping(self, params: torch.Tensor) -> torch.Tensor:
        """(N, P) -> the image's whole colour mapping as one table (N, 3, D, D, D): the 3-D table
        looked up at the mapped lattice, ``table(M curves(r, g, b) + o)``
        at every lattice point (``curve`` per channel, then the 3x4 colour matrix, then the table).
        One trilinear look-up per pixel then applies curves and table."""
        curves, matrix, offset, tables = self.tables(params)
        n, d = params.shape[0], self.lut_size  # shape[0]: a dynamic batch in exported graphs
        lattice = self.identity.expand(n, -1, -1, -1, -1).reshape(n, 3, d * d, d)  # (N, 3, D*D, D)
        curved = lut.apply_curves(lattice, curves)
        mixed = torch.einsum("nij,njpq->nipq", matrix, curved) + offset[:, :, None, None]
        return lut.apply_lut(mixed.clamp(0.0, 1.0), tables).reshape(n, 3, d, d, d)

    def recolour(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return lut.apply_lut(x, self.mapping(params))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # The colour path runs in float32 even under bf16/fp16 autocast: a half-precision table
        # or sampling grid moves pixels by about a grey level. Only the detail branch is cast.
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if context is None:
                context = self.colour_params(lut.thumbnail(x, self.thumbnail_size))
            y = self.recolour(x, context.float())  # (N, 3, H, W)
        if self.detail is not None:
            y = y + self.detail(y)
        return y.clamp(0.0, 1.0)

    def regularization(self) -> torch.Tensor:
        """Smooth, monotone basis tables (weights after Zeng et al.: 1e-4 and 10)."""
        return 1e-4 * lut.smoothness(self.bases) + 10.0 * lut.monotonicity(self.bases + self.identity)


def _quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(x, q, dim=-1)`` (linear interpolation) from a sorted copy: the same
    numbers, and a graph ONNX can express (it has no quantile)."""
    ordered, last = x.sort(dim=-1).values, x.shape[-1] - 1
    low = int(q * last)
    frac, high = q * last - low, min(low + 1, last)
    return ordered[..., low] + frac * (ordered[..., high] - ordered[..., low])


class LightCorrector(nn.Module):
    """One global photographic correction per photo, and how sure it is (``arch: light``, the
    default): the model v3.

    From a ``thumbnail`` view of the whole photo a small strided CNN plus classical colour
    constancy statistics (Minkowski means p = 1 and 6 and the 99th percentile per channel,
    grey-edge, luminance percentiles, clipped and dark shares, all in linear light) predict four
    numbers: the log von Kries gains of red and blue over green, an exposure change in stops,
    and a confidence logit. The correction is applied in linear light,
    ``encode(clip(decode(x) * g * 2 ** ev))`` with the gains ``g`` scaled so that white keeps its
    luminance; at inference it is scaled by the confidence ``c`` in [0, 1] (``c * log g``,
    ``c * ev``): towards the identity when the photo gives no evidence.

    Every step is per channel, so equal input colours give equal output colours anywhere in the
    photo and a lesion keeps its colour relative to the skin around it (von Kries); the whole
    correction is three 256-entry tables on 8-bit pixels (:meth:`channel_tables`), exact under
    tiling. The output layer is zero-initialised: the untrained model is exactly the identity,
    and so is any photo at zero confidence.

    Training (``model.train()``): ``forward`` returns ``(full, applied)``: the correction at full
    strength, whose loss trains the estimate, and the confidence-scaled one computed from the
    detached estimate, whose loss trains the confidence alone to shrink corrections that do not
    pay on average.
    """

    uses_global_context = True
    ALIGN, halo = 1, 0  # an output pixel depends on its own input pixel and the thumbnail alone
    HEAD_CHANNELS = (16, 32, 64, 128)
    N_STATS = 17
    # Log-chroma histogram (after Barron's convolutional colour constancy): a light multiplies
    # every pixel, which shifts the whole histogram of (log R/G, log B/G) without changing its
    # shape, so the illuminant is where the histogram sits.
    # The histogram's bins and the correction's bounds (gains within e^+-2, +-3 stops), shared with
    # the numpy twin that runs it at inference (skinray.light).
    HIST_U, HIST_V, HIST_BINS = light.HIST_U, light.HIST_V, light.HIST_BINS
    LOG_GAIN_MAX, EV_MAX = light.LOG_GAIN_MAX, light.EV_MAX

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.thumbnail_size = cfg.thumbnail
        layers, c_in = [], 5  # sRGB thumbnail + log-chroma (R/G, B/G) in linear light
        for c_out in self.HEAD_CHANNELS:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.head = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, 128)
        self.histogram_head = nn.Sequential(  # (N, 1, 32, 36) -> (N, 64)
            nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Flatten(),
            nn.Linear(32 * 8 * 9, 64), nn.LeakyReLU(0.2))
        self.predict = nn.Sequential(nn.Linear(c_in + 64 + self.N_STATS, 128), nn.LeakyReLU(0.2),
                                     nn.Dropout(cfg.dropout), nn.Linear(128, 4))
        nn.init.zeros_(self.predict[-1].weight)
        nn.init.zeros_(self.predict[-1].bias)
        self.register_buffer("luma", torch.from_numpy(light.LUMA.copy()), persistent=False)

    @staticmethod
    def decode(x: torch.Tensor) -> torch.Tensor:
        """sRGB-encoded (N, 3, ...) in [0, 1] -> linear light."""
        return torch.where(x > 0.04045, ((x.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, x / 12.92)

    @staticmethod
    def encode(linear: torch.Tensor) -> torch.Tensor:
        """Linear light (N, 3, ...) -> sRGB-encoded in [0, 1], clipped where the sensor would be."""
        c = linear.clamp(0.0, 1.0)
        return torch.where(c > 0.0031308, 1.055 * c.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * c)

    def _stats(self, linear: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, T) linear -> (N, 17) log statistics (colour constancy and exposure cues)."""
        flat = linear.flatten(2).clamp(min=1e-4)  # (N, 3, T*T)
        grey_world, shades = flat.mean(2), flat.pow(6).mean(2).pow(1 / 6)  # (N, 3) each
        bright = _quantile(flat, 0.99).clamp(min=1e-4)  # (N, 3)
        dy = (linear[:, :, 1:] - linear[:, :, :-1]).abs().mean((2, 3))  # grey-edge: mean gradient per channel
        dx = (linear[..., 1:] - linear[..., :-1]).abs().mean((2, 3))
        edges = (dy + dx).clamp(min=1e-5)
        lum = torch.einsum("c,ncp->np", self.luma, flat)  # (N, T*T)
        q = torch.stack([_quantile(lum, p) for p in (0.01, 0.5, 0.99)], dim=1)  # (N, 3)
        clipped = (flat.amax(1) > 0.98).float().mean(1, keepdim=True)  # (N, 1)
        dark = (lum < 0.005).float().mean(1, keepdim=True)
        return torch.cat([grey_world.log(), shades.log(), bright.log(), edges.log(), q.clamp(min=1e-4).log(),
                          clipped, dark], dim=1)

    def _histogram(self, chroma: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        """(N, 2, T, T) log-chroma -> (N, 1, 32, 36): the share of usable pixels (neither dark
        nor clipped) in each (log R/G, log B/G) bin, square-rooted."""
        n = chroma.shape[0]
        (u0, u1), (v0, v1), (bu, bv) = self.HIST_U, self.HIST_V, self.HIST_BINS
        iu = ((chroma[:, 0] - u0) / (u1 - u0) * bu).floor().clamp(0, bu - 1).long().flatten(1)  # (N, T*T)
        iv = ((chroma[:, 1] - v0) / (v1 - v0) * bv).floor().clamp(0, bv - 1).long().flatten(1)
        usable = ((linear.amax(1) < 0.98) & (linear.amin(1) > 0.002)).float().flatten(1)  # (N, T*T)
        hist = torch.zeros(n, bu * bv, device=chroma.device).scatter_add_(1, iu * bv + iv, usable)
        hist = hist / usable.sum(1, keepdim=True).clamp(min=1.0)
        return hist.sqrt().reshape(n, 1, bu, bv)

    def colour_params(self, thumb: torch.Tensor) -> torch.Tensor:
        """Whole-photo thumbnail (N, 3, T, T) in [0, 1] -> (N, 4): log gain R/G, log gain B/G,
        exposure (stops), confidence logit; bounded (tanh) to the correction's range."""
        linear = self.decode(thumb.float())
        chroma = (linear[:, [0, 2]].clamp(min=1e-4) / linear[:, 1:2].clamp(min=1e-4)).log()  # (N, 2, T, T)
        features = [self.head(torch.cat([thumb, chroma], dim=1)),
                     self.histogram_head(self._histogram(chroma, linear)), self._stats(linear)]
        raw = self.predict(torch.cat(features, dim=1))
        bound = raw.new_tensor([self.LOG_GAIN_MAX, self.LOG_GAIN_MAX, self.EV_MAX])
        return torch.cat([bound * torch.tanh(raw[:, :3] / bound), raw[:, 3:]], dim=1)

    def gains(self, params: torch.Tensor, strength: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 4) -> linear-light multipliers (N, 3): von Kries gains keeping white's luminance,
        times ``2 ** ev``; ``strength`` (N,) scales the correction (default: the confidence)."""
        if strength is None:
            strength = self.confidence(params)
        log_rb = params[:, :2] * strength[:, None]  # (N, 2)
        zero = torch.zeros_like(log_rb[:, :1])
        gains = torch.cat([log_rb[:, :1], zero, log_rb[:, 1:]], dim=1).exp()  # (N, 3), G = 1
        gains = gains / (gains @ self.luma)[:, None]
        return gains * torch.pow(2.0, params[:, 2] * strength)[:, None]

    @staticmethod
    def confidence(params: torch.Tensor) -> torch.Tensor:
        """(N, 4) -> (N,) in [0, 1]."""
        return torch.sigmoid(params[:, 3])

    def correct(self, x: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
        """Apply linear-light gains (N, 3) to sRGB photos (N, 3, H, W); outside training, a photo
        whose gains are all exactly 1 comes back bit for bit."""
        out = self.encode(self.decode(x) * gains[:, :, None, None])
        if gains.requires_grad:  # training: the gradient must reach the gains, even at 1
            return out
        untouched = (gains == 1.0).all(dim=1)[:, None, None, None]  # (N, 1, 1, 1)
        return torch.where(untouched, x, out)

    def channel_tables(self, params: torch.Tensor) -> torch.Tensor:
        """(1, 4) -> the correction as three 256-entry tables (3, 256) uint8: output level of each
        input level, per channel (Pillow's ``Image.point``)."""
        levels = torch.arange(256, device=params.device, dtype=torch.float32) / 255.0
        out = self.correct(levels.expand(1, 3, 256)[..., None], self.gains(params.float()))[0, :, :, 0]
        return out.mul(255.0).add(0.5).floor().clamp(0, 255).to(torch.uint8)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            params = self.colour_params(lut.thumbnail(x, self.thumbnail_size)) if context is None else context.float()
            if not self.training:
                return self.correct(x, self.gains(params))
            full = self.correct(x, self.gains(params, torch.ones_like(params[:, 3])))
            detached = torch.cat([params[:, :3].detach(), params[:, 3:]], dim=1)
            return full, self.correct(x, self.gains(detached))


class _Block(nn.Module):
    """Residual block: 1x1 expand, depthwise 3x3, gated (NAFNet's SimpleGate), 1x1 project."""

    def __init__(self, c: int):
        super().__init__()
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.spatial = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.project = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.spatial(self.expand(x)).chunk(2, dim=1)  # (N, c, H, W) each
        return x + self.project(a * b)


class DetailBranch(nn.Module):
    """A residual (N, 3, H, W) from an image (N, 3, H, W), zero at initialisation. No
    full-resolution feature map exists: the image is folded 2x2 into channels (pixel-unshuffle),
    one 3x3 convolution at 1/2 resolution, ``blocks`` residual blocks at 1/4, one 3x3 convolution
    back at 1/2, unfolded to full resolution. Pads H and W up to multiples of 4 (replicate) and
    crops back. Receptive field: about 24 pixels each side."""

    def __init__(self, width: int, blocks: int):
        super().__init__()
        c2, c4 = max(1, width // 2), width  # channels at 1/2 and at 1/4 resolution
        self.inp = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, c2, 3, padding=1), nn.LeakyReLU(0.2))
        self.down = nn.Conv2d(c2, c4, 2, stride=2)
        self.quarter = nn.Sequential(*[_Block(c4) for _ in range(blocks)])
        self.up = nn.Sequential(nn.Conv2d(c4, 4 * c2, 1), nn.PixelShuffle(2))
        self.out = nn.Sequential(nn.Conv2d(c2, 12, 3, padding=1), nn.PixelShuffle(2))
        nn.init.zeros_(self.out[0].weight)
        nn.init.zeros_(self.out[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="replicate")  # (N, 3, H4, W4)
        f2 = self.inp(x)  # (N, c2, H4/2, W4/2)
        f4 = self.quarter(self.down(f2))  # (N, c4, H4/4, W4/4)
        return self.out(self.up(f4) + f2)[..., :h, :w]  # (N, c2, H4/2, W4/2) -> (N, 3, H, W)


ARCHITECTURES = {"poster": PosterAutoencoder, "context": ContextAutoencoder, "affine": AffineContextAutoencoder,
                 "lut": LutEnhancer, "light": LightCorrector}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Construct the model a config names (weights freshly initialised)."""
    return ARCHITECTURES[cfg.arch](cfg)


def channels_last(model: nn.Module) -> nn.Module:
    """``model.to(memory_format=torch.channels_last)`` that also takes models with tensors of other
    ranks (the lut's 5-D basis tables, which ``Module.to`` refuses): 4-D weights and buffers change
    layout in place, the others stay as they are."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model


def count_parameters(model) -> int:
    """A torch module's parameters, or a light model's numpy twin's (``LightTables``)."""
    if hasattr(model, "parameter_count"):
        return model.parameter_count()
    return sum(p.numel() for p in model.parameters())
