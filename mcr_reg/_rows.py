"""The stacked rows of MIPD's head call, built with one gather per modality.

MIPD runs the fusion head once on every reference and perturbed block stacked on the batch axis
(:func:`mcr_reg.functional.mipd`). For modality ``i`` each stacked row is one row of a *source*:
the latent ``z_i`` itself, or ``[z_i ; perturbed rows]`` when the user gave perturbed latents.
Which source row a stacked row takes depends only on the layout (subsets, draws, batch) and on the
permutations of the step, and its gradient is scaled by the game's factor: 1 where ``i`` owns the
block's subset, ``k`` where it does not (paper section 3.2).

The layout part is computed once per layout and kept (``_plan``); a step then needs one ``cat``
and one ``index_select`` to turn the permutations into indices, and one gather per modality whose
backward is one ``index_add_`` of the scaled row gradients (:class:`_GatherRows`). This replaces
per-block index pieces, concatenations and a gradient-scaled copy of each latent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


@dataclass(frozen=True)
class _Plan:
    """Index layout of the stacked rows for one configuration.

    ``positions[j]`` (for the j-th permuted modality) indexes the table ``[arange(B) ;
    permutations.flatten()]``; ``fixed[i]`` is the complete index of a modality whose perturbed
    rows come from given perturbed latents; ``factors[i]`` is the gradient factor of every row
    (None where every factor is 1)."""

    positions: Tensor | None  # (number of permuted modalities, rows), long
    fixed: tuple[Tensor | None, ...]
    factors: tuple[Tensor | None, ...]
    identity: Tensor  # arange(B), the first part of the table


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
    subset), then the ``draws`` perturbed blocks of each subset, subset by subset."""
    b = torch.arange(batch)
    refs = subsets[:1] if detach_reference else subsets
    positions: list[Tensor] = []
    fixed: list[Tensor | None] = []
    factors: list[Tensor | None] = []
    for i in range(modalities):
        index: list[Tensor] = []
        owner: list[bool] = []
        for s in refs:
            index.append(b)
            owner.append(detach_reference or i in s)
        for s in subsets:
            if i not in s:
                index.append(b.repeat(draws))
            elif given[i]:  # the source is [z ; perturbed rows]: rows B + p * B + b
                index.append(batch + torch.arange(draws * batch))
            else:  # the table entry of permutations[p, i, b]
                p = torch.arange(draws).unsqueeze(1)
                index.append((batch + (p * modalities + i) * batch + b).reshape(-1))
            owner.append(i in s)
        full = torch.cat(index)
        if given[i]:
            fixed.append(full.to(device))
        else:
            positions.append(full)
            fixed.append(None)
        if k == 1.0 or all(owner):
            factors.append(None)
        else:
            sizes = [batch] * len(refs) + [draws * batch] * len(subsets)
            per_row = torch.cat(
                [torch.full((n,), 1.0 if o else k, dtype=dtype) for n, o in zip(sizes, owner)]
            )
            factors.append(per_row.to(device))
    return _Plan(
        positions=torch.stack(positions).to(device) if positions else None,
        fixed=tuple(fixed),
        factors=tuple(factors),
        identity=b.to(device),
    )


_cached_plan = lru_cache(maxsize=32)(_build_plan)


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
    key = (
        tuple(tuple(s) for s in subsets), len(latents), draws, batch, detach_reference,
        given, float(k), device, z0.dtype,
    )  # fmt: skip
    # under torch.compile the plan is built inside the graph (constants), never cached
    plan = _build_plan(*key) if torch.compiler.is_compiling() else _cached_plan(*key)
    indices: list[Tensor] = []
    if plan.positions is not None:
        assert permutations is not None
        table = torch.cat([plan.identity, permutations.reshape(-1)])
        indices = list(torch.take(table, plan.positions).unbind(0))
    rows: list[Tensor] = []
    for i, z in enumerate(latents):
        extra = perturbed[i]
        fixed = plan.fixed[i]
        if extra is not None and fixed is not None:
            source, index = torch.cat([z, extra.flatten(0, 1)]), fixed
        else:
            source, index = z, indices.pop(0)
        factors = plan.factors[i]
        if factors is not None and factors.dtype != source.dtype:
            factors = factors.to(source.dtype)
        rows.append(_GatherRows.apply(source, index, factors))
    return rows


class _GatherRows(torch.autograd.Function):
    """``source[index]`` (rows); in backward each row's gradient is multiplied by its factor and
    added back to the source row it came from (``index_add_``)."""

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
            grad = grad * factors.view(-1, *([1] * (grad.dim() - 1)))
        shape = (ctx.source_rows, *grad.shape[1:])  # type: ignore[attr-defined]
        out = torch.zeros(shape, dtype=grad.dtype, device=grad.device)
        return out.index_add_(0, index, grad), None, None
