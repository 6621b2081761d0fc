"""The pieces MCR's loss is assembled from besides the mathematics of
:mod:`mcr_reg.functional`: what differs between the tasks, the CEB head, and the output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import functional as MF
from mcr_reg.functional._common import as_dtype, in_compute_dtype

__all__ = ["MCROutput"]


def cross_entropy(pred: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(in_compute_dtype(pred), labels)


def one_output_loss(loss: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    def task_loss(pred: Tensor, labels: Tensor) -> Tensor:
        pred = in_compute_dtype(pred.reshape(-1))  # float32, or float64 for float64
        return loss(pred, as_dtype(labels, pred.dtype))

    return task_loss


def linear_per_modality(
    layers: Sequence[nn.Linear], inputs: Sequence[Tensor]
) -> tuple[tuple[Tensor, ...], Tensor | None]:
    """``layers[m](inputs[m])`` for every modality, and the ``(M, B, C)`` tensor they are slices
    of when they come from one batched matrix product (None otherwise). The batched product is
    taken when the layers and the ``(B, D)`` inputs all have one shape and dtype (the common
    case of MCR's own unimodal heads): a handful of operations instead of a linear layer each."""
    first, x0 = layers[0], inputs[0]
    alike = len(layers) > 1 and all(
        x.dim() == 2 and x.shape == x0.shape and x.dtype == first.weight.dtype
        and layer.weight.shape == first.weight.shape and layer.bias is not None
        for layer, x in zip(layers, inputs)
    )  # fmt: skip
    if not alike:
        return tuple(layer(x) for layer, x in zip(layers, inputs)), None
    weight = torch.stack([layer.weight for layer in layers])  # (M, C, D)
    bias = torch.stack([cast(Tensor, layer.bias) for layer in layers])  # (M, C)
    out = torch.baddbmm(bias.unsqueeze(1), torch.stack(list(inputs)), weight.transpose(1, 2))
    return out.unbind(0), out  # M x (B, C), (M, B, C)


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


def subset_sum(per_subset: Tensor, m: int, weight: float) -> Tensor:
    """``Σ_S`` of the per-subset divergences; with sampled subsets (``weight != 1``) the M
    singletons count once and each drawn larger subset ``weight`` times."""
    if weight == 1.0:
        return per_subset.sum()
    return per_subset[:m].sum() + weight * per_subset[m:].sum()


def importance_of(per_subset: Tensor, subsets: Sequence[tuple[int, ...]], m: int) -> Tensor:
    """``(M,)``: each modality's singleton divergence (NaN where its singleton was not among
    the perturbed subsets); the first M entries when the subsets start with the singletons."""
    if tuple(subsets[:m]) == tuple((i,) for i in range(m)):
        return per_subset[:m]
    missing = per_subset.new_full((1,), float("nan"))
    singles = [subsets.index((i,)) if (i,) in subsets else len(subsets) for i in range(m)]
    picked = torch.tensor(singles, device=per_subset.device)
    return torch.cat([per_subset, missing]).index_select(0, picked)


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
