"""Evaluation metrics shared by the examples: accuracy, macro-F1 and the error matrix.

The error matrix is the analysis of paper section 4.4 / Figure 5: every test sample is put in a
column by how many of the M unimodal models predict it correctly (0..M), and in a row by
whether the multimodal model predicts it correctly. It shows whether a multimodal model keeps
what the unimodal models already know (columns >= 1) and whether it finds information that no
single modality has (column 0).

All functions take 1-D integer tensors of predicted and true class indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.dim() != 1 or target.dim() != 1:
        raise ValueError(
            f"expected 1-D predictions and targets, got shapes {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"expected predictions and targets of the same length, got {pred.numel()} and "
            f"{target.numel()}"
        )
    if pred.numel() == 0:
        raise ValueError("expected at least one prediction, got an empty tensor")
    for name, t in (("predictions", pred), ("targets", target)):
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"expected integer class indices as {name}, got dtype {t.dtype}")


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of predictions equal to the target, in [0, 1].

    Example:
        >>> accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
        0.75
    """
    _check_pair(pred, target)
    return float((pred == target).double().mean())


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` count matrix; entry ``[t, p]`` counts samples of class t predicted as p.

    Raises:
        ValueError: if a class index lies outside ``[0, num_classes)``.
    """
    _check_pair(pred, target)
    if num_classes < 1:
        raise ValueError(f"expected num_classes >= 1, got {num_classes}")
    for name, t in (("predictions", pred), ("targets", target)):
        if int(t.min()) < 0 or int(t.max()) >= num_classes:
            raise ValueError(
                f"expected {name} in [0, {num_classes}), got values in "
                f"[{int(t.min())}, {int(t.max())}]"
            )
    flat = target.long().cpu() * num_classes + pred.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def macro_f1(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 scores.

    The mean runs over the classes that occur in the targets or in the predictions; a class
    absent from both says nothing about the classifier and is left out. A class with no true
    positives scores 0.

    Example:
        >>> round(macro_f1(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), 2), 4)
        0.7333
    """
    cm = confusion_matrix(pred, target, num_classes).double()
    tp = cm.diagonal()
    predicted = cm.sum(dim=0)  # per class: how often it was predicted
    actual = cm.sum(dim=1)  # per class: how often it is the target
    present = (predicted + actual) > 0
    f1 = torch.where(present, 2 * tp / (predicted + actual).clamp_min(1), torch.zeros_like(tp))
    return float(f1[present].mean())


@dataclass(frozen=True)
class ErrorMatrix:
    """Counts of paper Figure 5 for M modalities.

    Attributes:
        counts: ``(2, M + 1)`` integer tensor. Row 0: multimodal prediction correct, row 1:
            wrong. Column k: exactly k of the M unimodal predictions are correct.
    """

    counts: Tensor

    @property
    def num_modalities(self) -> int:
        return self.counts.shape[1] - 1

    def column_accuracy(self) -> list[float | None]:
        """Multimodal accuracy within each column (None for an empty column)."""
        totals = self.counts.sum(dim=0)
        return [
            None if int(n) == 0 else float(self.counts[0, k]) / float(n)
            for k, n in enumerate(totals)
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: counts, fractions of all samples and per-column accuracy."""
        total = float(self.counts.sum())
        return {
            "rows": ["multimodal_correct", "multimodal_wrong"],
            "columns": [f"{k}_unimodal_correct" for k in range(self.num_modalities + 1)],
            "counts": self.counts.tolist(),
            "fractions": (self.counts.double() / max(total, 1.0)).tolist(),
            "column_accuracy": self.column_accuracy(),
        }


def error_matrix(
    multimodal_pred: Tensor, unimodal_preds: Sequence[Tensor], target: Tensor
) -> ErrorMatrix:
    """Split multimodal correct/wrong by how many unimodal predictions are correct.

    Args:
        multimodal_pred: ``(N,)`` class indices predicted by the multimodal model.
        unimodal_preds: M tensors ``(N,)``, the predictions of each unimodal model.
        target: ``(N,)`` true class indices.

    Returns:
        The :class:`ErrorMatrix` with ``(2, M + 1)`` counts.

    Example:
        >>> y = torch.tensor([0, 1, 2, 3])
        >>> error_matrix(torch.tensor([0, 1, 0, 0]),
        ...              [torch.tensor([0, 0, 2, 1]), torch.tensor([0, 1, 1, 1])], y).counts
        tensor([[0, 1, 1],
                [1, 1, 0]])
    """
    _check_pair(multimodal_pred, target)
    if len(unimodal_preds) < 1:
        raise ValueError("expected at least one unimodal prediction tensor, got none")
    n_correct = torch.zeros_like(target, dtype=torch.long)
    for m, p in enumerate(unimodal_preds):
        try:
            _check_pair(p, target)
        except (ValueError, TypeError) as err:
            raise type(err)(f"unimodal prediction {m}: {err}") from None
        n_correct += (p == target).long()
    mm_wrong = (multimodal_pred != target).long()
    num_columns = len(unimodal_preds) + 1
    flat = (mm_wrong * num_columns + n_correct).cpu()
    counts = torch.bincount(flat, minlength=2 * num_columns).reshape(2, num_columns)
    return ErrorMatrix(counts)


def classification_metrics(pred: Tensor, target: Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 as a dict (the default metrics of classification tasks)."""
    return {
        "accuracy": accuracy(pred, target),
        "macro_f1": macro_f1(pred, target, num_classes),
    }
