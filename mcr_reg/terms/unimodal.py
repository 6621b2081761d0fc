"""L_uni (Algorithm 1, line 4): each modality's own prediction trained on the task."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from mcr_reg._checks import compiling
from mcr_reg._messages import user_stacklevel
from mcr_reg._tasks import check_unimodal_logits
from mcr_reg.terms.base import StepInputs, Term, TermSetting


class Unimodal(Term):
    """L_uni: the sum over modalities of the task loss of each modality's prediction.

    The predictions come from MCR's own linear head per modality (on the pooled latent) when
    the regularizer has ``latent_dims`` (and ``num_classes`` in classification); otherwise from
    the ``unimodal_logits`` passed to the call. With neither, the term is off and says so once.

    Args:
        weight: λ_uni.

    Example:
        >>> from mcr_reg import MCRRegularizer
        >>> from mcr_reg.terms import Unimodal
        >>> mcr = MCRRegularizer(torch.nn.Linear(8, 3), num_classes=3, latent_dims=(4, 4),
        ...                      unimodal=Unimodal(weight=1.0))
        >>> len(mcr.unimodal.heads)
        2
    """

    name = "unimodal"

    def __init__(self, weight: float = 0.01) -> None:
        super().__init__(weight)
        self.heads: nn.ModuleList | None = None
        self._warned_off = False

    def build(self, setting: TermSetting) -> None:
        super().build(setting)
        if setting.latent_dims is not None and setting.width is not None:
            self.heads = nn.ModuleList(nn.Linear(d, setting.width) for d in setting.latent_dims)

    def check(self, step: StepInputs) -> None:
        if step.unimodal_logits is None:
            return
        if self.heads is not None:
            raise ValueError(
                "unimodal_logits were given, but MCR owns unimodal heads (the unimodal term "
                "with latent_dims); pass unimodal=False or build MCR without latent_dims"
            )
        step.unimodal_logits = check_unimodal_logits(
            step.task, step.unimodal_logits, len(step.latents), step.batch, step.width
        )

    def forward(self, step: StepInputs) -> Tensor | None:
        stacked = None
        if self.heads is not None:
            heads = cast(Sequence[nn.Linear], self.heads)
            step.own_unimodal, stacked = linear_per_modality(heads, step.pooled)
        predictions = step.own_unimodal if step.own_unimodal is not None else step.unimodal_logits
        if predictions is None:
            if not self._warned_off and not compiling():
                self._warn_off(step)
            return None
        if stacked is not None:  # (M, B, C): M times the mean loss over all M·B rows
            tiled = torch.cat([step.labels] * len(predictions))
            return step.task.loss(stacked.flatten(0, 1), tiled) * len(predictions)
        return torch.stack([step.task.loss(p, step.labels) for p in predictions]).sum()

    def _warn_off(self, step: StepInputs) -> None:
        """Once: the weight is > 0, but there are no unimodal predictions to train."""
        self._warned_off = True
        setting = self.setting
        widths = tuple(int(z.shape[-1]) for z in step.pooled)
        missing = " and ".join(
            n
            for n, v in (
                ("latent_dims", setting.latent_dims if setting else None),
                ("num_classes", setting.width if setting else None),
            )
            if v is None
        )
        warnings.warn(
            f"the unimodal term is off although its weight is {self.weight} > 0: MCR has no "
            f"unimodal heads (they need {missing}) and no unimodal_logits were passed. Build "
            f"MCR with latent_dims={widths} (the widths of these latents) to train its own "
            "heads, pass unimodal_logits=[...] to the call, or pass unimodal=False to leave "
            "the term out on purpose. (Warned once.)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


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
