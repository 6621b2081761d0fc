"""Combining parts of the multi-view benchmark: the union equals the single run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks.harness.result_files import to_json
from benchmarks.multiview import combine, run
from benchmarks.multiview.protocol import ABLATIONS, METHODS
from benchmarks.multiview.results import BenchmarkResult, parse_result
from examples.multiview.make_fixture import write_fixture
from tests.benchmarks.multiview.runs import tiny_argv, without_setup_or_times
from tests.examples._helpers.entry_points import entry_point, run_entry_point


def _run(wheel: Path, out: Path, *extra: str) -> dict:
    run.main(tiny_argv(wheel, out, "--pairs", "fou+mor", "pix+zer", *extra))
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_two_parts_combine_to_the_single_run(tmp_path):
    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    methods = ["--methods", "joint", "ensemble", "mcr"]
    single = _run(wheel, tmp_path / "single", *methods, "--ablations", "--ablation-seeds", "1")
    part_a = _run(wheel, tmp_path / "a", "--methods", "joint", "ensemble", "--no-ablations")
    part_b = _run(
        wheel, tmp_path / "b", "--methods", "joint", "mcr", "--ablations", "--ablation-seeds", "1"
    )
    combined = combine.main(
        [str(tmp_path / "a" / "results.json"), str(tmp_path / "b" / "results.json"),
         "--out", str(tmp_path / "c")]
    )  # fmt: skip
    expected = without_setup_or_times(single)
    assert without_setup_or_times(combined) == expected
    parts = [parse_result(part_a), parse_result(part_b)]
    assert without_setup_or_times(combine.combine(parts, ["a", "b"])) == expected
    written = json.loads((tmp_path / "c" / "results.json").read_text())
    assert without_setup_or_times(written) == expected
    assert [p["file"] for p in written["setup"]["combined_from"]] == [
        str(tmp_path / "a" / "results.json"),
        str(tmp_path / "b" / "results.json"),
    ]
    assert (tmp_path / "c" / "results.md").read_text() == (
        tmp_path / "single" / "results.md"
    ).read_text()
    assert (tmp_path / "c" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def _entry(name: str, kind: str, methods: dict) -> dict:
    return {"name": name, "views": name.split("+"), "kind": kind, "methods": methods}


def _method(per_seed: list[float], trial: dict | None = None) -> dict:
    return {
        "mean": sum(per_seed) / len(per_seed),
        "std": 0.0,
        "per_seed": per_seed,
        "val_mean": 0.5,
        "trial": trial or {},
        "trials_val_mean": [0.5],
        "seconds": 1.0,
    }


def _combine(parts: list[dict], names: list[str]) -> BenchmarkResult:
    """:func:`combine.combine` of parts given as results.json contents."""
    return combine.combine([parse_result(copy.deepcopy(p)) for p in parts], names)


def _part(view_sets: list[dict], **setup: dict | bool) -> dict:
    """A part's results.json; ``setup`` replaces entries of its setup (``plan``: of its plan)."""
    plan = {"seeds": [0, 1], "grid": 2, "methods": ["joint"], "triples": False, "six": False}
    plan |= {"ablations": False, "ablation_seeds": [0], "pairs": None}
    base = {
        "budget": {"max_epochs": 60},
        "split_per_class": {"train": 100, "val": 50, "test": 50},
        "grid": {"joint": [{"lr": 1e-3}]},
        "quick": False,
    }
    changed_plan = setup.pop("plan", {})
    assert isinstance(changed_plan, dict)
    base.update(setup, plan={**plan, **changed_plan})
    return {"view_sets": view_sets, "setup": base}


def test_parts_are_merged_by_view_set_in_report_order():
    a = _part([_entry("pix+zer", "pair", {"mcr": _method([0.9, 0.8])})])
    b = _part(
        [
            _entry("fou+fac", "pair", {"joint": _method([0.7, 0.6])}),
            _entry("pix+zer", "pair", {"joint": _method([0.8, 0.8])}),
        ]
    )
    result = _combine([a, b], ["a", "b"])
    assert [vs.name for vs in result.view_sets] == ["fou+fac", "pix+zer"]
    assert list(result.view_sets[1].methods) == ["joint", "mcr"]  # table order
    paired = result.paired["mcr-joint"]
    assert paired.n == 2 and (paired.wins, paired.ties) == (1, 1)
    assert pytest.approx(paired.mean_diff) == 0.05


def test_the_same_run_in_two_parts_must_agree():
    a = _part([_entry("pix+zer", "pair", {"joint": _method([0.9, 0.8])})])
    b = copy.deepcopy(a)
    b["view_sets"][0]["methods"]["joint"]["seconds"] = 7.0  # timing may differ
    _combine([a, b], ["a", "b"])
    b["view_sets"][0]["methods"]["joint"]["per_seed"] = [0.9, 0.7]
    with pytest.raises(combine.CombineError, match=r"pix\+zer joint: a and b disagree"):
        _combine([a, b], ["a", "b"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"plan": {"seeds": [0, 1, 2]}}, "plan seeds"),
        ({"plan": {"grid": 1}}, "plan grid"),
        ({"budget": {"max_epochs": 5}}, "setup budget"),
        ({"split_per_class": {"train": 6, "val": 3, "test": 3}}, "setup split_per_class"),
        ({"quick": True}, "got a --quick run"),
    ],
)
def test_parts_of_different_protocols_are_refused(change, message):
    a = _part([_entry("pix+zer", "pair", {"joint": _method([0.9, 0.8])})])
    b = _part([_entry("fou+fac", "pair", {"joint": _method([0.9, 0.8])})], **change)
    with pytest.raises(combine.CombineError, match=message):
        _combine([a, b], ["a", "b"])


def test_one_cost_measurement_at_most():
    a = _part([_entry("pix+zer", "pair", {"joint": _method([0.9, 0.8])})])
    a["cost"] = {"batch": 64, "P": [1], "repeats": 1, "steps_per_repeat": 1, "clock": "CPU"}
    a["cost"] |= {"memory": "bytes", "negligible_ratio": 1.1, "rows": [], "p_star": {}}
    b = copy.deepcopy(a)
    with pytest.raises(combine.CombineError, match="cost measurement in at most one part"):
        _combine([a, b], ["a", "b"])
    del b["cost"]
    combined = _combine([a, b], ["a", "b"]).cost
    assert combined is not None and to_json(combined) == a["cost"]


def test_ablations_must_start_from_the_main_mcr_runs():
    a = _part([_entry("pix+zer", "pair", {"mcr": _method([0.9, 0.8])})])
    row = {v: {"mean": 0.5, "std": 0.0, "per_seed": [0.5]} for v in ABLATIONS}
    a["ablations"] = {
        "variants": ABLATIONS,
        "seeds": [0],
        "per_view_set": {"pix+zer": {"mcr": {"mean": 0.9, "std": 0.0, "per_seed": [0.9]}, **row}},
        "paired": {},
    }
    result = _combine([a], ["a"])
    assert result.ablations is not None
    assert result.ablations.paired["no_mipd-mcr"].losses == 1
    a["ablations"]["per_view_set"]["pix+zer"]["mcr"]["per_seed"] = [0.7]
    with pytest.raises(combine.CombineError, match="main mcr runs' first 1 seeds"):
        _combine([a], ["a"])


def test_coverage_names_what_the_protocol_still_lacks():
    a = _part([_entry("pix+zer", "pair", {k: _method([0.9, 0.8]) for k in METHODS})])
    gaps = combine.coverage(_combine([a], ["a"]))
    assert "1 of 15 pairs" in gaps
    assert "no all6 view set" in gaps and "no cost measurement" in gaps
    assert "no ablations on pix+zer" in gaps
    assert not any("pix+zer: no" in g for g in gaps)  # every method is there
    del a["view_sets"][0]["methods"]["agm"]
    gaps = combine.coverage(_combine([a], ["a"]))
    assert "pix+zer: no agm" in gaps


def test_bad_results_file_is_named(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match=r"results\.json: expected a results\.json"):
        combine.main([str(bad), "--out", str(tmp_path / "out")])
    bad.write_text(json.dumps({"view_sets": []}))
    with pytest.raises(combine.CombineError, match=r"expected a results\.json with 'setup'"):
        combine.main([str(bad), "--out", str(tmp_path / "out")])


def test_combine_runs_as_a_module(tmp_path):
    a = _part([_entry("pix+zer", "pair", {"joint": _method([0.9, 0.8])})])
    path = tmp_path / "a.json"
    path.write_text(json.dumps(a))
    done = run_entry_point(
        entry_point("benchmarks/multiview/combine.py"),
        str(path),
        "--out",
        str(tmp_path / "out"),
    )
    assert "not the whole protocol" in done.stdout
    assert json.loads((tmp_path / "out" / "results.json").read_text())["view_sets"][0]["name"] == (
        "pix+zer"
    )


def test_a_combination_is_not_a_part():
    a = _part([_entry("pix+zer", "pair", {"joint": _method([0.9, 0.8])})])
    combined = combine.combine([parse_result(a)], ["a"])
    with pytest.raises(combine.CombineError, match=r"single run's results\.json with a plan"):
        combine.combine([combined], ["combined"])
