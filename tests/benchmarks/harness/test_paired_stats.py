"""The shared tie and zero rule of the paired tests, on cases computed by hand."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.harness.paired_stats import (
    EXACT_MAX_N,
    average_ranks,
    exact_signed_rank_p,
    item_resolution,
    normal_signed_rank_p,
    paired_comparison,
    rounded_differences,
    sign_test,
    verdict,
    wilcoxon_p,
    wilcoxon_signed_rank,
)

# Accuracies over 500 test items, stored as float32 (as the runners store them): the same
# count of items can come back as slightly different floats.
F32_0_970 = 0.9700000286102295
F32_0_968 = 0.9679999947547913
F32_0_972 = 0.972000002861023
F32_0_974 = 0.9739999771118164


def test_resolution_is_one_test_item():
    assert item_resolution(500) == pytest.approx(0.002)
    assert item_resolution(1000, percent=True) == pytest.approx(0.1)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive number of test items"):
            item_resolution(bad)


def test_rounding_makes_float32_noise_into_ties():
    a = [F32_0_970, F32_0_972, F32_0_974]
    b = [F32_0_968, F32_0_970, F32_0_972]
    raw = [x - y for x, y in zip(a, b)]
    assert len(set(raw)) > 1  # one item each, but not the same float
    assert rounded_differences(a, b, 0.002) == [0.002, 0.002, 0.002]
    with pytest.raises(ValueError, match="positive resolution"):
        rounded_differences(a, b, 0.0)


def test_average_ranks():
    assert average_ranks([3, 1, 3, 2]) == [3.5, 1.0, 3.5, 2.0]
    assert average_ranks([1, 1, 1, 2]) == [2.0, 2.0, 2.0, 4.0]


def test_wilcoxon_exact_with_ties_and_a_zero_by_hand():
    # differences in test items: +1, +1, -1, +2, 0. The zero is dropped; |d| = 1, 1, 1, 2
    # take ranks 2, 2, 2, 4; W+ = 2 + 2 + 4 = 8, W- = 2. Over the 16 sign patterns the sum
    # of the positive ranks takes 0 (1 way), 2 (3), 4 (3 + 1), 6 (1 + 3), 8 (3), 10 (1),
    # so P(W+ >= 8) = 4/16, P(W+ <= 8) = 15/16 and the two-sided p is 2 * 4/16 = 0.5.
    step = 0.002
    d = [F32_0_970 - F32_0_968, F32_0_972 - F32_0_970, F32_0_968 - F32_0_970, 0.004, 0.0]
    res = wilcoxon_signed_rank(d, resolution=step)
    assert res == {"statistic": 2.0, "p": pytest.approx(0.5), "n": 4, "method": "exact"}
    assert wilcoxon_p(d, step) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "items",
    [[1, 1, -1, 2], [1, -2, 2, 3, -3, 3, 1], [2, 2, 2, -2, 1, -1, 4, 4], [1, 1, 1, 1, -1]],
)
def test_exact_p_equals_a_brute_force_enumeration(items):
    ranks = average_ranks([abs(x) for x in items])
    w_plus = sum(r for r, x in zip(ranks, items) if x > 0)
    sums = [
        sum(r for r, s in zip(ranks, signs) if s)
        for signs in itertools.product((0, 1), repeat=len(items))
    ]
    lower = sum(s <= w_plus + 1e-12 for s in sums) / len(sums)
    upper = sum(s >= w_plus - 1e-12 for s in sums) / len(sums)
    expected = min(1.0, 2 * min(lower, upper))
    doubled = [round(2 * r) for r in ranks]
    assert exact_signed_rank_p(doubled, round(2 * w_plus)) == pytest.approx(expected)
    assert wilcoxon_signed_rank([float(x) for x in items], 1.0)["p"] == pytest.approx(expected)


def test_without_ties_the_exact_p_is_the_classical_one():
    # ranks 1..5, W- = 5: 10 of the 32 patterns have W- <= 5, p = 2 * 10/32
    res = wilcoxon_signed_rank([0.01, 0.02, 0.03, 0.04, -0.05], resolution=0.01)
    assert (res["statistic"], res["p"], res["n"]) == (5.0, pytest.approx(0.625), 5)


def test_all_zero_differences_give_p_one():
    assert wilcoxon_signed_rank([0.0, 1e-8, -1e-8], resolution=0.002) == {
        "statistic": None,
        "p": 1.0,
        "n": 0,
        "method": "exact",
    }


def test_large_samples_use_the_tie_corrected_normal_approximation():
    items = [1, -1, 2, 3, -2, 4, 5, 1] * (EXACT_MAX_N // 8 + 1)
    res = wilcoxon_signed_rank([float(x) for x in items], resolution=1.0)
    assert res["method"] == "normal" and res["n"] > EXACT_MAX_N
    # by hand for a small case: ranks 2, 2, 2 (three tied |d|) and W+ = 6 (all positive):
    # mean 3, variance 3*4*7/24 - (27 - 3)/48 = 3.5 - 0.5 = 3, z = 3 / sqrt(3)
    from math import erfc, sqrt

    assert normal_signed_rank_p([2.0, 2.0, 2.0], 6.0) == pytest.approx(erfc(sqrt(3) / sqrt(2)))


def test_paired_comparison_rounds_before_counting_and_testing():
    a = [F32_0_970, F32_0_972, F32_0_968, 0.978, 0.9]
    b = [F32_0_968, F32_0_970, F32_0_970, 0.974, 0.9]
    c = paired_comparison(a, b, resolution=0.002)
    # items: +1, +1, -1, +2, 0 (the hand-computed case above)
    assert (c["wins"], c["ties"], c["losses"], c["n"]) == (3, 1, 1, 5)
    assert c["mean_diff"] == pytest.approx(0.006 / 5)
    assert c["median_diff"] == pytest.approx(0.002)
    assert c["sign_p"] == pytest.approx(sign_test(3, 1)) == pytest.approx(2 * 5 / 16)
    assert c["wilcoxon_p"] == pytest.approx(0.5)
    assert c["wilcoxon_statistic"] == 2.0
    assert c["resolution"] == 0.002
    assert verdict(c, 0.05) == "no detectable difference"
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([0.1], [0.1, 0.2], resolution=0.1)


def test_verdict_follows_sign_of_the_mean_and_the_p_value():
    win = paired_comparison([0.5 + 0.01 * i for i in range(1, 11)], [0.5] * 10, 0.01)
    assert win["wilcoxon_p"] == pytest.approx(2 / 1024)
    assert verdict(win, 0.05) == "win"
    loss = paired_comparison([0.5] * 10, [0.5 + 0.01 * i for i in range(1, 11)], 0.01)
    assert verdict(loss, 0.05) == "loss"
