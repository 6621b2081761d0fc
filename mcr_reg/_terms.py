"""The pieces MCR's loss is assembled from besides the mathematics of
:mod:`mcr_reg.functional`: what differs between the tasks, the CEB head, and the output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import functional as MF

__all__ = ["MCROutput"]


def cross_entropy(pred: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(pred.to(MF._compute_dtype(pred.dtype)), labels)


def one_output_loss(loss: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    def task_loss(pred: Tensor, labels: Tensor) -> Tensor:
        dtype = MF._compute_dtype(pred.dtype)  # float32, or float64 for float64 predictions
        return loss(pred.reshape(-1).to(dtype), labels.to(dtype))

    return task_loss


@dataclass(frozen=True)
class TaskRule:
    """What differs between the tasks."""

    divergence: MF.Divergence  # the MIPD divergence between two predictions
    one_output: bool  # one prediction per sample (else num_classes logits)
    loss: Callable[[Tensor, Tensor], Tensor]  # the unimodal term's task loss
    classes: Callable[[Tensor], Tensor]  # labels -> the classes of contrastive positives


TASK_RULES: dict[str, TaskRule] = {
    "classification": TaskRule("jsd", False, cross_entropy, lambda y: y.long()),
    "binary": TaskRule(
        "binary_jsd", True, one_output_loss(F.binary_cross_entropy_with_logits), lambda y: y.long()
    ),
    "regression": TaskRule(
        "squared_error", True, one_output_loss(F.l1_loss), lambda y: torch.round(y).long()
    ),
}


@dataclass(frozen=True)
class MCROutput:
    """What :meth:`MCRRegularizer.forward` returns.

    Attributes:
        loss: the weighted total of the active terms; a differentiable scalar to add to the
            task loss.
        terms: detached, *unweighted* values of the active terms, keys among ``"mipd"`` (the sum
            over subsets of ``L_S``), ``"contrastive"``, ``"ceb"``, ``"unimodal"``.
        importance: detached ``(M,)``: for each modality, the mean divergence of the prediction
            when that modality alone is perturbed (NaN for a modality whose singleton subset is
            not among the perturbed subsets).
        modalities: the modality names, in the order of ``importance``.
        unimodal_logits: the outputs of MCR's own unimodal heads ``(B, C)`` per modality, when
            it has them; else ``None``.
    """

    loss: Tensor
    terms: dict[str, Tensor]
    importance: Tensor
    modalities: tuple[str, ...]
    unimodal_logits: tuple[Tensor, ...] | None = field(default=None)


class CEBHead(nn.Module):
    """``h``: Linear(C, H, no bias) -> ReLU -> Linear(H, Σd_m, no bias) (paper eq. 13)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.net(x))
