"""One MLP encoder per view and a linear late-fusion head (the shared ``MultimodalModel``)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from examples.common.model import ConcatFusionHead, MultimodalModel
from examples.multiview.data import NUM_CLASSES


def mlp_encoder(in_dim: int, hidden: int, latent: int) -> nn.Module:
    """``Linear(D, hidden) -> ReLU -> Linear(hidden, latent)``."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent))


def build_model(
    feature_dims: Mapping[str, int], *, hidden: int = 64, latent: int = 32
) -> MultimodalModel:
    """Encoders for the given views (in the given order) and ``ConcatFusionHead`` to 10 digits.

    Args:
        feature_dims: view name -> input width, e.g. ``{"fou": 76, "mor": 6}``.
        hidden: hidden width of every encoder.
        latent: latent width of every encoder.
    """
    if len(feature_dims) < 2:
        raise ValueError(f"expected at least two views, got {list(feature_dims)}")
    encoders = {v: mlp_encoder(d, hidden, latent) for v, d in feature_dims.items()}
    head = ConcatFusionHead([latent] * len(encoders), NUM_CLASSES)
    return MultimodalModel(encoders, head, {v: latent for v in encoders})
