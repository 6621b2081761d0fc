"""Helpers of every family: the dtype MCR computes its terms in (float64 stays float64, everything
else is float32), and the differentiable gradients that written-out backward passes return under
``create_graph=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``, recording no operation when it already has that dtype."""
    return x if x.dtype == dtype else x.to(dtype)


def in_compute_dtype(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 if it is float64 (:func:`compute_dtype`)."""
    return as_dtype(x, compute_dtype(x.dtype))


def plain_gradients(
    plain: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    grad: Tensor,
    needs: Sequence[bool],
) -> tuple[Tensor | None, ...]:
    """The gradients of ``plain(*inputs)`` for ``grad``, as a differentiable graph: what the
    autograd functions of this package return under ``create_graph=True`` (their written-out
    backward passes are first-order only), so that second-order gradients (gradient
    penalties, Hessian-vector products, ``gradgradcheck``) are exact."""
    wanted = [x for x, need in zip(inputs, needs) if need]
    with torch.enable_grad():
        value = plain(*inputs)
        found = iter(torch.autograd.grad(value, wanted, grad, create_graph=True, allow_unused=True))
    out = []
    for x, need in zip(inputs, needs):
        g = next(found) if need else None
        out.append(torch.zeros_like(x) if need and g is None else g)
    return tuple(out)
