"""Metrics against hand-computed values."""

import pytest
import torch

from examples.common.metrics import (
    ErrorMatrix,
    accuracy,
    classification_metrics,
    confusion_matrix,
    error_matrix,
    macro_f1,
)


def test_accuracy_hand_computed():
    assert accuracy(torch.tensor([0, 1, 2, 2, 1]), torch.tensor([0, 1, 1, 2, 0])) == pytest.approx(
        3 / 5
    )


def test_confusion_matrix_rows_are_targets():
    cm = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_macro_f1_hand_computed():
    pred = torch.tensor([0, 1, 1, 1, 1])
    target = torch.tensor([0, 0, 1, 1, 2])
    # class 0: tp 1, fp 0, fn 1 -> F1 2/3; class 1: tp 2, fp 2, fn 0 -> F1 2/3;
    # class 2: tp 0 -> F1 0; class 3 never occurs -> left out. Mean over 3 classes = 4/9.
    assert macro_f1(pred, target, 4) == pytest.approx(4 / 9)


def test_macro_f1_ignores_classes_absent_everywhere():
    pred = torch.tensor([0, 1])
    target = torch.tensor([0, 1])
    assert macro_f1(pred, target, 10) == pytest.approx(1.0)


def test_macro_f1_matches_plain_reference():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (200,), generator=g)
    target = torch.randint(0, 5, (200,), generator=g)
    scores = []
    for c in range(5):
        tp = int(((pred == c) & (target == c)).sum())
        fp = int(((pred == c) & (target != c)).sum())
        fn = int(((pred != c) & (target == c)).sum())
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    assert macro_f1(pred, target, 5) == pytest.approx(sum(scores) / 5)


def test_error_matrix_two_modalities_hand_computed():
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    mm = torch.tensor([0, 1, 0, 0, 4, 1])
    u1 = torch.tensor([0, 0, 2, 1, 4, 0])
    u2 = torch.tensor([0, 1, 1, 1, 0, 0])
    em = error_matrix(mm, [u1, u2], y)
    # sample: n_uni_correct, mm correct -> (2,T) (1,T) (1,F) (0,F) (1,T) (2,F)
    assert em.counts.tolist() == [[0, 2, 1], [1, 1, 1]]
    assert em.column_accuracy() == [0.0, pytest.approx(2 / 3), 0.5]
    d = em.as_dict()
    assert d["counts"] == [[0, 2, 1], [1, 1, 1]]
    assert sum(map(sum, d["fractions"])) == pytest.approx(1.0)


def test_error_matrix_three_modalities_columns():
    y = torch.tensor([1, 1, 1, 1])
    uni = [torch.tensor([1, 1, 1, 0]), torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 0, 0])]
    em = error_matrix(torch.tensor([1, 1, 1, 1]), uni, y)
    assert em.counts.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0]]
    assert ErrorMatrix(em.counts).num_modalities == 3


def test_empty_column_accuracy_is_none():
    em = error_matrix(torch.tensor([0]), [torch.tensor([0]), torch.tensor([0])], torch.tensor([0]))
    assert em.column_accuracy() == [None, None, 1.0]


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (torch.tensor([0, 1]), torch.tensor([0]), "same length"),
        (torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), "1-D"),
        (torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), "at least one"),
    ],
)
def test_bad_shapes_raise(pred, target, match):
    with pytest.raises(ValueError, match=match):
        accuracy(pred, target)


def test_float_predictions_raise_type_error():
    with pytest.raises(TypeError, match="integer class indices"):
        accuracy(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))


def test_out_of_range_class_raises():
    with pytest.raises(ValueError, match=r"targets in \[0, 2\)"):
        macro_f1(torch.tensor([0, 1]), torch.tensor([0, 2]), 2)


def test_error_matrix_names_bad_unimodal():
    with pytest.raises(ValueError, match="unimodal prediction 1"):
        error_matrix(
            torch.tensor([0, 1]), [torch.tensor([0, 1]), torch.tensor([0])], torch.tensor([0, 1])
        )


def test_classification_metrics_keys():
    m = classification_metrics(torch.tensor([0, 1]), torch.tensor([0, 1]), 2)
    assert m == {"accuracy": 1.0, "macro_f1": 1.0}
