"""benchmarks.harness.sweep: results keyed as the jobs, stored runs loaded instead of trained,
typed results read back equal, the per-group lines and the per-run callback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from benchmarks.harness.store import RunStore, TensorStore
from benchmarks.harness.sweep import run_sweep
from benchmarks.harness.tuning import best_trial


@dataclass
class Score:
    value: float
    note: str | None = None


def test_stored_runs_are_loaded_and_typed_results_read_back(tmp_path: Path) -> None:
    trained: list[int] = []

    def train(job: int) -> Score:
        trained.append(job)
        return Score(job / 3)

    jobs = {("a", i): i for i in range(4)}
    store = RunStore(str(tmp_path))
    spec = lambda job: {"job": job}  # noqa: E731
    lines: list[str] = []
    first = run_sweep(
        train, jobs, store=store, spec=spec, result_type=Score, progress=False,
        group=lambda key: key[0], line=lambda g, ks, rs: f"{g}: {len(ks)}", log=lines.append,
    )  # fmt: skip
    assert first == {k: Score(i / 3) for k, i in jobs.items()} and trained == [0, 1, 2, 3]
    assert lines == ["4 training runs, 1 worker(s)"]
    seen: list[tuple[str, int]] = []
    again = run_sweep(
        train, jobs, store=store, spec=spec, result_type=Score, progress=False,
        on_result=lambda key, result: seen.append(key), log=lines.append,
    )  # fmt: skip
    assert again == first and trained == [0, 1, 2, 3]  # nothing trained twice
    assert sorted(seen) == sorted(jobs)
    assert lines[-1].startswith("4 training runs, 1 worker(s), 4 of them finished before")


def test_a_store_needs_the_spec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected spec="):
        run_sweep(lambda j: j, {0: 0}, store=RunStore(str(tmp_path)), progress=False)


def test_tensor_store_names_files_by_label_and_digest(tmp_path: Path) -> None:
    store = TensorStore(str(tmp_path), label=lambda s: f"run{s['seed']}")
    calls: list[int] = []

    def train() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"logits": torch.arange(6.0).reshape(2, 3)}

    first = store.result({"seed": 3}, train)
    (path,) = tmp_path.glob("*.pt")
    assert path.name.startswith("run3-") and path == store.path({"seed": 3})
    second = store.result({"seed": 3}, train)
    assert torch.equal(first["logits"], second["logits"]) and len(calls) == 1
    assert "1 of them finished before" in store.note([{"seed": 3}, {"seed": 4}])


def test_best_trial_takes_the_earlier_of_equal_means() -> None:
    assert best_trial([0.5, 0.7, 0.7]) == 1
    assert best_trial([0.9]) == 0
    with pytest.raises(ValueError, match="at least one trial"):
        best_trial([])
