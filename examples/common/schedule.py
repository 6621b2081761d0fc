"""The optimizer and its learning rate: :func:`default_optimizer` builds it, :func:`schedule_factor`
says the rate's multiplier at every step (warm-up, cosine, cosine with warm restarts) and
:func:`set_learning_rate` is the one place the rate is set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from examples.common.config import TrainConfig

OptimizerFactory = Callable[[list[dict[str, Any]], "TrainConfig"], torch.optim.Optimizer]


def default_optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the method's parameter groups with the config's lr and weight decay.

    Each group keeps ``initial_lr`` (the config's lr, stored once) and its ``lr_scale``; its
    ``lr`` starts at their product (:func:`set_learning_rate` sets it at every step).
    """
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    for group in groups:
        group.setdefault("lr_scale", 1.0)
        group["initial_lr"] = config.lr
        group["lr"] = group["initial_lr"] * group["lr_scale"]
    return cls(groups, lr=config.lr, weight_decay=config.weight_decay)


def schedule_factor(
    config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int
) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based, counted within a stage).

    ``"none"`` and ``"cosine"``: a linear warm-up over ``warmup_epochs``, then constant or one
    cosine decay to 0 at ``total_steps``. ``"cosine_restarts"``: the released recipe: 1 for
    the first ``warmup_steps`` steps (the rate is held, not ramped), then
    :func:`restart_cosine` of the step count *from the start of training* (the warm-up steps
    count), as the released code calls ``CosineAnnealingWarmRestarts.step(step)``.
    """
    if config.scheduler == "cosine_restarts":
        if step < config.warmup_steps:
            return 1.0
        return restart_cosine(step, config.restart_period, config.restart_mult)
    warmup = config.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if config.scheduler == "cosine":
        progress = (step - warmup) / max(1.0, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def restart_cosine(step: int, period: int, mult: int) -> float:
    """Cosine annealing with warm restarts (SGDR, Loshchilov and Hutter), ``eta_min = 0``.

    Cycle i lasts ``period * mult**i`` steps; within a cycle the factor is
    ``(1 + cos(pi * t / T_i)) / 2`` at its ``t``-th step, so it is 1 at every restart. The
    same values as ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=period,
    T_mult=mult).step(step)``, computed in integers: torch finds the cycle with a
    floating-point logarithm, which can misplace a boundary (``T_0=1, T_mult=3``, step 121);
    with the released ``T_0=4, T_mult=2`` the two agree at every step tested.
    """
    if step < 0 or period < 1 or mult < 1:
        raise ValueError(
            f"expected step >= 0, period >= 1 and mult >= 1, got {step}, {period}, {mult}"
        )
    if mult == 1:
        t, length = step % period, period
    else:
        start, length = 0, period
        while step >= start + length:
            start += length
            length *= mult
        t = step - start
    return 0.5 * (1.0 + math.cos(math.pi * t / length))


def set_learning_rate(
    optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, steps_per_epoch: int
) -> None:
    """The one place the learning rate is set: ``initial_lr × lr_scale × schedule(step)``.

    ``lr_scale`` is each group's multiplier (a method may change it every step: OGM-GE, MLB);
    the schedule is :func:`schedule_factor` over ``config.max_epochs`` epochs.
    """
    factor = schedule_factor(config, step, steps_per_epoch * config.max_epochs, steps_per_epoch)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor * group["lr_scale"]
