"""Small helpers that make the training loop work with and without ``torch.distributed``.

Every function is a no-op (or returns the single-process answer) when no process group is
initialised, so the same loop runs under plain ``python`` and under ``torchrun``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Whether this process logs, writes checkpoints and metrics."""
    return rank() == 0


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over all ranks (a new tensor; ``t`` itself is left alone)."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Gather a picklable object from every rank (a one-element list without a group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (no-op without a group)."""
    if is_distributed():
        dist.barrier()


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's value on every rank (e.g. an early-stopping decision)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
