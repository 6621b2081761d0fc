"""The model shape every example shares: per-modality encoders and one fusion head.

MCR only needs two things from a model: the latents ``z_m`` of its encoders and a fusion head
that maps them to logits. :class:`MultimodalModel` keeps those two apart so that the trainer,
the baselines and :class:`mcr_reg.MCRRegularizer` can all reach them.

Batches are mappings ``{modality name: tensor, ..., "label": tensor}``; the encoders are looked
up by the modality names, in the order given at construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mcr_reg.functional import pool_latent


class ConcatFusionHead(nn.Module):
    """Late fusion: pool each latent to a vector, concatenate, one linear layer.

    Args:
        latent_dims: feature width of each modality's latent, in modality order.
        out_dim: number of classes (or 1 for regression / single-logit binary).
    """

    def __init__(self, latent_dims: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.latent_dims = tuple(int(d) for d in latent_dims)
        self.linear = nn.Linear(sum(self.latent_dims), out_dim)

    def forward(self, *latents: Tensor) -> Tensor:
        if len(latents) != len(self.latent_dims):
            raise ValueError(f"expected {len(self.latent_dims)} latents, got {len(latents)}")
        return self.linear(torch.cat([pool_latent(z) for z in latents], dim=-1))


class MultimodalModel(nn.Module):
    """Encoders ``f_m(x_m) -> z_m`` plus a fusion head ``f_c(z_1..z_M) -> logits``.

    Args:
        encoders: modality name -> encoder module; the order fixes the modality order.
        fusion_head: callable module taking the latents positionally in modality order.
        latent_dims: modality name -> feature width of that encoder's latent.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion_head: nn.Module,
        latent_dims: Mapping[str, int],
    ) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(f"expected at least two modalities, got {list(encoders)}")
        missing = [m for m in encoders if m not in latent_dims]
        if missing:
            raise ValueError(f"latent_dims lacks the modalities {missing}")
        self.modalities: tuple[str, ...] = tuple(encoders)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion_head = fusion_head
        self.latent_dims: dict[str, int] = {m: int(latent_dims[m]) for m in self.modalities}

    def encode(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run every encoder on its input; returns ``{modality: z_m}``."""
        missing = [m for m in self.modalities if m not in batch]
        if missing:
            raise KeyError(f"batch lacks the modalities {missing}; it has {sorted(batch)}")
        return {m: self.encoders[m](batch[m]) for m in self.modalities}

    def fuse(self, latents: Mapping[str, Tensor]) -> Tensor:
        """Fusion head on the latents in modality order."""
        return self.fusion_head(*(latents[m] for m in self.modalities))

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        latents = self.encode(batch)
        return self.fuse(latents), latents
