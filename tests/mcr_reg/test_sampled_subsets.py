"""``subsets="sampled"``: every singleton plus K larger subsets drawn per step, weighted so that
the MIPD term and its gradients are unbiased estimates of ``subsets="all"``.

Unbiasedness is checked exactly: with fixed permutations, the average over every possible draw
of K larger subsets equals the full-sum value and gradients (float64).
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import MIPD
from tests.mcr_reg.helpers import assert_grads_equal, build


def _larger(m: int) -> list[tuple[int, ...]]:
    return [c for size in range(2, m) for c in itertools.combinations(range(m), size)]


@pytest.mark.parametrize(("m", "k"), [(3, 1), (3, 2), (4, 2)])
@pytest.mark.parametrize("strategy", ["greedy", "independent", 0.5])
def test_the_average_over_every_draw_is_the_full_sum(m: int, k: int, strategy: str | float) -> None:
    model, xs, perms = build(m, seed=m + k, batch=5, draws=2)
    labels = torch.zeros(5, dtype=torch.long)
    options = {"strategy": strategy, "contrastive": False, "unimodal": False}

    def run(mcr: MCRRegularizer) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        out = mcr(model.encode(xs), labels, permutations=perms)
        out.loss.backward()
        return out.terms["mipd"], {n: p.grad.clone() for n, p in model.named_parameters()}

    full_value, full_grads = run(
        MCRRegularizer(model.head, mipd=MIPD(weight=1.0, subsets="all"), **options)
    )
    sampled = MCRRegularizer(
        model.head, mipd=MIPD(weight=1.0, subsets="sampled", sampled_subsets=k), **options
    )
    draws = list(itertools.combinations(_larger(m), k))
    weight = len(_larger(m)) / k
    values, grads = [], {n: torch.zeros_like(g) for n, g in full_grads.items()}
    singles = tuple((i,) for i in range(m))
    for draw in draws:
        sampled.mipd.subsets_of_step = lambda _m, _rng, d=draw: (singles + d, weight)  # type: ignore[method-assign, union-attr]
        value, g = run(sampled)
        values.append(value)
        for n in grads:
            grads[n] += g[n] / len(draws)
    torch.testing.assert_close(torch.stack(values).mean(), full_value, atol=1e-12, rtol=1e-10)
    assert_grads_equal(grads, full_grads)


def test_each_step_draws_anew_and_importance_stays_defined() -> None:
    model, xs, perms = build(5, seed=1, batch=5, draws=2)
    mcr = MCRRegularizer(
        model.head,
        seed=0,
        mipd=MIPD(subsets="sampled", sampled_subsets=3),
        contrastive=False,
        unimodal=False,
    )
    seen = set()
    for _ in range(6):
        subsets, weight = mcr.mipd.subsets_of_step(5, mcr._random.subsets)
        assert subsets[:5] == tuple((i,) for i in range(5)) and len(subsets) == 8
        assert weight == (2**5 - 2 - 5) / 3
        seen.add(subsets[5:])
        out = mcr(model.encode(xs), torch.zeros(5, dtype=torch.long), permutations=perms)
        assert bool(torch.isfinite(out.importance).all())
    assert len(seen) > 1


def test_draws_are_uniform_over_the_larger_subsets() -> None:
    rng = random.Random(0)
    counts = {s: 0 for s in _larger(4)}
    for _ in range(4000):
        subsets, _ = MF.sample_subsets(4, 2, rng)
        for s in subsets[4:]:
            counts[s] += 1
    expected = 4000 * 2 / len(counts)  # each of the 10 subsets in 2 of 10 places
    assert all(abs(c - expected) < 0.1 * expected for c in counts.values()), counts


def test_a_draw_at_least_as_large_as_the_population_is_every_subset() -> None:
    subsets, weight = MF.sample_subsets(3, 10, random.Random(0))
    assert subsets == MF.enumerate_subsets(3) and weight == 1.0
    subsets, weight = MF.sample_subsets(2, 1, random.Random(0))
    assert subsets == ((0,), (1,)) and weight == 1.0


def test_the_draws_resume_from_a_checkpoint() -> None:
    model, _, _ = build(5, seed=2)
    mcr = MCRRegularizer(model.head, seed=3, mipd=MIPD(subsets="sampled", sampled_subsets=2))
    mcr.mipd.subsets_of_step(5, mcr._random.subsets)
    state = mcr.state_dict()
    expected = [mcr.mipd.subsets_of_step(5, mcr._random.subsets) for _ in range(3)]
    other = MCRRegularizer(model.head, seed=99, mipd=MIPD(subsets="sampled", sampled_subsets=2))
    other.load_state_dict(state)
    assert [other.mipd.subsets_of_step(5, other._random.subsets) for _ in range(3)] == expected


def test_bad_settings_are_refused() -> None:
    head = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="expected sampled_subsets >= 1, got 0"):
        MCRRegularizer(head, mipd=MIPD(subsets="sampled", sampled_subsets=0))
    with pytest.raises(ValueError, match="expected subsets 'all', 'singletons', 'sampled'"):
        MCRRegularizer(head, mipd=MIPD(subsets="some"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected num_sampled to be an int >= 1"):
        MF.sample_subsets(4, 0, random.Random(0))
