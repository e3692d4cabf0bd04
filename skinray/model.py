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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, H, W) in [0, 1]
        features = []
        h = x
        for layer in self.encoder:
            h = layer(h)  # (N, C_i, H, W)
            features.append(h)
        half = len(self.encoder)
        for j, layer in enumerate(self.decoder):
            source = half - 1 - j
            if self.skip != "none" and j > 0 and source >= 0:
                skip = features[source]  # (N, C_source, H, W)
                h = torch.cat([h, skip], dim=1) if self.skip == "concat" else h + skip
            h = layer(h)
        return torch.sigmoid(h)  # (N, 3, H, W) in [0, 1]


ARCHITECTURES = {"poster": PosterAutoencoder}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Construct the model a config names (weights freshly initialised)."""
    return ARCHITECTURES[cfg.arch](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
