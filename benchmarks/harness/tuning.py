"""The tuning grid and training budget of the tuned benchmarks (synthetic, multi-view, AV-MNIST).

Every method of a benchmark gets the same budget (a :class:`TrainingBudget`; :class:`Budget`
for the MLP benchmarks) and the same number ``G`` of tuning trials, the first ``G`` entries of
its list in :data:`GRID`; the trial with the best mean validation accuracy over the seeds is
the one reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Tuning trials per method, in the order they are used (``--grid G`` takes the first G).
#: Methods with their own hyper-parameter tune it at the base learning rate; methods without
#: one (joint, ensemble, uni_pre_frozen) tune the learning rate instead.
GRID: dict[str, list[dict[str, Any]]] = {
    "joint": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 3e-4}],
    "ensemble": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 3e-4}],
    "uni_pre_frozen": [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 3e-4}],
    "uni_pre_finetuned": [
        {"finetune_lr_scale": 0.1},
        {"finetune_lr_scale": 1.0},
        {"finetune_lr_scale": 0.3},
    ],
    "multiloss": [{"unimodal_weight": 1.0}, {"unimodal_weight": 0.3}, {"unimodal_weight": 3.0}],
    "ogm_ge": [{"alpha": 0.5}, {"alpha": 0.1}, {"alpha": 1.0}],
    "agm": [{"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 2.0}],
    "mlb": [{"alpha": 1.0}, {"alpha": 0.5}, {"alpha": 2.0}],
    "mmcosine": [{"scale": 10.0}, {"scale": 5.0}, {"scale": 20.0}],
    "mcr": [{"mipd_weight": 0.1}, {"mipd_weight": 1.0}, {"mipd_weight": 0.01}],
    # the same grid as mcr; the joint-stage encoder lr scale stays at the paper's 0.1
    "mcr_uni_pre": [{"mipd_weight": 0.1}, {"mipd_weight": 1.0}, {"mipd_weight": 0.01}],
}

#: Benchmark keys that are a registered method with fixed options (not tuned).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mcr_uni_pre": ("mcr", {"init": "unimodal"}),
}


#: The methods of a benchmark's ``--quick`` run: the two references, the two strongest baseline
#: families of the synthetic benchmark, and MCR with and without unimodal initialisation.
QUICK_METHODS: tuple[str, ...] = (
    "joint",
    "ensemble",
    "multiloss",
    "uni_pre_finetuned",
    "mcr",
    "mcr_uni_pre",
)


@dataclass(frozen=True)
class TrainingBudget:
    """How every run of a benchmark trains (Adam, early stopping on validation accuracy)."""

    max_epochs: int = 60
    patience: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class Budget(TrainingBudget):
    """The training budget and MLP widths every method gets (docs/examples/synthetic.md,
    multiview.md)."""

    hidden: int = 64
    latent: int = 32


def best_trial(val_means: Sequence[float]) -> int:
    """The trial with the best mean validation accuracy over the seeds (ties: the earlier one);
    the test split is never looked at.

    Raises:
        ValueError: for no trials.
    """
    if not val_means:
        raise ValueError("expected the validation means of at least one trial, got none")
    return max(range(len(val_means)), key=lambda i: (val_means[i], -i))
