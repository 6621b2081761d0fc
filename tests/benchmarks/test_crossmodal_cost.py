"""The cross-modal cost benchmark runs on tiny shapes and writes its table (no timing asserted);
its measured peak reads what a step makes resident."""

from __future__ import annotations

import json
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


ROWS = {  # the first cell of each row of docs/integration.md's table -> the variant
    "joint (no MCR)": "joint",
    "MCR, defaults (P = 32, 66 batches in the head call)": "mcr P=32",
    "MCR, P = 8": "mcr P=8",
    "MCR, P = 4": "mcr P=4",
    "MCR, P = 4, `MIPD(detach_reference=True)`": "mcr P=4 detached",
    "MCR at the output layers (late capture point), P = 32": "late P=32",
}


def _agrees(printed: str, value: float) -> bool:
    """``printed`` is ``value`` rounded to the digits it shows."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10**-decimals + 1e-9


def test_the_integration_page_quotes_the_committed_results() -> None:
    page = (crossmodal_cost.ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    result = json.loads(crossmodal_cost.OUT.read_text(encoding="utf-8"))
    assert result["provenance"]["dirty"] is False  # a committed measurement from a clean tree
    found = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ROWS:
            found[ROWS[cells[0]]] = cells[1:]
    assert set(found) == set(crossmodal_cost.NAMES)
    for name, (seconds, time_x, peak, peak_x, proxy_x) in found.items():
        row = result["variants"][name]
        assert _agrees(seconds, row["seconds_median"]), (name, seconds)
        assert _agrees(time_x, row["time_ratio_median"]), (name, time_x)
        assert _agrees(peak.removesuffix(" MiB"), row["peak_rss_increase_bytes_median"] / 2**20)
        assert _agrees(peak_x, row["peak_rss_ratio"]), (name, peak_x)
        assert _agrees(proxy_x, row["memory_ratio"]), (name, proxy_x)
