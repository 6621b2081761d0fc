"""RunStore: finished runs kept on disk by a digest of their spec."""

from __future__ import annotations

import json

from benchmarks.harness.store import RunStore, spec_digest


def test_a_stored_result_comes_back_for_the_same_spec_only(tmp_path):
    store = RunStore(str(tmp_path / "runs"))
    spec = {"method": "mcr", "trial": {"mipd_weight": 0.1}, "seed": 0}
    assert store.load(spec) is None and store.count_done([spec]) == 0 and store.note([spec]) == ""
    store.save(spec, {"test": 0.5, "pred": [1, 2]})
    assert store.load(dict(reversed(spec.items()))) == {"test": 0.5, "pred": [1, 2]}
    assert store.load({**spec, "seed": 1}) is None
    assert store.count_done([spec, {**spec, "seed": 1}]) == 1
    assert store.note([spec]) == f", 1 of them finished before (kept in {tmp_path / 'runs'})"
    assert RunStore(store.folder, reuse=False).load(spec) is None
    assert RunStore(store.folder, reuse=False).note([spec]) == ""


def test_tuples_in_a_spec_match_their_stored_lists(tmp_path):
    store = RunStore(str(tmp_path))
    spec = {"views": ("fou", "mor"), "sizes": [6, 3, 3]}
    store.save(spec, {"test": 1.0})
    assert store.load(spec) == {"test": 1.0}


def test_unreadable_or_foreign_files_are_trained_again(tmp_path):
    store = RunStore(str(tmp_path))
    spec = {"seed": 0}
    store.path(spec).write_text("{truncated")
    assert store.load(spec) is None
    store.path(spec).write_text(json.dumps({"spec": {"seed": 1}, "result": {}}))
    assert store.load(spec) is None  # a file whose spec differs (a collision) is not used
    assert spec_digest({"a": 1, "b": 2}) == spec_digest({"b": 2, "a": 1})


def test_result_trains_once_and_then_loads(tmp_path):
    store = RunStore(str(tmp_path))
    calls: list[int] = []

    def train() -> dict:
        calls.append(1)
        return {"test": 0.25}

    assert store.result({"seed": 0}, train) == {"test": 0.25}
    assert store.result({"seed": 0}, train) == {"test": 0.25}
    assert len(calls) == 1
    assert RunStore(str(tmp_path), reuse=False).result({"seed": 0}, train) == {"test": 0.25}
    assert len(calls) == 2
