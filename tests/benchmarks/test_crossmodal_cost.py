"""The cross-modal cost benchmark runs on tiny shapes and writes its table (no timing asserted)."""

from __future__ import annotations

from benchmarks import crossmodal_cost


def test_the_quick_run_measures_every_variant() -> None:
    result = crossmodal_cost.run(crossmodal_cost.QUICK, rounds=1, use_lock=False)
    rows = result["variants"]
    assert list(rows) == crossmodal_cost.NAMES
    assert rows["joint"]["memory_ratio"] == 1.0
    # MCR's stacked head call saves more for backward than the plain step, fewer draws less
    assert (
        rows["mcr P=32"]["saved_bytes"]
        > rows["mcr P=4"]["saved_bytes"]
        > rows["joint"]["saved_bytes"]
    )
    assert "provenance" in result and "| mcr P=8 |" in crossmodal_cost.table(result)
