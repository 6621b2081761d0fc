"""Timing of training steps, shared by the cost benchmarks.

:func:`make_step` builds one training step of a :class:`~examples.common.methods.Method`
(forward, backward, modulation hook, Adam); :func:`time_interleaved` times several callables in
interleaved rounds; :func:`quartiles` and :func:`paired_ratios` reduce the rounds to a median and
quartiles.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from examples.common.methods import Method


def make_step(
    method: Method, *, lr: float = 1e-4, weight_decay: float = 1e-4, stage: str = "joint"
) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """One training step of ``method``: zero grads, loss, backward, modulation hook, Adam.

    Per-group learning-rate multipliers (``lr_scale``, set by OGM-GE and MLB) are applied as the
    shared trainer does.
    """
    method.begin_stage(stage)
    method.set_seed(0)
    method.begin_epoch(stage, 0)
    method.set_train_mode(stage)
    groups = method.param_groups(stage)
    for g in groups:
        g["initial_lr"] = lr
        g["lr"] = lr * float(g.get("lr_scale", 1.0))
    optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)

    def step(batch: Mapping[str, Tensor]) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        out = method.training_step(batch, stage)
        out.loss.backward()
        method.before_optimizer_step(optimizer, stage)
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * float(g.get("lr_scale", 1.0))
        optimizer.step()
        return out.loss.detach()

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    steps: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    steps_per_repeat: int,
    warmup: int,
    device: torch.device,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per step of every callable, measured in interleaved rounds.

    ``warmup`` untimed rounds come first. Each of the ``repeats`` rounds runs every callable
    ``steps_per_repeat`` times in a row and records the mean time of one call; round r starts
    with callable ``r mod n`` (ABC, BCA, CAB, ...), so slow drifts of the machine and the
    position in a round hit all variants alike.

    Returns:
        ``(wall, cpu)``: per callable, the wall-clock seconds (after ``torch.cuda.synchronize``
        on CUDA) and the CPU seconds of this process (``time.process_time``) of each round.
        On a CPU shared with other jobs the CPU time is the steadier measure: it does not count
        the time the process waits for a core.
    """
    keys = list(steps)
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    synchronize(device)
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            fn = steps[key]
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps_per_repeat):
                fn()
            synchronize(device)
            wall[key].append((time.perf_counter() - start) / steps_per_repeat)
            cpu[key].append((time.process_time() - start_cpu) / steps_per_repeat)
    return wall, cpu


def quartiles(values: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles (inclusive method) and the raw values."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("expected at least one value, got none")
    if len(vals) == 1:
        q1 = q3 = vals[0]
    else:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return {"median": statistics.median(vals), "q1": q1, "q3": q3, "values": vals}


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, Any]:
    """Summary of the per-round ratios ``numerator[r] / denominator[r]`` (interleaved rounds)."""
    return quartiles([a / b for a, b in zip(numerator, denominator, strict=True)])
