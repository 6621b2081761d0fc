"""The interface every training method implements, and pieces several methods share.

A method owns the model (a :class:`~examples.common.model.MultimodalModel`) and any modules
of its own (unimodal heads, the MCR regulariser). The trainer drives it through a few hooks:

* ``stages``: the training phases, each trained to early stopping (``("joint",)`` for most
  methods; ``("unimodal",)`` for the ensemble; ``("unimodal", "joint")`` for Uni-Pre).
* ``begin_stage(stage)``: freeze or unfreeze, reset per-stage state.
* ``param_groups(stage)``: optimizer parameter groups, named ``encoder:<m>``, ``fusion`` and
  ``method``; each carries ``lr_scale`` (a multiplier the method may change every step, which is
  how OGM-GE and MLB modulate the learning pace of each encoder).
* ``training_step(batch, stage) -> StepOutput``: the loss of one batch. ``forward`` calls it,
  so the method can be wrapped in ``DistributedDataParallel``.
* ``before_optimizer_step(optimizer, stage)``: after ``backward``, before ``step``.
* ``encode`` / ``heads``: evaluation; ``heads`` maps latents to the multimodal output and the
  optional unimodal outputs.
* ``tracks(stage)`` / ``monitor(stage, val)``: what early stopping watches. The unimodal stage
  has one track per modality, so each unimodal model keeps its own best epoch, exactly as if
  it had been trained on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from examples.common.model import ConcatFusionHead, MultimodalModel
from examples.common.task import TaskSpec
from mcr_reg.functional import pool_latent


@dataclass
class StepOutput:
    """Result of one training step.

    Attributes:
        loss: differentiable scalar to back-propagate.
        outputs: ``(B, out_dim)`` multimodal outputs (detached use only: training metrics).
        terms: detached scalars to log (per-term losses, coefficients).
        importance: detached ``(M,)`` per-modality importance measured during the step, if the
            method measures one (MCR).
    """

    loss: Tensor
    outputs: Tensor | None = None
    terms: dict[str, Tensor] = field(default_factory=dict)
    importance: Tensor | None = None


class UnimodalHeads(nn.Module):
    """One linear head per modality on the pooled latent ``z_m`` (the ``f_{c_m}`` of eq. 1)."""

    def __init__(self, latent_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in latent_dims.items()})

    def forward(self, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {m: head(pool_latent(latents[m])) for m, head in self.heads.items()}


def unimodal_outputs_from_fusion(
    model: MultimodalModel, latents: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Each modality's share of the fusion head's output, ``{m: (B, out_dim)}``.

    For the late-fusion :class:`ConcatFusionHead` ``W [z_1; ...; z_M] + b`` this is exactly
    ``W_m z_m + b / M`` (the decomposition OGM-GE uses). For any other head, modality m's
    share is the head's output with every other latent set to zero.
    """
    head = model.fusion_head
    names = model.modalities
    if isinstance(head, ConcatFusionHead):
        weights = torch.split(head.linear.weight, list(head.latent_dims), dim=1)
        bias = head.linear.bias
        out = {}
        for m, w in zip(names, weights, strict=True):
            o = pool_latent(latents[m]) @ w.T  # (B, d_m) @ (d_m, C)
            out[m] = o + bias / len(names) if bias is not None else o
        return out
    out = {}
    for m in names:
        masked = [latents[n] if n == m else torch.zeros_like(latents[n]) for n in names]
        out[m] = head(*masked)
    return out


class Method(nn.Module):
    """Base class: plain joint training of the model's fused output (subclasses extend it).

    Args:
        model: encoders + fusion head.
        task: the task (loss, predictions, metrics).
        options: method hyper-parameters; unknown names raise ``ValueError``.
    """

    name: ClassVar[str] = "base"
    #: hyper-parameter name -> default value; documented in docs/baselines.md
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__()
        if not isinstance(model, MultimodalModel):
            raise TypeError(f"expected a MultimodalModel, got {type(model).__name__}")
        defaults = self.option_defaults()
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown options {unknown} for method {self.name!r}; it accepts "
                f"{sorted(defaults) or 'none'}"
            )
        self.model = model
        self.task = task
        self.options: dict[str, Any] = {**defaults, **options}
        self.stages: tuple[str, ...] = ("joint",)

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Accepted hyper-parameters and their defaults."""
        return dict(cls.defaults)

    # ----------------------------------------------------------------- optimisation
    def begin_stage(self, stage: str) -> None:
        """Prepare a training stage (freeze/unfreeze modules, reset state)."""

    def begin_epoch(self, stage: str, epoch: int) -> None:
        """Hook before each epoch (``epoch`` counts from 0 within the stage)."""

    def set_seed(self, seed: int) -> None:
        """Seed the method's own random draws (called once by the trainer)."""

    def set_train_mode(self, stage: str) -> None:
        """Put modules in train mode for ``stage`` (frozen modules may stay in eval mode)."""
        self.train()

    def _groups(self, named: Mapping[str, list[nn.Parameter]], scales: Mapping[str, float]):
        groups = []
        for name, params in named.items():
            params = [p for p in params if p.requires_grad]
            if params:
                groups.append({"name": name, "params": params, "lr_scale": scales.get(name, 1.0)})
        return groups

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters of the method itself (not of ``self.model``)."""
        model_ids = {id(p) for p in self.model.parameters()}
        return [p for p in self.parameters() if id(p) not in model_ids]

    def param_groups(self, stage: str) -> list[dict[str, Any]]:
        """Optimizer groups: one per encoder, the fusion head, the method's own modules."""
        named: dict[str, list[nn.Parameter]] = {
            f"encoder:{m}": list(self.model.encoders[m].parameters()) for m in self.model.modalities
        }
        named["fusion"] = list(self.model.fusion_head.parameters())
        named["method"] = self.own_parameters()
        return self._groups(named, {})

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        """Loss of one batch (joint training: the task loss of the fused output)."""
        outputs, _ = self.model(batch)
        loss = self.task.loss(outputs, batch["label"])
        return StepOutput(loss, outputs, {"task": loss.detach()})

    def forward(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:  # for DDP
        return self.training_step(batch, stage)

    def before_optimizer_step(self, optimizer: torch.optim.Optimizer, stage: str) -> None:
        """Hook between ``backward`` and ``optimizer.step`` (gradient/lr modulation)."""

    def end_epoch(self, stage: str, epoch: int, val_metrics: Mapping[str, float]) -> None:
        """Hook after each epoch's validation."""

    # ----------------------------------------------------------------- evaluation
    def encode(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self.model.encode(batch)

    def heads(
        self, latents: Mapping[str, Tensor], stage: str
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Multimodal outputs ``(B, out_dim)`` and optional unimodal outputs per modality."""
        return self.model.fuse(latents), None

    def tracks(self, stage: str) -> dict[str, tuple[str, ...]]:
        """Early-stopping tracks: name -> state-dict key prefixes saved at that track's best."""
        return {"model": ("",)}

    def monitor(self, stage: str, val: Mapping[str, Any]) -> dict[str, float]:
        """Validation value per track (``val`` holds ``"multimodal"`` and ``"unimodal"``)."""
        return {"model": float(val["multimodal"][self.task.monitor])}

    # ----------------------------------------------------------------- helpers
    def unimodal_loss(
        self, unimodal: Mapping[str, Tensor], labels: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum of the task losses of the unimodal outputs, and each loss for logging."""
        losses = {m: self.task.loss(o, labels) for m, o in unimodal.items()}
        total = torch.stack(list(losses.values())).sum()
        return total, {f"uni/{m}": v.detach() for m, v in losses.items()}

    def multiloss_step(
        self, heads: nn.Module, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Multi-loss objective ``L(f_c(z), y) + w * sum_m L(h_m(z_m), y)``, ``w = unimodal_weight``.

        Returns:
            ``(loss, fused outputs, unimodal outputs, terms)``; terms hold the task loss and
            each unimodal loss, detached.
        """
        outputs, latents = self.model(batch)
        labels = batch["label"]
        task_loss = self.task.loss(outputs, labels)
        uni = heads(latents)
        uni_loss, terms = self.unimodal_loss(uni, labels)
        loss = task_loss + float(self.options["unimodal_weight"]) * uni_loss
        return loss, outputs, uni, {"task": task_loss.detach(), **terms}
