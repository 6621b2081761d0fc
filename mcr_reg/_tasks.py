"""What differs between the tasks MCR supports, in one table: the MIPD divergence, the width of
the head's output, how labels, predictions and unimodal predictions are checked, the unimodal
term's loss and the classes that define contrastive positives.

A new task is one more :class:`TaskRule` subclass and one entry of :data:`TASKS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mcr_reg._checks import (
    check_class_labels,
    check_finite,
    check_int,
    check_tensor,
    shape_of,
)
from mcr_reg.functional._common import as_dtype, in_compute_dtype
from mcr_reg.functional.divergence import Divergence

Task = Literal["classification", "binary", "regression", "multilabel"]


class TaskRule:
    """The rules of one task. The base class is the rule of one-output tasks (binary and
    regression): ``(N,)`` or ``(N, 1)`` predictions and labels."""

    name: str
    divergence: Divergence
    one_output = True

    def width(self, num_classes: int | None) -> int | None:
        """Values per sample in the head's output (None: not known before the first call)."""
        return 1 if self.one_output else num_classes

    def check_num_classes(self, num_classes: object) -> int | None:
        checked = check_int(num_classes, "num_classes", none_ok=True)
        if checked is not None and checked != 1:
            raise ValueError(
                f"task={self.name!r} expects one output per sample: num_classes must be None "
                f"or 1, got {checked}"
            )
        return checked

    def check_labels(
        self, labels: Tensor, batch: int, num_classes: int | None, values: bool
    ) -> Tensor:
        """The labels of one batch, in the form the losses take."""
        if labels.shape not in ((batch,), (batch, 1)):
            raise ValueError(
                f"expected {self.name} labels of shape ({batch},) or ({batch}, 1), got "
                f"{shape_of(labels)}"
            )
        return labels.reshape(batch)

    def check_prediction(self, logits: Tensor, batch: int, width: int | None) -> int:
        """The fused prediction the task loss used; returns its width per sample."""
        if logits.shape not in ((batch,), (batch, 1)):
            raise ValueError(
                f"expected {self.name} predictions of shape ({batch},) or ({batch}, 1), "
                f"got {shape_of(logits)}"
            )
        return 1

    def check_head_output(self, reference: Tensor, width: int | None) -> None:
        """``reference``: the fusion head's output for one block of B rows."""
        if reference.shape[1:] != (1,):
            raise ValueError(
                f"expected the fusion head to output one value per sample for "
                f"task={self.name!r}, got {shape_of(reference)} for one batch"
            )

    def check_unimodal(self, index: int, pred: Tensor, batch: int, width: int | None) -> None:
        """One modality's prediction passed as ``unimodal_logits[index]``."""
        if pred.dim() < 1 or pred.shape[0] != batch:
            raise ValueError(
                f"expected unimodal_logits[{index}] with batch {batch}, got {shape_of(pred)}"
            )

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        """The task loss of one prediction (the unimodal term's)."""
        raise NotImplementedError

    def classes(self, labels: Tensor) -> Tensor:
        """``(B,)`` integer classes: samples of one class are contrastive positives."""
        return labels.long()


class Classification(TaskRule):
    """One class per sample: ``(N, C)`` logits, ``(B,)`` integer labels, JSD of softmaxes."""

    name, divergence, one_output = "classification", "jsd", False

    def check_num_classes(self, num_classes: object) -> int | None:
        checked = check_int(num_classes, "num_classes", none_ok=True)
        if checked is not None and checked < 2:
            raise ValueError(f"expected num_classes >= 2 for classification, got {checked}")
        return checked

    def check_labels(
        self, labels: Tensor, batch: int, num_classes: int | None, values: bool
    ) -> Tensor:
        return check_class_labels(labels, batch, num_classes, values)

    def check_prediction(self, logits: Tensor, batch: int, width: int | None) -> int:
        if logits.dim() != 2 or logits.shape[0] != batch:
            raise ValueError(f"expected logits of shape ({batch}, C), got {shape_of(logits)}")
        if width is not None and logits.shape[1] != width:
            raise ValueError(
                f"expected logits with num_classes={width} columns, got {shape_of(logits)}"
            )
        return int(logits.shape[1])

    def check_head_output(self, reference: Tensor, width: int | None) -> None:
        if reference.dim() != 2:
            raise ValueError(
                f"expected the fusion head to return (N, C) logits, got {shape_of(reference)} "
                "for one batch"
            )
        if width is not None and reference.shape[1] != width:
            raise ValueError(
                f"expected the fusion head to output {width} values per sample (from "
                f"num_classes or the logits), got {shape_of(reference)} for one batch"
            )

    def check_unimodal(self, index: int, pred: Tensor, batch: int, width: int | None) -> None:
        super().check_unimodal(index, pred, batch, width)
        if pred.dim() != 2 or (width is not None and pred.shape[1] != width):
            c = width if width is not None else "C"
            raise ValueError(
                f"expected unimodal_logits[{index}] of shape ({batch}, {c}), got {shape_of(pred)}"
            )

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(in_compute_dtype(pred), labels)


class Binary(TaskRule):
    """One logit per sample, 0/1 labels, the Bernoulli JSD."""

    name, divergence = "binary", "binary_jsd"

    def check_labels(
        self, labels: Tensor, batch: int, num_classes: int | None, values: bool
    ) -> Tensor:
        labels = super().check_labels(labels, batch, num_classes, values)
        if values and not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("expected binary labels with values 0 or 1, got other values")
        return labels

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        pred = in_compute_dtype(pred.reshape(-1))  # float32, or float64 for float64
        return F.binary_cross_entropy_with_logits(pred, as_dtype(labels, pred.dtype))


class Regression(TaskRule):
    """One real output per sample, the squared error between predictions."""

    name, divergence = "regression", "squared_error"

    def check_labels(
        self, labels: Tensor, batch: int, num_classes: int | None, values: bool
    ) -> Tensor:
        labels = super().check_labels(labels, batch, num_classes, values)
        if not labels.is_floating_point():
            raise TypeError(f"expected floating-point regression targets, got {labels.dtype}")
        if values:
            check_finite(labels, "regression labels")
        return labels

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        pred = in_compute_dtype(pred.reshape(-1))
        return F.l1_loss(pred, as_dtype(labels, pred.dtype))

    def classes(self, labels: Tensor) -> Tensor:
        return torch.round(labels).long()


#: label vectors up to this many labels are turned into class ids without a host sync
_BITS_OF_AN_ID = 62


class MultiLabel(TaskRule):
    """Several independent 0/1 labels per sample: ``(N, L)`` logits (one per label, L =
    ``num_classes``), ``(B, L)`` 0/1 labels. MIPD's divergence is the Bernoulli JSD of each
    label, averaged over the labels (so it stays in ``[0, ln 2]`` like the other tasks'); the
    unimodal loss is the binary cross-entropy averaged over labels; samples with the same label
    vector are contrastive positives."""

    name, divergence, one_output = "multilabel", "multilabel_jsd", False

    def check_num_classes(self, num_classes: object) -> int | None:
        return check_int(num_classes, "num_classes", minimum=1, none_ok=True)

    def check_labels(
        self, labels: Tensor, batch: int, num_classes: int | None, values: bool
    ) -> Tensor:
        if labels.dim() != 2 or labels.shape[0] != batch:
            raise ValueError(
                f"expected multi-label targets of shape ({batch}, L), one 0/1 column per "
                f"label, got {shape_of(labels)}"
            )
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(
                f"expected {num_classes} label columns (num_classes), got {shape_of(labels)}"
            )
        if labels.is_complex():
            raise TypeError(f"expected 0/1 multi-label targets, got dtype {labels.dtype}")
        if values and not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("expected multi-label targets with values 0 or 1, got other values")
        return labels

    def check_prediction(self, logits: Tensor, batch: int, width: int | None) -> int:
        if logits.dim() != 2 or logits.shape[0] != batch:
            raise ValueError(
                f"expected multi-label logits of shape ({batch}, L), got {shape_of(logits)}"
            )
        if width is not None and logits.shape[1] != width:
            raise ValueError(
                f"expected logits with num_classes={width} columns, got {shape_of(logits)}"
            )
        return int(logits.shape[1])

    check_head_output = Classification.check_head_output
    check_unimodal = Classification.check_unimodal

    def loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        pred = in_compute_dtype(pred)
        return F.binary_cross_entropy_with_logits(pred, as_dtype(labels, pred.dtype))

    def classes(self, labels: Tensor) -> Tensor:
        bits = labels.long()
        if bits.shape[1] <= _BITS_OF_AN_ID:
            powers = 2 ** torch.arange(bits.shape[1], device=bits.device, dtype=torch.long)
            return (bits * powers).sum(dim=1)
        inverse: Tensor = torch.unique(bits, dim=0, return_inverse=True)[1]
        return inverse


TASKS: dict[str, TaskRule] = {
    rule.name: rule for rule in (Classification(), Binary(), Regression(), MultiLabel())
}


def task_rule(task: object) -> TaskRule:
    if task not in TASKS:
        raise ValueError(f"expected task in {list(TASKS)}, got {task!r}")
    return TASKS[str(task)]


def check_unimodal_logits(
    rule: TaskRule, unimodal_logits: Sequence[object], m_count: int, batch: int, width: int | None
) -> list[Tensor]:
    preds = [check_tensor(p, f"unimodal_logits[{i}]") for i, p in enumerate(unimodal_logits)]
    if len(preds) != m_count:
        raise ValueError(f"expected {m_count} unimodal predictions, got {len(preds)}")
    for i, p in enumerate(preds):
        rule.check_unimodal(i, p, batch, width)
    return preds
