"""L_CEB (paper eq. 13): the pooled latents reconstructed from the (detached) fused prediction,
which penalises what the latents share beyond the task."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from mcr_reg import functional as MF
from mcr_reg._checks import check_int
from mcr_reg.terms.base import StepInputs, Term, TermSetting


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


class CEB(Term):
    """L_CEB: a small head reconstructs the concatenated pooled latents from the detached fused
    prediction; the mean squared error is the term.

    Args:
        weight: λ_ceb (the released configurations use 1 where the term is on).
        hidden_dim: hidden width H of the reconstruction head.

    The head is sized from the regularizer's ``latent_dims`` and ``num_classes`` (one output
    for binary and regression), which must be given.

    Example:
        >>> from mcr_reg import MCRRegularizer
        >>> from mcr_reg.terms import CEB
        >>> mcr = MCRRegularizer(torch.nn.Linear(8, 3), num_classes=3, latent_dims=(4, 4),
        ...                      ceb=CEB(hidden_dim=16))
        >>> mcr.ceb
        CEB(
          weight=1.0, hidden_dim=16
          (head): CEBHead(...)
        )
    """

    name = "ceb"

    def __init__(self, weight: float = 1.0, *, hidden_dim: int = 128) -> None:
        super().__init__(weight)
        self.hidden_dim = int(check_int(hidden_dim, "hidden_dim", minimum=1) or 0)
        self.head: CEBHead | None = None

    def build(self, setting: TermSetting) -> None:
        super().build(setting)
        dims, width = setting.latent_dims, setting.width
        missing = [n for n, v in (("latent_dims", dims), ("num_classes", width)) if v is None]
        if missing:
            raise ValueError(
                f"the CEB term needs {' and '.join(missing)} to size its head: pass "
                f"{' and '.join(missing)} to MCRRegularizer (or ceb=False)"
            )
        assert dims is not None and width is not None
        self.head = CEBHead(width, self.hidden_dim, sum(dims))

    def forward(self, step: StepInputs) -> Tensor:
        assert self.head is not None
        source = step.logits if step.logits is not None else step.reference
        if source is None:
            with torch.no_grad():
                source = step.fusion.call(*step.latents)
        source = source.detach()
        if source.dim() == 1:
            source = source.unsqueeze(-1)
        head_dtype = next(self.head.parameters()).dtype
        return MF.ceb_reconstruction(self.head(source.to(head_dtype)), step.pooled)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, hidden_dim={self.hidden_dim}"
