"""The game of paper section 3.2: the strategy factor ``k`` of the non-owners, the head's share
``c(S)`` of each subset's gradient, and the autograd functions that apply them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from mcr_reg._messages import double_backward_message

_STRATEGY_K = {"greedy": -1.0, "independent": 0.0, "collaborative": 1.0}

#: The named strategies of the game (paper section 3.2), the default first.
STRATEGIES: tuple[str, ...] = tuple(_STRATEGY_K)


HeadGradient = Literal["mean", "sum"]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by a constant backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None]:
        return grad * ctx.factor, None  # type: ignore[attr-defined]


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """Identity in the forward pass; the gradient is multiplied by ``factor`` in the backward.

    ``factor == 1`` returns ``x`` itself and ``factor == 0`` returns ``x.detach()``, so a zero
    factor gives exactly no gradient (also when the incoming gradient is not finite).

    Args:
        x: any tensor.
        factor: a Python number (the game's k, see :func:`strategy_factor`).

    Returns:
        A tensor equal to ``x``.

    Example:
        >>> x = torch.ones(3, requires_grad=True)
        >>> scale_grad(x, -1.0).sum().backward()
        >>> x.grad
        tensor([-1., -1., -1.])
    """
    factor = float(factor)
    if factor == 1.0:
        return x
    if factor == 0.0:
        return x.detach()
    return _ScaleGrad.apply(x, factor)  # type: ignore[no-any-return]


def strategy_factor(strategy: str | float) -> float:
    """The game's gradient factor k (paper section 3.2, Figure 3).

    ``"collaborative"`` → +1, ``"independent"`` → 0, ``"greedy"`` → -1; a number is used as is.

    Example:
        >>> strategy_factor("greedy")
        -1.0
    """
    if isinstance(strategy, bool):
        raise TypeError(f"expected a strategy name or a float k, got the bool {strategy}")
    if isinstance(strategy, str):
        if strategy not in _STRATEGY_K:
            raise ValueError(
                f"expected strategy in {sorted(_STRATEGY_K)} or a float k, got {strategy!r}"
            )
        return _STRATEGY_K[strategy]
    if isinstance(strategy, int | float):
        k = float(strategy)
        if not math.isfinite(k):
            raise ValueError(f"expected a finite strategy factor k, got {strategy}")
        return k
    raise TypeError(f"expected a strategy name or a float k, got {type(strategy).__name__}")


def head_factors(
    subsets: Sequence[tuple[int, ...]], num_modalities: int, k: float
) -> tuple[float, ...]:
    """The fusion head's share ``c(S)`` of each MIPD term (paper section 3.2, eq. 7).

    The head belongs to no single modality: it is shared by the M players, and in the term of
    S it receives the mean of their factors, 1 for an owner (``i ∈ S``) and ``k`` otherwise:
    ``c(S) = (|S| + k (M - |S|)) / M``. Greedy with two modalities gives 0 (the paper's
    ``(L1 - L2) + (L2 - L1)``), collaborative gives 1 (joint minimisation over all parameters),
    independent gives ``|S| / M``. See docs/semantics.md, "The game".

    Args:
        subsets: index tuples (see :func:`enumerate_subsets`).
        num_modalities: M.
        k: the strategy factor (:func:`strategy_factor`).

    Returns:
        One factor per subset.

    Example:
        >>> head_factors(((0,), (1,)), 2, -1.0)
        (0.0, 0.0)
        >>> head_factors(((0,), (1,), (0, 1)), 3, 0.0)
        (0.3333333333333333, 0.3333333333333333, 0.6666666666666666)
    """
    m = int(num_modalities)
    return tuple((len(s) + k * (m - len(s))) / m for s in subsets)


class ShareHeadGradient(torch.autograd.Function):
    """Forward: ``out`` unchanged. Backward: ``out`` gets the gradient, ``side`` (same shape)
    gets it scaled per row block (``runs`` of ``(rows, factor)`` covering every row)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        out: Tensor,
        side: Tensor,
        runs: tuple[tuple[int, float], ...],
    ) -> Tensor:
        ctx.runs = runs  # type: ignore[attr-defined]
        return out.view_as(out)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, Tensor, None]:
        runs = ctx.runs  # type: ignore[attr-defined]
        factors = torch.cat(
            [torch.full((n,), f, dtype=grad.dtype, device=grad.device) for n, f in runs]
        )  # (N_side,): fill kernels only, no host-to-device copy
        return grad, grad * factors.view(-1, *([1] * (grad.dim() - 1))), None


def runs_of(sizes: Sequence[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    """Merge consecutive ``(rows, factor)`` blocks with equal factors."""
    out: list[tuple[int, float]] = []
    for n, f in sizes:
        if out and out[-1][1] == f:
            out[-1] = (out[-1][0] + n, f)
        else:
            out.append((n, f))
    return tuple(out)


class FirstOrderOnly(torch.autograd.Function):
    """Identity; its backward refuses ``create_graph=True``. The game's gradient (factors 1, k
    and c(S)) is not the gradient of one loss, and autograd through the scaling would
    differentiate it wrongly (each factor applied twice), so a second-order backward through
    MIPD under the game is an error, not a wrong number."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, k: float) -> Tensor:  # type: ignore[override]
        ctx.k = k  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(double_backward_message(ctx.k))  # type: ignore[attr-defined]
        return grad, None
