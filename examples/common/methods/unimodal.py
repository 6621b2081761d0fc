"""The unimodal baselines: the Ensemble of unimodal models, and Uni-Pre (unimodal pre-training,
then joint training with the encoders frozen or fine-tuned)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from examples.common.methods.base import Method, StepOutput, UnimodalHeads
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec


def average_outputs(task: TaskSpec, outputs: list[Tensor]) -> Tensor:
    """Ensemble combination: mean of class probabilities, returned as log-probabilities.

    Binary: the mean probability as a logit; regression: the mean prediction.
    """
    if task.kind == "regression":
        return torch.stack(outputs).mean(dim=0)
    if task.kind == "binary":
        p = torch.stack([torch.sigmoid(o.float()) for o in outputs]).mean(dim=0)
        p = p.clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    probs = torch.stack([o.float().softmax(dim=-1) for o in outputs]).mean(dim=0)
    return probs.clamp_min(1e-12).log()


class Ensemble(Method):
    """Unimodal models trained separately; their class probabilities averaged (no fusion training).

    All M unimodal models (encoder + linear head) are trained in one loop over the data, but
    their parameters are disjoint and each has its own early-stopping track, so each model is
    exactly what training it alone would give (Adam acts per parameter; gradient clipping is
    applied per track).

    Hyper-parameters:
        combine: ``"probs"`` (mean of probabilities, default) or ``"logits"`` (mean of logits).
    """

    name: ClassVar[str] = "ensemble"
    defaults: ClassVar[dict[str, Any]] = {"combine": "probs"}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        if self.options["combine"] not in ("probs", "logits"):
            raise ValueError(
                f"expected combine 'probs' or 'logits', got {self.options['combine']!r}"
            )
        self.uni = UnimodalHeads(model.latent_dims, task.out_dim)
        self.stages = ("unimodal",)

    def param_groups(self, stage: str) -> list[dict[str, Any]]:
        if stage != "unimodal":
            return super().param_groups(stage)
        named: dict[str, list[nn.Parameter]] = {
            f"encoder:{m}": list(self.model.encoders[m].parameters()) for m in self.model.modalities
        }
        named["method"] = list(self.uni.parameters())
        return self._groups(named, {})

    def unimodal_step(self, batch: Mapping[str, Tensor]) -> StepOutput:
        latents = self.model.encode(batch)
        uni = self.uni(latents)
        loss, terms = self.unimodal_loss(uni, batch["label"])
        return StepOutput(loss, self.combine(list(uni.values())), terms)

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        return self.unimodal_step(batch)

    def combine(self, outputs: list[Tensor]) -> Tensor:
        if self.options["combine"] == "logits":
            return torch.stack(outputs).mean(dim=0)
        return average_outputs(self.task, outputs)

    def heads(self, latents: Mapping[str, Tensor], stage: str):
        uni = self.uni(latents)
        return self.combine(list(uni.values())), uni

    def tracks(self, stage: str) -> dict[str, tuple[str, ...]]:
        if stage != "unimodal":
            return super().tracks(stage)
        return {m: (f"model.encoders.{m}.", f"uni.heads.{m}.") for m in self.model.modalities}

    def monitor(self, stage: str, val: Mapping[str, Any]) -> dict[str, float]:
        if stage != "unimodal":
            return super().monitor(stage, val)
        return {m: float(val["unimodal"][m][self.task.monitor]) for m in self.model.modalities}


class UniPre(Ensemble):
    """Unimodal pre-training of the encoders, then joint training of the fusion head.

    Stage 1 trains each encoder with its own linear head (as :class:`Ensemble`); stage 2 trains
    a fresh fusion head on the pre-trained encoders with the joint task loss. ``frozen=True``
    keeps the encoders fixed (and in eval mode); otherwise they are fine-tuned with the learning
    rate scaled by ``finetune_lr_scale`` (the paper fine-tunes pre-trained encoders one order
    of magnitude lower).
    """

    name: ClassVar[str] = "uni_pre"
    frozen: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"finetune_lr_scale": 0.1}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        Method.__init__(self, model, task, **options)
        self.options["combine"] = "probs"
        self.uni = UnimodalHeads(model.latent_dims, task.out_dim)
        self.stages = ("unimodal", "joint")

    def begin_stage(self, stage: str) -> None:
        trainable = stage == "unimodal" or not self.frozen
        for p in self.model.encoders.parameters():
            p.requires_grad_(trainable)
        for p in self.uni.parameters():
            p.requires_grad_(stage == "unimodal")

    def set_train_mode(self, stage: str) -> None:
        self.train()
        if stage == "joint" and self.frozen:
            self.model.encoders.eval()

    def param_groups(self, stage: str) -> list[dict[str, Any]]:
        if stage == "unimodal":
            return super().param_groups(stage)
        named: dict[str, list[nn.Parameter]] = {
            f"encoder:{m}": list(self.model.encoders[m].parameters()) for m in self.model.modalities
        }
        named["fusion"] = list(self.model.fusion_head.parameters())
        scale = float(self.options.get("finetune_lr_scale", 1.0))
        scales = {f"encoder:{m}": scale for m in self.model.modalities}
        return self._groups(named, scales)

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        if stage == "unimodal":
            return self.unimodal_step(batch)
        return Method.training_step(self, batch, stage)

    def heads(self, latents: Mapping[str, Tensor], stage: str):
        if stage == "unimodal":
            return super().heads(latents, stage)
        # frozen encoders keep their unimodal heads valid; fine-tuned ones do not
        return self.model.fuse(latents), (self.uni(latents) if self.frozen else None)

    def tracks(self, stage: str) -> dict[str, tuple[str, ...]]:
        return super().tracks(stage) if stage == "unimodal" else Method.tracks(self, stage)

    def monitor(self, stage: str, val: Mapping[str, Any]) -> dict[str, float]:
        return (
            super().monitor(stage, val) if stage == "unimodal" else Method.monitor(self, stage, val)
        )


class UniPreFrozen(UniPre):
    """Uni-Pre Frozen: pre-trained unimodal encoders kept fixed; only the fusion head is trained."""

    name: ClassVar[str] = "uni_pre_frozen"
    frozen: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {}


class UniPreFinetuned(UniPre):
    """Uni-Pre Finetuned: pre-trained unimodal encoders fine-tuned during joint training.

    Hyper-parameters:
        finetune_lr_scale: encoder learning-rate multiplier in the joint stage (default 0.1).
    """

    name: ClassVar[str] = "uni_pre_finetuned"
    frozen: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {"finetune_lr_scale": 0.1}
