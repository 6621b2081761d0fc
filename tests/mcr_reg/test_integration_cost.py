"""estimate_cost: one step timed with MCR and with MCR left out, the count of batches in MCR's
head call, a warning above the threshold that names the knobs, MCR left as it was. (No
assertion on the measured times themselves: those belong to benchmarks.)"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcr_reg import MCRRegularizer
from mcr_reg.cost import CostReport, estimate_cost, head_batches
from mcr_reg.terms import MIPD

B, C, D = 8, 3, 6


def _step_and_mcr(**options: object) -> tuple[object, MCRRegularizer]:
    torch.manual_seed(0)
    enc_a, enc_v, head = nn.Linear(5, D), nn.Linear(7, D), nn.Linear(2 * D, C)
    fuse = lambda a, v: head(torch.cat([a, v], -1))  # noqa: E731
    mcr = MCRRegularizer(fuse, num_classes=C, latent_dims=(D, D), seed=0, **options)  # type: ignore[arg-type]
    xa, xv, y = torch.randn(B, 5), torch.randn(B, 7), torch.arange(B) % C

    def step() -> None:
        za, zv = enc_a(xa), enc_v(xv)
        logits = fuse(za, zv)
        (F.cross_entropy(logits, y) + mcr([za, zv], y, logits).loss).backward()

    return step, mcr


def test_the_report_and_the_batches_of_the_head_call() -> None:
    step, mcr = _step_and_mcr()
    before = mcr.get_extra_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = estimate_cost(step, mcr, num_modalities=2, repeats=2, threshold=1e9)
    assert isinstance(report, CostReport) and report.head_batches == 66  # 2 + 2 x 32
    assert report.seconds_with > 0 and report.seconds_without > 0
    assert report.time_ratio == pytest.approx(report.seconds_with / report.seconds_without)
    assert "multiplies this step's time by" in str(report)
    assert "forward" not in mcr.__dict__  # MCR's own forward is back
    after = mcr.get_extra_state()
    assert all(torch.equal(after["generators"][k], v) for k, v in before["generators"].items())


def test_fewer_draws_and_subsets_shrink_the_head_call() -> None:
    _, mcr = _step_and_mcr(
        mipd=MIPD(num_permutations=4, subsets="singletons", detach_reference=True)
    )
    assert head_batches(mcr, 2) == 1 + 2 * 4
    _, sampled = _step_and_mcr(mipd=MIPD(subsets="sampled", sampled_subsets=2, num_permutations=4))
    assert head_batches(sampled, 6) == (6 + 2) * 5


def test_above_the_threshold_it_warns_with_the_knobs() -> None:
    step, mcr = _step_and_mcr()
    with pytest.warns(
        RuntimeWarning,
        match=r"above the threshold 0.0.*num_permutations=32\) -> 4 or 8.*singletons.*capture point",
    ):
        estimate_cost(step, mcr, num_modalities=2, repeats=1, threshold=0.0)
    with pytest.raises(ValueError, match="repeats >= 1"):
        estimate_cost(step, mcr, num_modalities=2, repeats=0)
