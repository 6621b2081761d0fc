"""MMCosine: a cosine-similarity fusion head with a fixed scale (Xu et al., ICASSP 2023)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from examples.common.methods.base import Method
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec
from mcr_reg.functional import pool_latent


class CosineFusionHead(nn.Module):
    """MMCosine fusion head: ``logit_c = s * sum_m cos(w_{m,c}, z_m)`` (no bias).

    Features and class weights of each modality are L2-normalised, so no modality can dominate
    the logits through feature or weight norm.
    """

    def __init__(self, latent_dims: list[int], out_dim: int, scale: float) -> None:
        super().__init__()
        self.latent_dims = tuple(latent_dims)
        self.scale = float(scale)
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(out_dim, d)) for d in self.latent_dims]
        )
        for w in self.weights:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))

    def forward(self, *latents: Tensor) -> Tensor:
        if len(latents) != len(self.latent_dims):
            raise ValueError(f"expected {len(self.latent_dims)} latents, got {len(latents)}")
        total = None
        for z, w in zip(latents, self.weights, strict=True):
            v = nn.functional.normalize(pool_latent(z), dim=-1)
            cos = v @ nn.functional.normalize(w, dim=-1).T  # (B, d) @ (d, C)
            total = cos if total is None else total + cos
        assert total is not None
        return self.scale * total


class MMCosine(Method):
    """MMCosine (Xu et al., ICASSP 2023): the fusion head is replaced by a cosine head.

    Hyper-parameters:
        scale: the logit scale ``s`` (default 10).
    """

    name: ClassVar[str] = "mmcosine"
    defaults: ClassVar[dict[str, Any]] = {"scale": 10.0}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        dims = [model.latent_dims[m] for m in model.modalities]
        model.fusion_head = CosineFusionHead(dims, task.out_dim, float(self.options["scale"]))
