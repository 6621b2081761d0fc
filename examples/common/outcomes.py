"""What training and evaluation hand back: :class:`EvalOutputs` and :class:`FitResult`.

Both the training loop (:mod:`examples.common.trainer`), which makes them, and the reporting
(:mod:`examples.common.reporting`), which writes them to the run's files, read these types, so
they live here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from examples.common.task import TaskSpec


@dataclass
class EvalOutputs:
    """Everything :func:`examples.common.evaluation.evaluate` collects on one split (gathered
    from all ranks)."""

    outputs: Tensor
    labels: Tensor
    unimodal: dict[str, Tensor] | None
    importance: Tensor | None

    def metrics(self, task: TaskSpec) -> dict[str, Any]:
        uni = None
        if self.unimodal is not None:
            uni = {m: task.metrics(o, self.labels) for m, o in self.unimodal.items()}
        return {"multimodal": task.metrics(self.outputs, self.labels), "unimodal": uni}


@dataclass
class FitResult:
    """Per-epoch history and per-stage summaries of :func:`examples.common.trainer.fit`."""

    history: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
