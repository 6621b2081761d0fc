"""The stacked rows of MIPD's head call, built with one gather per modality.

MIPD runs the fusion head once on every reference and perturbed block stacked on the batch axis
(:func:`mcr_reg.functional.mipd`). For modality ``i`` each stacked row is one row of a *source*:
the latent ``z_i`` itself, or ``[z_i ; perturbed rows]`` when the user gave perturbed latents.
Which source row a stacked row takes depends only on the layout (subsets, draws, batch) and on the
permutations of the step, and its gradient is scaled by the game's factor: 1 where ``i`` owns the
block's subset, ``k`` where it does not (paper section 3.2).

The layout part (:class:`_Plan`) is a few tensor operations on an ownership table, kept for the
last few layouts; a step then needs one ``cat`` and one ``take`` to turn the permutations into
indices, and one gather per modality whose backward is one ``index_add_`` of the scaled row
gradients (:class:`_GatherRows`). This replaces per-block index pieces, concatenations and a
gradient-scaled copy of each latent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: plans kept for the most recent layouts (fixed subsets hit it every step; sampled subsets
#: build a plan per step, a few operations)
_PLANS_KEPT = 8
_plans: OrderedDict[tuple[object, ...], _Plan] = OrderedDict()


@dataclass(frozen=True)
class _Plan:
    """Index layout of the stacked rows of every modality.

    ``positions[i]`` is, for a permuted modality, a position in the table ``[arange(B) ;
    permutations.flatten()]``, and for a modality with given perturbed latents the row of
    ``[z_i ; perturbed rows]`` itself. ``factors[i]`` is the gradient factor of each row in the
    latents' dtype (None when the game factor k is 1; for k = 0 a boolean mask of the rows whose
    gradient is dropped). ``unused[i]``: no row of modality i passes a gradient, so its rows are
    gathered from the detached latent and its encoder takes no backward from MIPD at all (a
    zero gradient through an encoder that saw a non-finite input would still give NaN)."""

    positions: Tensor  # (M, rows), long
    factors: tuple[Tensor | None, ...]  # M x (rows,)
    identity: Tensor  # arange(B), the first part of the table
    unused: tuple[bool, ...]  # M: no row passes a gradient (k = 0, the modality owns no subset)


def _build_plan(
    subsets: tuple[tuple[int, ...], ...],
    modalities: int,
    draws: int,
    batch: int,
    detach_reference: bool,
    given: tuple[bool, ...],
    k: float,
    device: torch.device,
    dtype: torch.dtype,
) -> _Plan:
    """See :class:`_Plan`. Rows: the reference blocks (one if ``detach_reference``, else one per
    subset), then the ``draws`` perturbed blocks of each subset, subset by subset. Built on the
    CPU and copied to ``device`` without a host synchronisation (:func:`_to_device`)."""
    m, n_sub = modalities, len(subsets)
    n_ref = 1 if detach_reference else n_sub
    owner = torch.tensor([[i in s for s in subsets] for i in range(m)])  # (M, S)
    identity = torch.arange(batch)
    p = torch.arange(draws).view(draws, 1)
    i = torch.arange(m).view(m, 1, 1)
    # the owner's perturbed row: a table position (permuted) or a row of [z ; perturbed rows]
    table = batch + (p * m + i) * batch + identity  # (M, P, B)
    rows = (batch + p * batch + identity).expand(m, draws, batch)
    perturbed_at = torch.where(torch.tensor(given).view(m, 1, 1), rows, table)
    perturbed = torch.where(owner.view(m, n_sub, 1, 1), perturbed_at.unsqueeze(1), identity)
    positions = torch.cat(
        [identity.expand(m, n_ref, batch).reshape(m, -1), perturbed.reshape(m, -1)], dim=1
    )
    factors: tuple[Tensor | None, ...] = (None,) * m
    if k != 1.0:
        # built in the latents' dtype (a float64 run keeps k exact); for k = 0 the rows whose
        # gradient is dropped, so that a non-finite gradient there gives 0, not NaN
        if k == 0.0:  # (a detached reference passes no gradient: its rows count as dropped)
            per_block = ~owner
            ref = torch.ones(m, 1, dtype=torch.bool) if detach_reference else per_block
        else:
            per_block = torch.where(
                owner, torch.ones((), dtype=dtype), torch.tensor(k, dtype=dtype)
            )
            ref = torch.ones(m, 1, dtype=dtype) if detach_reference else per_block  # (M, S)
        all_factors = torch.cat(
            [
                ref.unsqueeze(-1).expand(m, n_ref, batch).reshape(m, -1),
                per_block.unsqueeze(-1).expand(m, n_sub, draws * batch).reshape(m, -1),
            ],
            dim=1,
        )
        factors = _to_device(all_factors, device).unbind(0)
    return _Plan(
        positions=_to_device(positions, device),
        factors=factors,
        identity=_to_device(identity, device),
        unused=tuple(k == 0.0 and not any(i in s for s in subsets) for i in range(m)),
    )


def _to_device(cpu: Tensor, device: torch.device) -> Tensor:
    """``cpu`` on ``device``; to a CUDA device through pinned memory and a non-blocking copy, so
    that the host does not wait for the device (sampled subsets build a plan every step)."""
    if device.type != "cuda" or torch.compiler.is_compiling():
        return cpu.to(device)
    return cpu.pin_memory().to(device, non_blocking=True)


def _plan(key: tuple[object, ...]) -> _Plan:
    """The plan of ``key`` (the arguments of :func:`_build_plan`), kept for recent layouts;
    under ``torch.compile`` it is built inside the graph and never kept."""
    if torch.compiler.is_compiling():
        return _build_plan(*key)  # type: ignore[arg-type]
    plan = _plans.get(key)
    if plan is None:
        plan = _build_plan(*key)  # type: ignore[arg-type]
        _plans[key] = plan
        if len(_plans) > _PLANS_KEPT:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return plan


def game_rows(
    latents: Sequence[Tensor],
    subsets: Sequence[tuple[int, ...]],
    permutations: Tensor | None,
    perturbed: Sequence[Tensor | None],
    k: float,
    detach_reference: bool,
    draws: int,
) -> list[Tensor]:
    """Per modality, the rows of every block stacked (reference blocks, then perturbed blocks
    subset by subset), each row's gradient scaled by the game's factor (1 for owners, ``k``
    otherwise)."""
    z0 = latents[0]
    batch, device = int(z0.shape[0]), z0.device
    given = tuple(e is not None for e in perturbed)
    if permutations is None and not all(given):
        missing = given.index(False)
        raise ValueError(f"modality {missing} has neither permutations nor perturbed latents")
    plan = _plan(
        (
            tuple(tuple(s) for s in subsets), len(latents), draws, batch, detach_reference,
            given, float(k), device, z0.dtype,
        )
    )  # fmt: skip
    indices: Sequence[Tensor]
    if all(given):
        indices = plan.positions.unbind(0)
    else:
        assert permutations is not None
        table = torch.cat([plan.identity, permutations.reshape(-1)])
        if any(given):  # only the permuted modalities' positions are table positions
            own = plan.positions.unbind(0)
            indices = [p if g else torch.take(table, p) for p, g in zip(own, given)]
        else:
            indices = torch.take(table, plan.positions).unbind(0)
    rows: list[Tensor] = []
    for z, extra, index, factor, unused in zip(
        latents, perturbed, indices, plan.factors, plan.unused
    ):
        source = z if extra is None else torch.cat([z, extra.flatten(0, 1)])
        if unused:
            rows.append(source.detach()[index])
            continue
        if factor is not None and factor.dtype not in (z.dtype, torch.bool):
            factor = factor.to(z.dtype)
        rows.append(_GatherRows.apply(source, index, factor))
    return rows


class _GatherRows(torch.autograd.Function):
    """``source[index]`` (rows); in backward each row's gradient is multiplied by its factor and
    added back to the source row it came from (``index_add_``). Boolean ``factors`` mark the
    rows whose gradient is dropped (factor 0, exactly, also where it is not finite). The
    backward is linear in the incoming gradient and does not read ``source``, so a second-order
    backward through it is exact."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        source: Tensor,
        index: Tensor,
        factors: Tensor | None,
    ) -> Tensor:
        ctx.save_for_backward(index, factors)  # type: ignore[arg-type]
        ctx.source_rows = int(source.shape[0])  # type: ignore[attr-defined]
        return source[index]

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            return None, None, None
        index, factors = ctx.saved_tensors  # type: ignore[attr-defined]
        if factors is not None:
            per_row = factors.view(-1, *([1] * (grad.dim() - 1)))
            grad = grad.masked_fill(per_row, 0.0) if factors.dtype == torch.bool else grad * per_row
        shape = (ctx.source_rows, *grad.shape[1:])  # type: ignore[attr-defined]
        out = torch.zeros(shape, dtype=grad.dtype, device=grad.device)
        return out.index_add_(0, index, grad), None, None
