"""What a data set asks of the model: the task kind, its loss and its metrics.

A pipeline describes its task once with :class:`TaskSpec`; the trainer and every method use it
to build output layers, compute the task loss, turn outputs into predictions and score them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from examples.common.metrics import classification_metrics

TaskKind = Literal["classification", "binary", "regression"]
MetricFn = Callable[[Tensor, Tensor], dict[str, float]]
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class TaskSpec:
    """Task description shared by the trainer and the methods.

    Args:
        kind: ``"classification"`` (``num_classes`` logits, cross-entropy), ``"binary"``
            (one logit, binary cross-entropy) or ``"regression"`` (one output, L1 loss by
            default, as in the MulT/MOSEI literature).
        num_classes: number of classes; required for classification.
        loss_fn: replaces the default loss; called as ``loss_fn(outputs (B, out_dim), labels)``.
        metric_fn: task-specific metrics, called on the whole evaluation set as
            ``metric_fn(outputs (N, out_dim), labels (N,))``; its keys are merged over the
            defaults (e.g. MOSEI's MAE, correlation, Acc-7, Acc-2).
        monitor: name of the validation metric used for early stopping and model selection.
        monitor_mode: ``"max"`` when larger is better, ``"min"`` otherwise.

    Example:
        >>> TaskSpec("classification", num_classes=6).out_dim
        6
    """

    kind: TaskKind = "classification"
    num_classes: int | None = None
    loss_fn: LossFn | None = None
    metric_fn: MetricFn | None = None
    monitor: str = "accuracy"
    monitor_mode: Literal["max", "min"] = "max"

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "binary", "regression"):
            raise ValueError(
                f"expected kind 'classification', 'binary' or 'regression', got {self.kind!r}"
            )
        if self.kind == "classification" and (self.num_classes is None or self.num_classes < 2):
            raise ValueError(
                f"classification needs num_classes >= 2, got num_classes={self.num_classes}"
            )
        if self.monitor_mode not in ("max", "min"):
            raise ValueError(f"expected monitor_mode 'max' or 'min', got {self.monitor_mode!r}")
        if self.kind == "regression" and self.monitor == "accuracy" and self.metric_fn is None:
            raise ValueError(
                "a regression task has no accuracy; give metric_fn and monitor (e.g. 'mae', "
                "monitor_mode='min')"
            )

    @property
    def out_dim(self) -> int:
        """Width of the model output: the class count, or 1 for binary and regression."""
        return int(self.num_classes) if self.kind == "classification" else 1  # type: ignore[arg-type]

    def loss(self, outputs: Tensor, labels: Tensor) -> Tensor:
        """Task loss of ``outputs (B, out_dim)`` against ``labels (B,)`` (mean over the batch)."""
        if self.loss_fn is not None:
            return self.loss_fn(outputs, labels)
        if self.kind == "classification":
            return F.cross_entropy(outputs, labels.long())
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(outputs.reshape(-1), labels.float())
        return F.l1_loss(outputs.reshape(-1), labels.float().reshape(-1))

    def predict(self, outputs: Tensor) -> Tensor | None:
        """Class predictions ``(B,)`` for classification/binary; None for regression."""
        if self.kind == "classification":
            return outputs.argmax(dim=-1)
        if self.kind == "binary":
            return (outputs.reshape(-1) > 0).long()
        return None

    def probabilities(self, outputs: Tensor) -> Tensor:
        """Per-class probabilities ``(B, K)``: softmax, or ``[1 - p, p]`` for binary."""
        if self.kind == "classification":
            return outputs.float().softmax(dim=-1)
        if self.kind == "binary":
            p = torch.sigmoid(outputs.float().reshape(-1, 1))
            return torch.cat([1 - p, p], dim=-1)
        raise ValueError("a regression task has no class probabilities")

    def true_class_score(self, outputs: Tensor, labels: Tensor) -> Tensor:
        """Per-sample confidence in the correct answer, in [0, 1], shape ``(B,)``.

        Classification: softmax probability of the true class; binary: probability of the
        true label; regression: ``exp(-|prediction - label|)``. Balancing methods (OGM-GE,
        AGM, MLB) use it to compare how well each modality already fits the data.
        """
        if self.kind == "regression":
            return torch.exp(-(outputs.float().reshape(-1) - labels.float().reshape(-1)).abs())
        probs = self.probabilities(outputs)
        return probs.gather(1, labels.long().reshape(-1, 1)).squeeze(1)

    def metrics(self, outputs: Tensor, labels: Tensor) -> dict[str, float]:
        """All metrics of the task on a whole evaluation set."""
        result: dict[str, float] = {}
        pred = self.predict(outputs)
        if pred is not None:
            num = self.num_classes if self.kind == "classification" else 2
            result.update(classification_metrics(pred, labels.long(), int(num)))  # type: ignore[arg-type]
        else:
            diff = outputs.float().reshape(-1) - labels.float().reshape(-1)
            result["mae"] = float(diff.abs().mean())
        if self.metric_fn is not None:
            result.update(self.metric_fn(outputs, labels))
        if self.monitor not in result:
            raise ValueError(
                f"monitor metric {self.monitor!r} is not among the computed metrics {sorted(result)}"
            )
        return result

    def better(self, new: float, old: float | None) -> bool:
        """Whether ``new`` improves on ``old`` under ``monitor_mode``."""
        if old is None:
            return True
        return new > old if self.monitor_mode == "max" else new < old
