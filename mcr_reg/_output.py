"""What :meth:`MCRRegularizer.forward <mcr_reg.MCRRegularizer.forward>` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["MCROutput"]


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
