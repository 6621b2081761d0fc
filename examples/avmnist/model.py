"""LeNet-style encoders for the image and the spectrogram, and a linear late-fusion head.

The encoders have MultiBench's AV-MNIST shape: a 5x5 convolution to ``C`` channels, then
3x3 convolutions that double the channels, each followed by batch norm, ReLU and 2x2 max
pooling, until the map is 1x1. The image (28x28) gets 4 blocks (latent ``8C``); a ``S x S``
spectrogram gets ``floor(log2 S)`` blocks (latent ``C * 2**(blocks - 1)``).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from examples.avmnist.data import NUM_CLASSES
from examples.common.model import ConcatFusionHead, MultimodalModel


class LeNetEncoder(nn.Module):
    """Convolution blocks (conv, batch norm, ReLU, 2x2 max pool) to a ``(B, D)`` latent.

    Args:
        blocks: number of blocks (the first has a 5x5 kernel, the others 3x3).
        channels: channels of the first block; each further block doubles them.
    """

    def __init__(self, blocks: int, channels: int) -> None:
        super().__init__()
        if blocks < 1 or channels < 1:
            raise ValueError(f"expected blocks >= 1 and channels >= 1, got {blocks}, {channels}")
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(blocks):
            c_out = channels * 2**i
            k = 5 if i == 0 else 3
            layers += [
                nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 1, H, W)`` -> ``(B, D)`` (mean over what is left of the map)."""
        return self.net(x).mean(dim=(2, 3))


def blocks_for(size: int) -> int:
    """Blocks that halve a ``size`` map down to 1x1: ``floor(log2(size))``."""
    return max(1, int(math.log2(size)))


def build_model(spec_size: int, *, channels: int = 6) -> MultimodalModel:
    """Image and audio encoders and ``ConcatFusionHead`` to 10 digits (modalities in that order)."""
    encoders = {
        "image": LeNetEncoder(blocks_for(28), channels),
        "audio": LeNetEncoder(blocks_for(spec_size), channels),
    }
    dims = {m: e.out_dim for m, e in encoders.items()}
    head = ConcatFusionHead(list(dims.values()), NUM_CLASSES)
    return MultimodalModel(encoders, head, dims)
