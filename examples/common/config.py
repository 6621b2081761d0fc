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
        max_epochs, patience: per stage; early stopping on the validation metric.
        lr, weight_decay, optimizer, grad_clip, scheduler, warmup_epochs: optimisation.
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
    scheduler: Literal["none", "cosine"] = "none"
    warmup_epochs: float = 0.0
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
        if self.scheduler not in ("none", "cosine"):
            raise ValueError(f"expected scheduler 'none' or 'cosine', got {self.scheduler!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"expected amp 'none', 'bf16' or 'fp16', got {self.amp!r}")
        self.out = Path(self.out)
        if self.unimodal_reference is not None:
            self.unimodal_reference = Path(self.unimodal_reference)
        if self.smoke:
            self.max_epochs = min(self.max_epochs, 2)
            self.max_batches = self.max_batches or 2
