"""Diagnostics and remedies of benchmarks/ensemble_gap/remedies.py: values against plain
references, properties, and the error messages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks.ensemble_gap import remedies as gap


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_shares_add_up_to_the_heads_logits():
    g = _gen()
    head = torch.nn.Linear(7, 4)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
    shares = gap.concat_head_shares(head.weight, head.bias, [z1, z2])
    assert [s.shape for s in shares] == [(5, 4), (5, 4)]
    torch.testing.assert_close(shares[0] + shares[1], head(torch.cat([z1, z2], 1)))


def test_shares_reject_widths_that_do_not_match_the_head():
    head = torch.nn.Linear(7, 4)
    with pytest.raises(ValueError, match="widths add up to 7"):
        gap.concat_head_shares(head.weight, head.bias, [torch.zeros(5, 3), torch.zeros(5, 3)])
    with pytest.raises(ValueError, match="one batch size"):
        gap.concat_head_shares(head.weight, head.bias, [torch.zeros(5, 3), torch.zeros(4, 4)])
    with pytest.raises(ValueError, match=r"expected weight \(C, D\) and bias \(C,\)"):
        gap.concat_head_shares(head.weight, torch.zeros(3), [torch.zeros(5, 7)])


def test_reliance_is_a_share_of_the_spread_and_ignores_constant_shifts():
    g = _gen(1)
    a, b = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    r = gap.spread_reliance([a, b])
    assert float(r.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(gap.spread_reliance([a + 5.0, b - 2.0]), r)
    torch.testing.assert_close(gap.spread_reliance([b, a]), r.flip(0))
    # a part that never moves the prediction has no reliance
    assert gap.spread_reliance([a, torch.ones(6, 3)]).tolist() == [1.0, 0.0]


def test_error_overlap_counts_each_kind_of_point():
    a = torch.tensor([True, True, False, False, False])
    b = torch.tensor([True, False, True, False, False])
    assert gap.error_overlap(a, b) == {
        "n": 5,
        "both_wrong": 2,
        "only_a_wrong": 1,
        "only_b_wrong": 1,
    }
    with pytest.raises(ValueError, match="one length"):
        gap.error_overlap(a, b[:3])


def _ece_reference(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> float:
    """ECE written plainly, row by row."""
    total = 0.0
    rows = probs.tolist()
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        members = [
            i
            for i, p in enumerate(rows)
            if (max(p) > lo or (k == 0 and max(p) >= 0)) and max(p) <= hi
        ]
        if not members:
            continue
        conf = sum(max(rows[i]) for i in members) / len(members)
        acc = sum(rows[i].index(max(rows[i])) == int(labels[i]) for i in members) / len(members)
        total += len(members) / len(rows) * abs(acc - conf)
    return total


def test_ece_matches_a_plain_reference():
    g = _gen(2)
    probs = (3 * torch.randn(200, 4, generator=g)).softmax(-1)
    labels = torch.randint(0, 4, (200,), generator=g)
    assert gap.expected_calibration_error(probs, labels, bins=15) == pytest.approx(
        _ece_reference(probs, labels, 15), abs=1e-6
    )


def test_a_calibrated_predictor_has_small_ece_and_an_overconfident_one_large():
    g = _gen(3)
    base = torch.randn(20000, 3, generator=g)
    labels = torch.multinomial(base.softmax(-1), 1, generator=g).squeeze(1)
    calibrated = gap.expected_calibration_error(base.softmax(-1), labels)
    overconfident = gap.expected_calibration_error((4 * base).softmax(-1), labels)
    assert calibrated < 0.02 < 0.1 < overconfident


def test_nll_matches_torch():
    g = _gen(4)
    logits = torch.randn(9, 5, generator=g)
    labels = torch.randint(0, 5, (9,), generator=g)
    assert gap.negative_log_likelihood(logits.softmax(-1), labels) == pytest.approx(
        float(F.cross_entropy(logits, labels)), rel=1e-5
    )


def test_labels_out_of_range_or_of_the_wrong_length_are_refused():
    probs = torch.full((3, 2), 0.5)
    with pytest.raises(ValueError, match=r"labels in \[0, 1\]"):
        gap.accuracy(probs, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\)"):
        gap.expected_calibration_error(probs, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, C\) logits"):
        gap.accuracy(torch.zeros(3), torch.tensor([0, 1, 0]))


def test_fused_and_unimodal_heads_is_the_equal_weight_probability_mean():
    g = _gen(5)
    f, h1, h2 = (torch.randn(4, 3, generator=g) for _ in range(3))
    expected = (f.softmax(-1) + h1.softmax(-1) + h2.softmax(-1)) / 3
    torch.testing.assert_close(gap.fused_and_unimodal_heads(f, [h1, h2]), expected)
    with pytest.raises(ValueError, match="at least one unimodal head"):
        gap.fused_and_unimodal_heads(f, [])
    with pytest.raises(ValueError, match="of one shape"):
        gap.fused_and_unimodal_heads(f, [torch.zeros(4, 2)])


def test_the_refitted_head_learns_from_the_modality_that_holds_the_label():
    g = _gen(6)
    labels = torch.randint(0, 3, (300,), generator=g)
    informative = F.one_hot(labels, 3).float() * 4 + torch.randn(300, 3, generator=g)
    noise = torch.randn(300, 5, generator=g)
    logits = gap.refit_fusion_head(
        [informative[:200], noise[:200]],
        labels[:200],
        [informative[200:], noise[200:]],
        num_classes=3,
    )
    assert logits.shape == (100, 3)
    assert gap.accuracy(logits, labels[200:]) > 0.95
    with pytest.raises(ValueError, match="same modalities"):
        gap.refit_fusion_head([informative], labels, [informative, noise], num_classes=3)


def test_fit_temperature_finds_the_scale_of_overconfident_logits():
    g = _gen(7)
    base = torch.randn(20000, 4, generator=g)
    labels = torch.multinomial(base.softmax(-1), 1, generator=g).squeeze(1)
    assert gap.fit_temperature(3 * base, labels) == pytest.approx(3.0, rel=0.05)
    assert gap.fit_temperature(base, labels) == pytest.approx(1.0, rel=0.05)


def test_the_temperature_scaled_combination_of_one_predictor_keeps_its_prediction():
    g = _gen(8)
    val, test = torch.randn(50, 3, generator=g), torch.randn(20, 3, generator=g)
    labels = torch.randint(0, 3, (50,), generator=g)
    probs = gap.temperature_scaled_combination([val], labels, [test])
    assert torch.equal(probs.argmax(-1), test.argmax(-1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(20))
    with pytest.raises(ValueError, match="same predictors"):
        gap.temperature_scaled_combination([val, val], labels, [test])
