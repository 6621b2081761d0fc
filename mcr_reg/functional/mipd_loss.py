"""MIPD (paper eq. 8-10): the mean divergence of the fusion head's prediction when the latents of
each subset are perturbed, with the game's gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from mcr_reg._checks import (
    check_latents,
    check_permutations,
    check_perturbed_latents,
    split_latents,
)
from mcr_reg.functional.divergence import Divergence, DivergenceFn, blocks_divergence
from mcr_reg.functional.game import FirstOrderOnly
from mcr_reg.functional.head_share import HeadRoute, head_with_share
from mcr_reg.functional.rows import game_rows


def mipd(
    fusion_head: Callable[..., Tensor],
    latents: Sequence[Tensor],
    subsets: Sequence[tuple[int, ...]],
    *,
    permutations: Tensor | None = None,
    perturbed: Sequence[Tensor | None] | None = None,
    k: float = -1.0,
    divergence: Divergence | DivergenceFn = "jsd",
    detach_reference: bool = False,
    batched: bool = True,
    head_share: Sequence[float] | None = None,
    row_weights: Tensor | None = None,
    route: HeadRoute | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean prediction divergence under perturbation of each subset, with the game's gradients.

    For every subset S and draw p the latents of S are replaced by their perturbed version
    (``z_i[π_{p,i}]`` or ``perturbed[i][p]``) and the fusion head's prediction is compared with the
    unperturbed one (paper eq. 8-10; ``L_S = -mean_{p,b} D``), all blocks stacked on the batch
    axis in one head call (``batched``) or one call per block of B rows.

    Gradients follow the game (paper section 3.2; docs/semantics.md, "The game"): in the term of
    S, every use of ``z_i`` is scaled by 1 if ``i ∈ S`` (owner) and by ``k`` otherwise (one gather
    per modality whose backward scales each row, :mod:`mcr_reg.functional.rows`). The head's parameters get
    ``Σ_S c(S) ∇θ_c L_S`` with ``c = head_share`` (:func:`head_factors`; None: the plain sum):
    a module head with one factor runs once with scaled parameters, otherwise a second pass on
    the detached rows carries ``c(S) - 1`` times the gradient to the parameters.

    Args:
        fusion_head: ``fusion_head(z_1, ..., z_M) -> predictions (N, ...)``.
        latents: M batch-first tensors with batch size B.
        subsets: index tuples (see :func:`enumerate_subsets`).
        permutations: ``(P, M, B)`` LongTensor, used for modalities without ``perturbed``.
        perturbed: optional per-modality ``(P, B, ...)`` perturbed latents (e.g. noise, zeros or
            re-encoded perturbed inputs); ``None`` entries use ``permutations``.
        k: the strategy factor for non-owners (:func:`strategy_factor`).
        divergence: ``"jsd"``, ``"binary_jsd"``, ``"multilabel_jsd"``, ``"squared_error"`` or
            a function ``(reference, perturbed) -> divergence`` of your own
            (:data:`~mcr_reg.functional.divergence.DivergenceFn`).
        detach_reference: no gradient through the unperturbed prediction (one reference pass).
        batched: one fusion-head call for everything (False: per block of B rows, for heads
            with batch-dependent layers such as BatchNorm in training mode).
        head_share: ``c(S)`` per subset (:func:`head_factors`); None: 1 for every subset.
        row_weights: optional ``(len(subsets), P, B)`` weights of the perturbed rows (e.g. masks
            from :func:`permutation_row_mask`): each subset's ``Σ w D / Σ w`` (0 if all are 0).
        route: what earlier calls learnt about this head
            (:class:`~mcr_reg.functional.head_share.HeadRoute`); pass the same one on every
            step to skip the checks already made. None: learnt from this call alone.

    Returns:
        ``(per_subset, reference)``: the mean divergence of each subset ``(len(subsets),)``
        (``L_S`` is its negative) and the detached unperturbed prediction ``(B, ...)``.

    Example:
        >>> import torch
        >>> head = torch.nn.Linear(8, 3)
        >>> fuse = lambda a, b: head(torch.cat([a, b], dim=-1))
        >>> z = [torch.randn(6, 4), torch.randn(6, 4)]
        >>> from mcr_reg.functional import sample_permutations
        >>> perms = sample_permutations(4, 2, 6, generator=torch.Generator().manual_seed(0))
        >>> per_subset, ref = mipd(fuse, z, ((0,), (1,)), permutations=perms)
        >>> per_subset.shape, ref.shape
        (torch.Size([2]), torch.Size([6, 3]))
    """
    names, zs = split_latents(list(latents))
    batch, device = check_latents(names, zs)
    if permutations is not None:
        check_permutations(permutations, len(zs), batch, device, values=False)
    given = check_perturbed_latents(perturbed, names, zs)
    options = MIPDOptions(k, divergence, detach_reference, batched, head_share, row_weights)
    return mipd_of_checked(fusion_head, zs, subsets, permutations, given, options, route)


@dataclass(frozen=True)
class MIPDOptions:
    """The settings of :func:`mipd` besides its inputs (see there)."""

    k: float = -1.0
    divergence: Divergence | DivergenceFn = "jsd"
    detach_reference: bool = False
    batched: bool = True
    head_share: Sequence[float] | None = None
    row_weights: Tensor | None = None


def mipd_of_checked(
    fusion_head: Callable[..., Tensor],
    zs: Sequence[Tensor],
    subsets: Sequence[tuple[int, ...]],
    permutations: Tensor | None,
    perturbed: Sequence[Tensor | None],
    options: MIPDOptions,
    route: HeadRoute | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`mipd` on inputs already checked (by :func:`mipd` itself, or by the MIPD term,
    which checks them once per step for every term): latents in modality order, perturbed
    latents one entry per modality."""
    k, detach_reference = options.k, options.detach_reference
    batch = int(zs[0].shape[0])
    draws = _count_draws(permutations, perturbed)
    n_sub = len(subsets)
    n_ref = 1 if detach_reference else n_sub
    rows = game_rows(zs, subsets, permutations, perturbed, k, detach_reference, draws)
    shares, blocks = _head_blocks(options.head_share, n_sub, n_ref, draws, batch, detach_reference)
    out = head_with_share(
        route or HeadRoute(), fusion_head, rows, batch, options.batched, shares, blocks
    )
    if out.dim() == 1:  # one prediction per row: give it an explicit output axis
        out = out.unsqueeze(-1)
    layout = (n_ref, n_sub, draws, batch)
    per_subset = blocks_divergence(
        out, layout, options.divergence, detach_reference, options.row_weights
    )
    if k != 1.0 or any(c != 1.0 for c in shares):
        per_subset = FirstOrderOnly.apply(per_subset, k)
    return per_subset, out[:batch].detach()


def _head_blocks(
    head_share: Sequence[float] | None,
    n_sub: int,
    n_ref: int,
    draws: int,
    batch: int,
    detach_reference: bool,
) -> tuple[list[float], list[tuple[int, float]]]:
    """``(c(S) per subset, (rows, c) of every block)``: the reference blocks (no gradient when
    detached), then the perturbed blocks, subset by subset."""
    shares = [1.0] * n_sub if head_share is None else [float(c) for c in head_share]
    if len(shares) != n_sub:
        raise ValueError(f"expected {n_sub} head_share factors, got {len(shares)}")
    blocks = [(batch, 1.0 if detach_reference else c) for c in shares[:n_ref]]
    blocks += [(draws * batch, c) for c in shares]
    return shares, blocks


def _count_draws(permutations: Tensor | None, perturbed: Sequence[Tensor | None]) -> int:
    counts = {int(p.shape[0]) for p in perturbed if p is not None}
    if permutations is not None and any(p is None for p in perturbed):
        counts.add(int(permutations.shape[0]))
    if len(counts) != 1:
        raise ValueError(
            f"expected one number of draws P across permutations and perturbed latents, "
            f"got {sorted(counts)}"
        )
    return counts.pop()
