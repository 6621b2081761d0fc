"""The typed configuration of one training run.

Built once from the command line by :func:`examples.common.cli.train_config` (or directly in
code); everything below the command line (:func:`examples.common.trainer.run_experiment`,
:func:`~examples.common.trainer.fit`, the reporting) reads this object, never argparse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class TrainConfig:
    """Settings of one run: the method, the loop, the data loaders and the outputs.

    ``smoke`` caps training at 2 epochs of ``max_batches`` (default 2) batches and evaluation
    at ``max_batches`` batches: enough to check that a pipeline runs end to end.

    Attributes:
        method: a name of :data:`examples.common.methods.METHOD_CLASSES`.
        method_options: its hyper-parameters (for ``mcr`` including ``strategy``).
        max_epochs, patience: per stage: the epoch cap, and the early-stopping patience in
            validation rounds (one round per epoch) without improvement of the validation
            metric.
        lr, weight_decay, optimizer, grad_clip: optimisation.
        scheduler: ``"none"`` (constant), ``"cosine"`` (one cosine decay to 0 over
            ``max_epochs``) or ``"cosine_restarts"`` (the released recipe: ``warmup_steps``
            steps at the base rate, then cosine annealing with warm restarts, cycles of
            ``restart_period`` optimizer steps growing by ``restart_mult``; see
            :func:`examples.common.trainer.schedule_factor`).
        warmup_epochs: linear warm-up of ``"none"`` and ``"cosine"``, in epochs.
        warmup_steps, restart_period, restart_mult: the ``"cosine_restarts"`` schedule
            (T_0 = ``restart_period``, T_mult = ``restart_mult``).
        device, seed, amp: where and how the run computes.
        batch_size, num_workers: the data loaders.
        out: the run's folder (``metrics.json``, ``checkpoint.pt``, ...).
        resume: continue from ``out/checkpoint.pt``.
        unimodal_reference: ``test_predictions.json`` of a run with unimodal models, for the
            Figure-5 error matrix of a method without unimodal heads.
        flags: the whole command line, recorded in ``metrics.json`` (pipelines' own flags too).
    """

    method: str = "joint"
    method_options: dict[str, Any] = field(default_factory=dict)
    max_epochs: int = 100
    patience: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    optimizer: Literal["adam", "adamw"] = "adam"
    grad_clip: float | None = None
    scheduler: Literal["none", "cosine", "cosine_restarts"] = "none"
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    restart_period: int = 4
    restart_mult: int = 2
    device: str = "cpu"
    seed: int = 0
    smoke: bool = False
    max_batches: int | None = None
    progress: bool = True
    importance: bool = True
    amp: Literal["none", "bf16", "fp16"] = "none"
    batch_size: int = 32
    num_workers: int = 0
    out: Path = Path("runs/default")
    resume: bool = False
    unimodal_reference: Path | None = None
    flags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"expected max_epochs >= 1, got {self.max_epochs}")
        if self.patience < 1:
            raise ValueError(f"expected patience >= 1, got {self.patience}")
        if self.lr <= 0:
            raise ValueError(f"expected lr > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"expected optimizer 'adam' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("none", "cosine", "cosine_restarts"):
            raise ValueError(
                f"expected scheduler 'none', 'cosine' or 'cosine_restarts', got {self.scheduler!r}"
            )
        if self.warmup_epochs < 0 or self.warmup_steps < 0:
            raise ValueError(
                "expected warmup_epochs >= 0 and warmup_steps >= 0, got "
                f"{self.warmup_epochs} and {self.warmup_steps}"
            )
        if self.scheduler == "cosine_restarts" and self.warmup_epochs > 0:
            raise ValueError(
                "expected warmup_steps, not warmup_epochs, with scheduler 'cosine_restarts' "
                f"(its warm-up holds the base rate for a number of steps), got warmup_epochs="
                f"{self.warmup_epochs}"
            )
        if self.scheduler != "cosine_restarts" and self.warmup_steps > 0:
            raise ValueError(
                "expected warmup_steps only with scheduler 'cosine_restarts' (use "
                f"warmup_epochs), got warmup_steps={self.warmup_steps} with {self.scheduler!r}"
            )
        if self.restart_period < 1 or self.restart_mult < 1:
            raise ValueError(
                "expected restart_period >= 1 and restart_mult >= 1, got "
                f"{self.restart_period} and {self.restart_mult}"
            )
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"expected amp 'none', 'bf16' or 'fp16', got {self.amp!r}")
        self.out = Path(self.out)
        if self.unimodal_reference is not None:
            self.unimodal_reference = Path(self.unimodal_reference)
        if self.smoke:
            self.max_epochs = min(self.max_epochs, 2)
            self.max_batches = self.max_batches or 2
