"""MOSEI/MOSI metrics against values computed by hand (worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from examples.mosei.metrics import binary_metrics, sentiment_metrics, weighted_f1

# Six samples. Rounded (half to even) after clipping to ±3:
#   pred   1.6 -> 2, -0.2 -> 0, 0.3 -> 0, -0.1 -> 0, -2.2 -> -2, 2.4 -> 2
#   target 2.4 -> 2, -1.0 -> -1, 0.0 -> 0, 0.5 -> 0, -2.6 -> -3, 1.5 -> 2
#   equal: yes, no, yes, yes, no, yes -> Acc-7 = 4/6
# Clipped to ±2 first: pred -2.2 -> -2, target -2.6 -> -2 now agree -> Acc-5 = 5/6
# |p - t| = 0.8, 0.8, 0.3, 0.6, 0.4, 0.9 -> MAE = 3.8 / 6
PRED = [1.6, -0.2, 0.3, -0.1, -2.2, 2.4]
TARGET = [2.4, -1.0, 0.0, 0.5, -2.6, 1.5]


def test_regression_metrics_by_hand() -> None:
    m = sentiment_metrics(PRED, TARGET)
    assert m["mae"] == pytest.approx(3.8 / 6)
    assert m["acc7"] == pytest.approx(4 / 6)
    assert m["acc5"] == pytest.approx(5 / 6)
    assert m["n"] == 6 and m["n_non0"] == 5


def test_binary_non0_by_hand() -> None:
    # target 0.0 (index 2) is excluded. p > 0: T F F F T ; t > 0: T F T F T -> 4/5 correct.
    # class T: tp 2, fp 0, fn 1 -> F1 4/5, support 3; class F: tp 2, fp 1, fn 0 -> F1 4/5,
    # support 2 -> weighted F1 0.8.
    m = sentiment_metrics(PRED, TARGET)
    assert m["acc2_non0"] == pytest.approx(0.8)
    assert m["f1_non0"] == pytest.approx(0.8)


def test_binary_has0_by_hand() -> None:
    # p >= 0: T F T F F T ; t >= 0: T F T T F T -> 5/6 correct.
    # class T: tp 3, fp 0, fn 1 -> 6/7, support 4; class F: tp 2, fp 1, fn 0 -> 4/5, support 2.
    m = sentiment_metrics(PRED, TARGET)
    assert m["acc2_has0"] == pytest.approx(5 / 6)
    assert m["f1_has0"] == pytest.approx((4 * 6 / 7 + 2 * 4 / 5) / 6)


def test_correlation_matches_plain_formula() -> None:
    p, t = np.array(PRED), np.array(TARGET)
    cov = sum((a - p.mean()) * (b - t.mean()) for a, b in zip(p, t, strict=True))
    var_p = sum((a - p.mean()) ** 2 for a in p)
    var_t = sum((b - t.mean()) ** 2 for b in t)
    assert sentiment_metrics(PRED, TARGET)["corr"] == pytest.approx(cov / math.sqrt(var_p * var_t))


def test_rounding_is_half_to_even() -> None:
    # 2.5 -> 2 and -0.5 -> 0 (half to even); half-away-from-zero would give 3 and -1.
    m = sentiment_metrics([2.0, 0.4], [2.5, -0.5])
    assert m["acc7"] == 1.0
    assert m["acc5"] == 1.0


def test_clipping_makes_out_of_range_predictions_count() -> None:
    m = sentiment_metrics([5.0, -7.0], [3.0, -3.0])
    assert m["acc7"] == 1.0
    assert m["mae"] == pytest.approx(3.0)


def test_accepts_tensors_and_column_vectors() -> None:
    a = sentiment_metrics(torch.tensor(PRED)[:, None], torch.tensor(TARGET)[:, None, None])
    b = sentiment_metrics(PRED, TARGET)
    assert a == pytest.approx(b)


def test_constant_prediction_has_undefined_corr() -> None:
    assert math.isnan(sentiment_metrics([1.0, 1.0, 1.0], [0.5, -1.0, 2.0])["corr"])


def test_binary_metrics_use_logit_sign() -> None:
    logits = [3.0, -0.5, 0.2, -4.0]
    sentiment = [1.0, -2.0, 0.0, 0.5]
    m = binary_metrics(logits, sentiment)
    # non-0 drops index 2: (T, F, F) vs (T, F, T) -> 2/3; has-0: (T F T F) vs (T F T T) -> 3/4
    assert m["acc2_non0"] == pytest.approx(2 / 3)
    assert m["acc2_has0"] == pytest.approx(3 / 4)
    assert set(m) == {"acc2_non0", "f1_non0", "acc2_has0", "f1_has0", "n", "n_non0"}


def test_weighted_f1_ignores_classes_only_predicted() -> None:
    # target all 1: class 1 tp 2, fp 0, fn 1 -> 0.8; class 0 has no support -> weight 0.
    assert weighted_f1(np.array([1, 1, 0]), np.array([1, 1, 1])) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        ([1.0, 2.0], [1.0], "one shape"),
        (np.zeros((2, 2)), np.zeros((2, 2)), r"shape \(N,\)"),
        ([], [], "at least one"),
    ],
)
def test_bad_shapes_raise(pred: object, target: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sentiment_metrics(pred, target)  # type: ignore[arg-type]
