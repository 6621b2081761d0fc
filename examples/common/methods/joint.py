"""Joint training and Multi-Loss: one fused model, optionally with unimodal task losses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from examples.common.methods.base import Method, StepOutput, UnimodalHeads
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec


class Joint(Method):
    """Joint training: one task loss on the fused output, no balancing (paper: "Joint Training")."""

    name: ClassVar[str] = "joint"


class MultiLoss(Method):
    """Joint loss plus a task loss on a linear head per modality (Wang et al., CVPR 2020).

    ``L = L(f_c(z_1..z_M), y) + w * sum_m L(f_{c_m}(z_m), y)``

    Hyper-parameters:
        unimodal_weight: ``w`` (default 1.0).
    """

    name: ClassVar[str] = "multiloss"
    defaults: ClassVar[dict[str, Any]] = {"unimodal_weight": 1.0}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        self.uni = UnimodalHeads(model.latent_dims, task.out_dim)

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        loss, outputs, _, terms = self.multiloss_step(self.uni, batch)
        return StepOutput(loss, outputs, terms)

    def heads(self, latents: Mapping[str, Tensor], stage: str):
        return self.model.fuse(latents), self.uni(latents)
