"""The standard MOSEI/MOSI sentiment metrics (MulT / MMSA protocol).

For predictions ``p`` and targets ``t`` (sentiment scores, nominally in [-3, 3]):

* ``mae``: mean absolute error; ``corr``: Pearson correlation (NaN when either side is constant).
* ``acc7``: ``round(clip(p, -3, 3)) == round(clip(t, -3, 3))``; ``acc5`` the same with ±2.
  Rounding is NumPy's round-half-to-even (as the reference evaluation), so 0.5 -> 0, 1.5 -> 2,
  2.5 -> 2; sentiment labels are annotator means and often end in .5, so this matters.
* ``acc2_non0`` / ``f1_non0``: accuracy and support-weighted F1 of ``p > 0`` against ``t > 0``
  over the samples with ``t != 0`` (the number papers report as binary accuracy).
* ``acc2_has0`` / ``f1_has0``: the same with ``p >= 0`` against ``t >= 0`` over all samples.

Accuracies and F1 are fractions in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from torch import Tensor

ArrayLike = npt.ArrayLike | Tensor


def _as_vector(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim > 1 and all(s == 1 for s in arr.shape[1:]):
        arr = arr.reshape(arr.shape[0])
    if arr.ndim != 1:
        raise ValueError(f"expected {name} of shape (N,) or (N, 1), got {arr.shape}")
    return arr


def weighted_f1(pred: np.ndarray, target: np.ndarray) -> float:
    """Support-weighted mean of the per-class F1 scores of two boolean/label vectors.

    Classes are those present in ``target``; a class never predicted and never true does
    not count. A class with no predicted and no true positives scores F1 0.

    Example:
        >>> weighted_f1(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))  # doctest: +ELLIPSIS
        0.7666...
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"expected pred and target of one shape, got {pred.shape} and {target.shape}"
        )
    if target.size == 0:
        return math.nan
    total = 0.0
    for cls in np.unique(target):
        tp = float(np.sum((pred == cls) & (target == cls)))
        fp = float(np.sum((pred == cls) & (target != cls)))
        fn = float(np.sum((pred != cls) & (target == cls)))
        denom = 2 * tp + fp + fn
        f1 = 2 * tp / denom if denom > 0 else 0.0
        total += f1 * float(np.sum(target == cls))
    return total / target.size


def pearson(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation; NaN when either vector is constant (undefined)."""
    p = pred - pred.mean()
    t = target - target.mean()
    denom = math.sqrt(float(np.sum(p * p)) * float(np.sum(t * t)))
    if denom == 0.0:
        return math.nan
    return float(np.sum(p * t)) / denom


def multiclass_accuracy(pred: np.ndarray, target: np.ndarray, bound: float) -> float:
    """Accuracy after clipping both sides to ``[-bound, bound]`` and rounding half to even."""
    p = np.round(np.clip(pred, -bound, bound))
    t = np.round(np.clip(target, -bound, bound))
    return float(np.mean(p == t))


def sentiment_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """All MOSEI/MOSI metrics for score predictions (see the module docstring).

    Args:
        pred: predicted sentiment, ``(N,)`` or ``(N, 1)``; for a binary model, its logit.
        target: true sentiment scores of the same shape.

    Returns:
        ``{"mae", "corr", "acc7", "acc5", "acc2_non0", "f1_non0", "acc2_has0", "f1_has0",
        "n", "n_non0"}``.

    Raises:
        ValueError: shapes differ, are not vectors, or N = 0.

    Example:
        >>> m = sentiment_metrics([1.2, -0.4, 0.0], [1.0, -1.0, 0.0])
        >>> m["acc2_non0"], m["acc7"]
        (1.0, 0.6666666666666666)
    """
    p = _as_vector(pred, "pred")
    t = _as_vector(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"expected pred and target of one shape, got {p.shape} and {t.shape}")
    if p.size == 0:
        raise ValueError("expected at least one prediction, got none")
    non0 = t != 0
    pos_pred_non0, pos_true_non0 = p[non0] > 0, t[non0] > 0
    pos_pred_has0, pos_true_has0 = p >= 0, t >= 0
    return {
        "mae": float(np.mean(np.abs(p - t))),
        "corr": pearson(p, t),
        "acc7": multiclass_accuracy(p, t, 3.0),
        "acc5": multiclass_accuracy(p, t, 2.0),
        "acc2_non0": float(np.mean(pos_pred_non0 == pos_true_non0)) if non0.any() else math.nan,
        "f1_non0": weighted_f1(pos_pred_non0, pos_true_non0),
        "acc2_has0": float(np.mean(pos_pred_has0 == pos_true_has0)),
        "f1_has0": weighted_f1(pos_pred_has0, pos_true_has0),
        "n": int(p.size),
        "n_non0": int(non0.sum()),
    }


def binary_metrics(logits: ArrayLike, sentiment: ArrayLike) -> dict[str, float]:
    """Acc-2 / F1 (non-0 and has-0) of a binary model, from its logits and the true sentiment.

    A logit ``>= 0`` (or ``> 0`` for non-0) is a positive prediction, which is the same rule as
    for a score prediction, so this is the binary subset of :func:`sentiment_metrics`.
    """
    full = sentiment_metrics(logits, sentiment)
    keys = ("acc2_non0", "f1_non0", "acc2_has0", "f1_has0", "n", "n_non0")
    return {k: full[k] for k in keys}


__all__ = [
    "binary_metrics",
    "multiclass_accuracy",
    "pearson",
    "sentiment_metrics",
    "weighted_f1",
]
