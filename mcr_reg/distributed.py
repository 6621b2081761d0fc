"""Gathering across ranks for the contrastive term (``gather_distributed=True``)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_with_grad"]


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
    if x.is_floating_point() and x.requires_grad:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x))
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
