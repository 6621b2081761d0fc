"""The paired statistics of the multi-view benchmark on hand-computed cases."""

from __future__ import annotations

import pytest

from benchmarks.multiview.stats import (
    paired_comparison,
    sign_test,
    spearman,
    wilcoxon_signed_rank,
)


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [
        (8, 2, 2 * (1 + 10 + 45) / 1024),  # P(X <= 2), X ~ Bin(10, 1/2), doubled
        (5, 0, 2 / 32),
        (0, 5, 2 / 32),
        (3, 3, 1.0),  # doubled tail 2 * 42/64 > 1: capped
        (6, 1, 2 * (1 + 7) / 128),
        (0, 0, 1.0),
    ],
)
def test_sign_test_matches_hand_computed_binomial_tails(wins, losses, p):
    assert sign_test(wins, losses) == pytest.approx(p)


def test_sign_test_rejects_negative_counts():
    with pytest.raises(ValueError, match="non-negative"):
        sign_test(-1, 3)


def test_wilcoxon_exact_on_a_hand_computed_case():
    # ranks of |d| = 1..5; W+ = 1+2+3+4 = 10, W- = 5. The exact null distribution of W- over
    # 2^5 = 32 sign patterns has 10 patterns with W- <= 5 ({}, {1}..{5}, {1,2}, {1,3}, {1,4},
    # {2,3}), so the two-sided p is 2 * 10 / 32 = 0.625.
    res = wilcoxon_signed_rank([0.01, 0.02, 0.03, 0.04, -0.05])
    assert res["statistic"] == pytest.approx(5.0)
    assert res["p"] == pytest.approx(0.625)
    assert res["n"] == 5


def test_wilcoxon_drops_zero_differences_and_handles_all_zero():
    with_zero = wilcoxon_signed_rank([0.0, 0.01, 0.02, 0.03, 0.04, -0.05])
    assert with_zero["p"] == pytest.approx(0.625) and with_zero["n"] == 5
    assert wilcoxon_signed_rank([0.0, 0.0])["p"] == 1.0


def test_paired_comparison_counts_and_differences():
    a = [0.90, 0.80, 0.70, 0.75, 0.60]
    b = [0.85, 0.80, 0.72, 0.70, 0.50]
    c = paired_comparison(a, b, resolution=0.01)
    # differences +0.05, 0, -0.02, +0.05, +0.10
    assert (c["wins"], c["ties"], c["losses"], c["n"]) == (3, 1, 1, 5)
    assert c["mean_diff"] == pytest.approx(0.18 / 5)
    assert c["median_diff"] == pytest.approx(0.05)
    assert c["sign_p"] == pytest.approx(2 * (1 + 4) / 16)  # 3 wins, 1 loss
    # non-zero |d| 0.02, 0.05, 0.05, 0.10 -> ranks 1, 2.5, 2.5, 4; W- = 1
    assert c["wilcoxon_statistic"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([0.1], [0.1, 0.2])


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
