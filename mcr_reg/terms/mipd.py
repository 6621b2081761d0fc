"""L_MIPD (paper eq. 8-10) with the game (section 3.2): how much the fusion head's prediction
moves when the latents of a subset of modalities are perturbed within the batch."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Literal, cast

import torch
from torch import Tensor

from mcr_reg import functional as MF
from mcr_reg._checks import (
    check_choice,
    check_int,
    check_perturbed_rows,
    check_subsets_spec,
    check_weight,
    compiling,
)
from mcr_reg._heads import ManyOutputsError, current_binding
from mcr_reg._messages import many_outputs_error
from mcr_reg._randomness import draw_perturbations
from mcr_reg.functional.divergence import DivergenceFn
from mcr_reg.functional.head_share import HeadRoute
from mcr_reg.functional.mipd_loss import MIPDOptions, mipd_of_checked
from mcr_reg.terms.base import StepInputs, Term, TermSetting

Perturbation = Literal["permutation", "noise", "zero"]
PerturbedRows = Literal["all", "moved", "other_label"]
PERTURBATIONS = ("permutation", "noise", "zero")
PERTURBED_ROWS = ("all", "moved", "other_label")
HEAD_GRADIENTS = ("mean", "sum")


class MIPD(Term):
    """L_MIPD: for every perturbed subset S and draw, the divergence of the fusion head's
    prediction on the latents with those of S perturbed from its prediction on the originals;
    ``L_S = -mean D``, and the term is ``Σ_S L_S``. Its gradients follow the game of the
    regularizer's ``strategy`` (:func:`mcr_reg.functional.mipd`).

    Args:
        weight: λ_M.
        num_permutations: P, the number of permutation draws per step.
        subsets: ``"all"``, ``"singletons"``, ``"sampled"`` (every singleton plus
            ``sampled_subsets`` larger subsets drawn anew each step, weighted so that the term
            and its gradients are unbiased estimates of those of ``"all"``, see
            :func:`mcr_reg.functional.sample_subsets`) or a list of index tuples.
        sampled_subsets: how many larger subsets ``subsets="sampled"`` draws per step.
        perturbation: ``"permutation"`` (the paper's), ``"noise"`` (latent + Gaussian noise
            with the latent's per-feature batch standard deviation times ``noise_scale``) or
            ``"zero"`` (the latent replaced by zeros; one draw).
        noise_scale: multiplier of the noise standard deviation for ``perturbation="noise"``.
        perturbed_rows: which rows of a permuted block count: ``"all"`` (the paper's uniform
            permutations), ``"moved"`` (rows some permutation of S moves) or
            ``"other_label"`` (rows that receive a sample of another class); see
            :func:`mcr_reg.functional.permutation_row_mask`. Only with permutations.
        head_gradient: what the fusion head's parameters receive: ``"mean"`` (the mean of the
            players' factors, ``c(S) = (|S| + k (M - |S|)) / M``) or ``"sum"`` (the plain sum
            over subsets). See docs/semantics.md, "The game".
        detach_reference: no gradient through the unperturbed prediction.
        divergence: the divergence between two predictions: None (the task's: JSD of softmaxes,
            Bernoulli JSD, per-label Bernoulli JSD or squared error), one of those names, or a
            function ``(reference, perturbed) -> divergence`` of your own
            (:data:`mcr_reg.functional.DivergenceFn`).
        classes: maps labels to the integer classes that ``perturbed_rows="other_label"``
            compares; default: the task's (identity, ``round`` for regression).

    Example:
        >>> from mcr_reg import MCRRegularizer
        >>> from mcr_reg.terms import MIPD
        >>> mcr = MCRRegularizer(torch.nn.Linear(8, 3), num_classes=3,
        ...                      mipd=MIPD(weight=1.0, num_permutations=8, subsets="singletons"))
        >>> mcr.mipd
        MIPD(weight=1.0, P=8, subsets='singletons', perturbation='permutation')
    """

    name = "mipd"

    def __init__(
        self,
        weight: float = 0.1,
        *,
        num_permutations: int = 32,
        subsets: MF.SubsetSpec = "all",
        sampled_subsets: int = 8,
        perturbation: Perturbation = "permutation",
        noise_scale: float = 1.0,
        perturbed_rows: PerturbedRows = "all",
        head_gradient: MF.HeadGradient = "mean",
        detach_reference: bool = False,
        divergence: MF.Divergence | DivergenceFn | None = None,
        classes: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(weight)
        self.num_permutations = cast(
            int, check_int(num_permutations, "num_permutations", minimum=1)
        )
        check_choice(perturbation, "perturbation", PERTURBATIONS)
        self.perturbation: Perturbation = perturbation
        check_perturbed_rows(perturbed_rows, PERTURBED_ROWS, perturbation)
        self.perturbed_rows: PerturbedRows = perturbed_rows
        self.noise_scale = check_weight(noise_scale, "noise_scale")
        check_choice(head_gradient, "head_gradient", HEAD_GRADIENTS)
        self.head_gradient: MF.HeadGradient = head_gradient
        self.detach_reference = bool(detach_reference)
        if divergence is not None and not callable(divergence):
            MF.divergence_fn(divergence)  # a known name, or a clear error now
        self.divergence = divergence
        self.classes = classes
        self.subsets_spec = subsets
        self.sampled_subsets = cast(int, check_int(sampled_subsets, "sampled_subsets", minimum=1))
        self._subsets: dict[int, tuple[tuple[int, ...], ...]] = {}
        check_subsets_spec(subsets)

    def build(self, setting: TermSetting) -> None:
        super().build(setting)
        if setting.latent_dims is not None and self.subsets_spec != "sampled":
            self.subsets_for(len(setting.latent_dims))  # validate now

    def subsets_for(self, num_modalities: int) -> tuple[tuple[int, ...], ...]:
        """The perturbed subsets for ``num_modalities`` modalities (kept)."""
        if num_modalities not in self._subsets:
            self._subsets[num_modalities] = MF.enumerate_subsets(num_modalities, self.subsets_spec)
        return self._subsets[num_modalities]

    def subsets_of_step(
        self, num_modalities: int, rng: random.Random
    ) -> tuple[tuple[tuple[int, ...], ...], float]:
        """The perturbed subsets of this step and the weight of each larger subset's term (1
        except for ``subsets="sampled"``, whose larger subsets are drawn from ``rng``)."""
        if self.subsets_spec != "sampled":
            return self.subsets_for(num_modalities), 1.0
        if compiling():
            raise ValueError(
                "subsets='sampled' draws the subsets of every step in Python, which a compiled "
                "graph would freeze at its first draw: use subsets='all' or 'singletons' under "
                "torch.compile"
            )
        return MF.sample_subsets(num_modalities, self.sampled_subsets, rng)

    def check(self, step: StepInputs) -> None:
        if step.permutations is not None and self.perturbation != "permutation":
            raise ValueError(
                f"permutations were given but perturbation={self.perturbation!r}; "
                "they are only used with perturbation='permutation'"
            )
        if self.perturbed_rows != "all" and any(p is not None for p in step.perturbed):
            raise ValueError(
                f"perturbed_rows={self.perturbed_rows!r} needs MCR's own permutations "
                "for every modality; perturbed_latents were given"
            )

    def forward(self, step: StepInputs) -> Tensor:
        m = len(step.latents)
        subsets, weight = self.subsets_of_step(m, step.private.subsets)
        per_subset, reference = self._per_subset(step, subsets)
        step.task.check_head_output(reference, step.width)
        step.reference = reference
        step.importance = importance_of(per_subset.detach(), subsets, m)
        return -subset_sum(per_subset, m, weight)

    def _per_subset(
        self, step: StepInputs, subsets: tuple[tuple[int, ...], ...]
    ) -> tuple[Tensor, Tensor]:
        """:func:`mcr_reg.functional.mipd` with this term's settings: ``(per_subset,
        reference)``."""
        zs = step.latents
        perms, perturbed = draw_perturbations(
            self.perturbation, zs, step.perturbed, step.permutations, self.num_permutations,
            self.noise_scale, step.generator_on(zs[0].device),
        )  # fmt: skip
        binding = current_binding(step.fusion.call)
        permuting = perms is not None and all(p is None for p in perturbed)
        if binding is not None and binding.has_followers and permuting:
            zs = binding.pack(zs)  # arguments that follow a latent move with its rows
        row_weights = None
        if self.perturbed_rows != "all":
            assert perms is not None
            classes = self.classes(step.labels) if self.classes else step.task.classes(step.labels)
            row_weights = MF.permutation_row_mask(perms, subsets, self.perturbed_rows, classes)
        head_share = (
            MF.head_factors(subsets, len(zs), step.k) if self.head_gradient == "mean" else None
        )
        divergence = self.divergence if self.divergence is not None else step.task.divergence

        def mipd(
            head: Callable[..., Tensor], batched: bool, route: HeadRoute
        ) -> tuple[Tensor, Tensor]:
            options = MIPDOptions(
                step.k, divergence, self.detach_reference, batched, head_share, row_weights
            )
            return mipd_of_checked(head, zs, subsets, perms, perturbed, options, route)

        try:
            return step.fusion.run(mipd)
        except ManyOutputsError as err:
            raise many_outputs_error(err.what, err.hint, int(zs[0].shape[0])) from None
        finally:
            if binding is not None:
                binding.packed = False

    def extra_repr(self) -> str:
        parts = [
            f"weight={self.weight}",
            f"P={self.num_permutations}",
            f"subsets={self.subsets_spec!r}",
            f"perturbation={self.perturbation!r}",
        ]
        if self.perturbed_rows != "all":
            parts.append(f"perturbed_rows={self.perturbed_rows!r}")
        if self.head_gradient != "mean":
            parts.append(f"head_gradient={self.head_gradient!r}")
        if self.detach_reference:
            parts.append("detach_reference=True")
        return ", ".join(parts)


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
