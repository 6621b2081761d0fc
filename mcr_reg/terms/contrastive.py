"""L_Con (paper eq. 11/15): the modalities' pooled latents of one class pulled together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from mcr_reg import functional as MF
from mcr_reg._checks import check_choice
from mcr_reg.distributed import gather_with_grad
from mcr_reg.terms.base import StepInputs, Term, TermSetting

Kind = Literal["ntxent", "supcon"]
KINDS = ("ntxent", "supcon")


class Contrastive(Term):
    """L_Con on the pooled latents of all modalities, stacked: samples of one class (from any
    modality) are positives.

    Args:
        weight: λ_con.
        kind: ``"ntxent"`` (paper eq. 11 and the released code: each positive against the
            negatives only, :func:`mcr_reg.functional.contrastive_ntxent`) or ``"supcon"``
            (SupCon, the denominator over all other samples).
        temperature: τ.
        projection_dim: width of per-modality linear projections before the loss; needed when
            the latent widths differ (needs the regularizer's ``latent_dims``).
        gather_distributed: gather latents and labels from all ranks (with gradients).
        classes: maps labels to the integer classes that define positives; default: the
            task's (identity, ``round`` for regression, 0/1 for binary, the label vector for
            multi-label).

    Example:
        >>> from mcr_reg import MCRRegularizer
        >>> from mcr_reg.terms import Contrastive
        >>> mcr = MCRRegularizer(torch.nn.Linear(8, 3), num_classes=3, latent_dims=(4, 6),
        ...                      contrastive=Contrastive(temperature=0.1, projection_dim=5))
        >>> tuple(tuple(p.weight.shape) for p in mcr.contrastive.projections)
        ((5, 4), (5, 6))
    """

    name = "contrastive"

    def __init__(
        self,
        weight: float = 1.0,
        *,
        kind: Kind = "ntxent",
        temperature: float = 0.5,
        projection_dim: int | None = None,
        gather_distributed: bool = False,
        classes: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(weight)
        check_choice(kind, "kind", KINDS)
        self.kind: Kind = kind
        if not temperature > 0:
            raise ValueError(f"expected a positive temperature, got {temperature}")
        self.temperature = float(temperature)
        if projection_dim is not None and projection_dim < 1:
            raise ValueError(f"expected projection_dim >= 1, got {projection_dim}")
        self.projection_dim = projection_dim
        self.gather_distributed = bool(gather_distributed)
        self.classes = classes
        self.projections: nn.ModuleList | None = None

    def build(self, setting: TermSetting) -> None:
        super().build(setting)
        dims = setting.latent_dims
        if self.projection_dim is not None:
            if dims is None:
                raise ValueError(
                    "projection_dim needs latent_dims (the input width of each projection)"
                )
            self.projections = nn.ModuleList(nn.Linear(d, self.projection_dim) for d in dims)
        elif dims is not None and len(set(dims)) > 1:
            raise ValueError(
                f"the contrastive term compares latents in one space, but latent_dims {dims} "
                "differ: set Contrastive(projection_dim=...) (or contrastive=False)"
            )

    def forward(self, step: StepInputs) -> Tensor:
        feats = list(step.pooled)
        if self.projections is not None:
            if len(self.projections) != len(feats):
                raise ValueError(
                    f"expected {len(self.projections)} modalities (from latent_dims), got {len(feats)}"
                )
            feats = [p(f.to(next(p.parameters()).dtype)) for p, f in zip(self.projections, feats)]
        widths = {int(f.shape[-1]) for f in feats}
        if len(widths) > 1:
            listing = ", ".join(f"{n} {int(f.shape[-1])}" for n, f in zip(step.names, feats))
            raise ValueError(
                f"expected latents of one width for the contrastive term, got {listing}; "
                "set Contrastive(projection_dim=...) (with latent_dims) or contrastive=False"
            )
        labels = self.classes(step.labels) if self.classes else step.task.classes(step.labels)
        if self.gather_distributed:
            feats = [gather_with_grad(f) for f in feats]
            labels = gather_with_grad(labels)
        stacked = torch.cat(feats)  # (M*B, D): [z_1; ...; z_M]
        tiled = torch.cat([labels] * len(feats))  # (M*B,)
        loss = MF.contrastive_ntxent if self.kind == "ntxent" else MF.supervised_contrastive
        return loss(stacked, tiled, temperature=self.temperature)

    def extra_repr(self) -> str:
        extra = f", projection_dim={self.projection_dim}" if self.projection_dim else ""
        return f"weight={self.weight}, kind={self.kind!r}, temperature={self.temperature}{extra}"
