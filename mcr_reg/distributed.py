"""Gathering across ranks for the contrastive term (``gather_distributed=True``)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_with_grad"]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along the batch axis; backward sums every rank's gradient for our slice."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.rows = rank, x.shape[0]  # type: ignore[attr-defined]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows  # type: ignore[attr-defined]
        return grad[start : start + ctx.rows]  # type: ignore[attr-defined]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along the batch axis, keeping gradients.

    Outside an initialised process group (or with one rank) ``x`` is returned unchanged.
    Every rank must pass the same shape (use ``drop_last=True`` in the sampler).

    Gradient scaling: each rank computes the loss on the *global* batch; the backward of the
    gather sums the gradients every rank's loss sends to this rank's slice, so each rank's local
    gradient is ``world_size`` times the single-process gradient. DistributedDataParallel then
    averages over ranks, which gives exactly the gradient of the loss on the concatenated batch in
    one process.

    Args:
        x: ``(B, ...)``; integer tensors are gathered without gradient.

    Returns:
        ``(world_size * B, ...)`` in rank order.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x)  # type: ignore[no-any-return]
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
