"""The enhancement autoencoder(s). Every model maps (N, 3, H, W) in [0, 1] to the same shape in
[0, 1] and is fully convolutional, so any image size works at inference."""

from __future__ import annotations

import torch
from torch import nn

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


ARCHITECTURES = {"poster": PosterAutoencoder, "context": ContextAutoencoder, "affine": AffineContextAutoencoder}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Construct the model a config names (weights freshly initialised)."""
    return ARCHITECTURES[cfg.arch](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
