"""The cross-modal cost benchmark runs on tiny shapes and writes its table (no timing asserted);
its measured peak reads what a step makes resident."""

from __future__ import annotations

import sys

import pytest
import torch

from benchmarks import crossmodal_cost


@pytest.mark.slow  # a benchmark runner: six processes import torch (about 30 s)
def test_the_quick_run_measures_every_variant() -> None:
    result = crossmodal_cost.run(crossmodal_cost.QUICK, rounds=1, use_lock=False, peak_repeats=1)
    rows = result["variants"]
    assert list(rows) == crossmodal_cost.NAMES
    assert rows["joint"]["memory_ratio"] == 1.0
    # MCR's stacked head call saves more for backward than the plain step, fewer draws less
    assert (
        rows["mcr P=32"]["saved_bytes"]
        > rows["mcr P=4"]["saved_bytes"]
        > rows["joint"]["saved_bytes"]
    )
    for row in rows.values():  # one fresh process per variant, each with its own baseline
        (repeat,) = row["peak_rss_repeats"]
        assert repeat["baseline_bytes"] > 0 and repeat["peak_bytes"] >= repeat["baseline_bytes"]
        assert row["peak_rss_increase_bytes_median"] == repeat["increase_bytes"]
    assert set(result["memory_columns"]) == {"saved_bytes", "peak_rss_increase_bytes_median"}
    table = crossmodal_cost.table(result)
    assert "| mcr P=8 |" in table and "measured CPU peak increase" in table and "(proxy)" in table


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_peak_counts_what_a_step_makes_resident_and_not_what_came_before() -> None:
    """64 MiB written and freed inside the step is counted; 64 MiB held from before is not."""
    held = torch.ones(16 * 2**20)  # 64 MiB, resident before the measurement

    def step() -> None:
        inside = torch.ones(16 * 2**20)
        assert float(inside[-1]) == 1.0

    found = crossmodal_cost.peak_resident_increase(step, steps=1)
    assert found["source"].startswith("VmHWM")
    assert 60 * 2**20 <= found["increase_bytes"] < 100 * 2**20
    assert found["baseline_bytes"] > 64 * 2**20 and float(held[0]) == 1.0
