"""Per-modality Transformer encoders (hidden 40) and a fusion head for MOSEI/MOSI.

Each modality ``(B, T, F)`` goes through its own encoder (paper A.3: a 5-layer Transformer as
in MulT; hidden width 40 as in the released configs):

1. a position-wise linear projection ``F -> 40`` (MulT's kernel-1 Conv1d), scaled by sqrt(40),
   plus fixed sinusoidal positions;
2. ``num_layers`` pre-norm Transformer encoder layers (``num_heads`` heads, feed-forward 4 x 40);
3. a final LayerNorm and **last-step pooling**: the latent is the state at the final position,
   ``(B, 40)``. The text is left-zero-padded, so the last position always holds a real word,
   and all three modalities are aligned to the words.

Decision: encoders return pooled ``(B, 40)`` vectors rather than ``(B, T, 40)`` sequences. MCR
then permutes exactly the vectors the fusion head sees, its batched fusion pass stays cheap,
and the contrastive and CEB terms need no further pooling convention.

The fusion head concatenates the latents and applies ``Linear -> ReLU -> Linear`` (with a
residual as MulT's output block); ``out_dim`` 1 gives the sentiment score (regression) or the
single logit (binary). It has no dropout by default: inside MCR the head is called on the
permuted copies in train mode, and dropout would add its own noise to the divergence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from examples.common.model import MultimodalModel

HIDDEN = 40


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Fixed sine/cosine position table ``(length, dim)`` (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class SequenceEncoder(nn.Module):
    """Transformer encoder over one aligned feature sequence, pooled at the last step.

    Args:
        in_dim: feature width F of the modality.
        hidden: model width (40 as released).
        num_layers: Transformer layers (5 as in the paper).
        num_heads: attention heads; must divide ``hidden``.
        dropout: dropout inside the layers and on the embedded input.
        max_len: longest sequence the position table covers.

    Shapes:
        ``(B, T, F) -> (B, hidden)``.
    """

    positions: Tensor  # (max_len, hidden) buffer

    def __init__(
        self,
        in_dim: int,
        *,
        hidden: int = HIDDEN,
        num_layers: int = 5,
        num_heads: int = 5,
        dropout: float = 0.1,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"expected num_heads to divide hidden={hidden}, got {num_heads}")
        self.in_dim = in_dim
        self.hidden = hidden
        self.project = nn.Linear(in_dim, hidden, bias=False)
        self.register_buffer("positions", sinusoidal_positions(max_len, hidden), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden,
            num_heads,
            dim_feedforward=4 * hidden,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"expected input of shape (B, T, {self.in_dim}), got {tuple(x.shape)}")
        if x.shape[1] > self.positions.shape[0]:
            raise ValueError(f"expected at most {self.positions.shape[0]} steps, got {x.shape[1]}")
        h = self.project(x) * math.sqrt(self.hidden)  # (B, T, H)
        h = self.dropout(h + self.positions[: x.shape[1]])
        h = self.norm(self.layers(h))
        last: Tensor = h[:, -1]  # (B, H): the last step is a real word (left padding)
        return last


class MLPFusionHead(nn.Module):
    """Concatenate pooled latents; ``Linear -> ReLU -> Linear`` with a residual; output layer.

    Args:
        latent_dims: width of each latent in modality order.
        out_dim: 1 for the sentiment score or the binary logit.
        dropout: dropout inside the block (default 0; see the module docstring).
    """

    def __init__(self, latent_dims: Sequence[int], out_dim: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.latent_dims = tuple(int(d) for d in latent_dims)
        width = sum(self.latent_dims)
        self.block = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )
        self.out = nn.Linear(width, out_dim)

    def forward(self, *latents: Tensor) -> Tensor:
        if len(latents) != len(self.latent_dims):
            raise ValueError(f"expected {len(self.latent_dims)} latents, got {len(latents)}")
        widths = tuple(z.shape[-1] for z in latents)
        if widths != self.latent_dims or any(z.dim() != 2 for z in latents):
            shapes = [tuple(z.shape) for z in latents]
            raise ValueError(f"expected latents (B, d) with d = {self.latent_dims}, got {shapes}")
        h = torch.cat(latents, dim=-1)  # (B, sum d)
        out: Tensor = self.out(h + self.block(h))  # (B, out_dim)
        return out


def build_model(
    feature_dims: Mapping[str, int],
    *,
    hidden: int = HIDDEN,
    num_layers: int = 5,
    num_heads: int = 5,
    dropout: float = 0.1,
    out_dim: int = 1,
) -> MultimodalModel:
    """One :class:`SequenceEncoder` per modality plus an :class:`MLPFusionHead`.

    Args:
        feature_dims: modality name -> input width, in modality order (e.g. from
            ``SentimentDataset.feature_dims()``).
        hidden, num_layers, num_heads, dropout: encoder settings.
        out_dim: outputs of the fusion head (1 for regression or binary).

    Example:
        >>> model = build_model({"vision": 35, "text": 300}, num_layers=1)
        >>> batch = {"vision": torch.zeros(2, 50, 35), "text": torch.ones(2, 50, 300)}
        >>> logits, latents = model(batch)
        >>> tuple(logits.shape), tuple(latents["text"].shape)
        ((2, 1), (2, 40))
    """
    encoders = {
        m: SequenceEncoder(
            d, hidden=hidden, num_layers=num_layers, num_heads=num_heads, dropout=dropout
        )
        for m, d in feature_dims.items()
    }
    latent_dims = {m: hidden for m in encoders}
    head = MLPFusionHead(list(latent_dims.values()), out_dim)
    return MultimodalModel(encoders, head, latent_dims)
