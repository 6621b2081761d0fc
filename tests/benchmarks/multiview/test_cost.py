"""The cost measurement of the multi-view benchmark: saved-tensor bytes and the table schema."""

from __future__ import annotations

import pytest
import torch

from benchmarks.multiview import cost


def test_saved_tensor_bytes_on_hand_computed_graphs():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(3, 2, requires_grad=True)
    # mm saves both operands: 12 + 6 floats of 4 bytes
    assert cost.saved_tensor_bytes(lambda: (x @ w).sum()) == 72
    # relu saves its (4, 2) output as well
    assert cost.saved_tensor_bytes(lambda: (x @ w).relu().sum()) == 72 + 32
    # x * x saves x twice: one storage, counted once
    assert cost.saved_tensor_bytes(lambda: (x * x).sum()) == 48
    with torch.no_grad():
        assert cost.saved_tensor_bytes(lambda: (x @ w).sum()) == 0


@pytest.mark.slow
def test_measure_cost_schema_and_markdown(tmp_path):
    lines: list[str] = []
    res = cost.measure_cost(ps=(1, 2), repeats=1, steps=1, batch=8, log=lines.append)
    assert {(r.M, r.subsets, r.P) for r in res.rows} == {
        (m, s, p) for m, s in cost.SETTINGS for p in (1, 2)
    }
    # one line when the run starts and one per finished setting: progress in a log file
    assert len(lines) == 1 + len(cost.SETTINGS) and lines[0].startswith("cost run:")
    assert lines[-1].startswith("cost [5/5") and "M=6 singletons" in lines[-1]
    for r in res.rows:
        assert r.time_ratio.median > 0 and r.memory_ratio > 1.0  # MCR saves more
    six = {r.subsets: r.saved_bytes for r in res.rows if (r.M, r.P) == (6, 2)}
    assert six["all"] > six["singletons"]  # 62 subsets against 6
    assert set(res.p_star) == {f"M={m} {s}" for m, s in cost.SETTINGS}
    text = cost.markdown(res)
    assert "| 6 | all | 2 |" in text
    cost.plot_cost(res, tmp_path / "cost.png")
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"
