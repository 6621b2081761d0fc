"""What every loss term of MCR shares: the :class:`Term` module, what it learns of the
regularizer when it is built (:class:`TermSetting`) and what it sees of a step
(:class:`StepInputs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mcr_reg._checks import check_weight
from mcr_reg._heads import FusionHead
from mcr_reg._randomness import PrivateGenerators, generator_for
from mcr_reg._tasks import TaskRule


@dataclass(frozen=True)
class TermSetting:
    """What a term learns of the regularizer it belongs to, once, when the regularizer is built:
    enough to size its parameters (so that an optimizer built next is complete) and to check its
    options."""

    task: TaskRule
    num_classes: int | None
    width: int | None  # values per sample in the fusion head's output (None: not known yet)
    latent_dims: tuple[int, ...] | None
    feature_axis: int | str


@dataclass
class StepInputs:
    """One step's inputs as every term sees them, checked once by the regularizer.

    ``reference`` and ``importance`` are filled by the MIPD term, which runs first: the fusion
    head's unperturbed prediction (detached) and each modality's singleton divergence;
    ``own_unimodal`` by the unimodal term: the outputs of MCR's own unimodal heads.
    """

    names: tuple[str, ...]
    latents: Sequence[Tensor]
    pooled: Sequence[Tensor]  # (B, D) per modality (mcr_reg.functional.pool_latent)
    labels: Tensor  # checked, in the form the task's losses take
    logits: Tensor | None  # the fused prediction the task loss used, if given
    task: TaskRule
    width: int | None  # values per sample of the head's output (from the logits or the setting)
    fusion: FusionHead
    k: float  # the game's factor for non-owners (mcr_reg.functional.strategy_factor)
    generator: torch.Generator | None  # the user's generator, if any
    private: PrivateGenerators  # MCR's own generators (and the random source of subsets)
    permutations: Tensor | None  # given to forward, checked
    perturbed: list[Tensor | None]  # given perturbed latents, one entry per modality
    unimodal_logits: Sequence[Tensor] | None
    reference: Tensor | None = None
    importance: Tensor | None = None
    own_unimodal: tuple[Tensor, ...] | None = None  # filled by the unimodal term's own heads

    @property
    def batch(self) -> int:
        return int(self.latents[0].shape[0])

    def generator_on(self, device: torch.device) -> torch.Generator | None:
        """The generator MCR draws from on ``device`` (None while compiling: the global RNG)."""
        return generator_for(device, self.generator, self.private)


class Term(nn.Module):
    """One weighted term of ``L_MCR``: an ``nn.Module`` that owns its options, its parameters
    and their validation.

    A new term is one subclass: give it a ``name`` (its key in ``MCROutput.terms``), build its
    parameters in :meth:`build`, check its inputs in :meth:`check` and compute its unweighted
    value in :meth:`forward`; pass it to ``MCRRegularizer(..., extra_terms=[...])``. A term with
    weight 0 is left out.
    """

    name: ClassVar[str]

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = check_weight(weight, f"the {self.name} weight")
        self.setting: TermSetting | None = None

    def build(self, setting: TermSetting) -> None:
        """Create the parameters and check the options for ``setting`` (called once, by the
        regularizer's constructor). Subclasses call this first."""
        if self.setting is not None:
            raise ValueError(
                f"this {type(self).__name__} term already belongs to another regularizer; "
                "build a new term object for each MCRRegularizer"
            )
        self.setting = setting

    def check(self, step: StepInputs) -> None:
        """Check this term's inputs of a step, before any term computes (raise on bad input)."""

    def forward(self, step: StepInputs) -> Tensor | None:
        """The unweighted value of the term (a scalar), or None when it is off for this step."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
