"""What results.md and the plots of the multi-view runner tell a reader who has nothing else:
the protocol and seeds, the cost rule in words, no duplicate M = 2 series."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks.harness.result_files import to_json
from benchmarks.multiview import cost, report, run
from benchmarks.multiview.results import (
    ABLATION_RENAMES,
    SCHEMA_VERSION,
    CostResult,
    CostRow,
    TimeRatio,
    load_results,
)
from tests.benchmarks.multiview.runs import TINY_OPTIONS

ROOT = Path(__file__).resolve().parents[3]
QUICK = load_results(ROOT / "docs/examples/multiview-quick-results.json")
FULL = load_results(ROOT / "docs/examples/multiview-full-results.json")


def test_quick_report_says_it_is_the_quick_run_with_its_seeds_and_what_it_is_not():
    head = report.markdown(QUICK).split("## Test accuracy")[0]
    assert head.startswith("# UCI Multiple Features multi-view benchmark: quick run (`--quick`)")
    assert "15 pairs (15 in all)" in head
    assert "Seeds: 0, 1 (2 per view set and method)" in head
    assert "1 tuning trial each" in head
    assert "not the evidence" in head and "registered protocol" in head


def test_full_report_names_the_registered_protocol_and_no_quick_caveat():
    head = report.markdown(FULL).split("## Test accuracy")[0]
    assert head.startswith(
        "# UCI Multiple Features multi-view benchmark: the registered protocol's settings"
    )
    assert "15 pairs, 3 triples, 1 six-view set (19 in all)" in head
    assert "Seeds: 0-4 (5 per view set and method)" in head
    assert "not the evidence" not in head


@pytest.mark.parametrize(
    "path", sorted((ROOT / "docs/examples").glob("multiview-*results.json")), ids=lambda p: p.name
)
def test_every_committed_result_loads_in_the_current_names_and_renders(path):
    raw = json.loads(path.read_text())
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION
    result = to_json(loaded)  # written back, it is the file in the current names
    if "ablations" in raw:
        renamed = [ABLATION_RENAMES.get(v, v) for v in raw["ablations"]["variants"]]
        assert list(result["ablations"]["variants"]) == renamed
        assert not set(ABLATION_RENAMES) & set(result["ablations"]["variants"])
        for name, row in result["ablations"]["per_view_set"].items():
            old_row = raw["ablations"]["per_view_set"][name]
            assert [row[ABLATION_RENAMES.get(v, v)] for v in old_row] == list(old_row.values())
        assert {f"{v}-mcr" for v in renamed} == set(result["ablations"]["paired"])
    assert result["view_sets"] == raw["view_sets"]  # the numbers are untouched
    assert {k: v for k, v in result.items() if k not in ("ablations", "setup")} == {
        k: v for k, v in raw.items() if k not in ("ablations", "setup")
    } | {"schema_version": SCHEMA_VERSION}
    assert report.markdown(loaded).startswith("# UCI Multiple Features multi-view benchmark")


def test_a_result_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**to_json(QUICK), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ValueError, match=f"schema version <= {SCHEMA_VERSION}, got"):
        load_results(path)


def test_the_report_command_rewrites_a_result_in_the_current_version(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot_accuracy", lambda result, path: path.write_bytes(b"png"))
    monkeypatch.setattr(report, "plot_gain", lambda result, path: path.write_bytes(b"png"))
    monkeypatch.setattr(cost, "plot_cost", lambda result, path: path.write_bytes(b"png"))
    report.main([str(ROOT / "docs/examples/multiview-six-results.json"), "--out", str(tmp_path)])
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == json.loads(json.dumps(to_json(load_results(tmp_path / "results.json"))))
    assert written["schema_version"] == SCHEMA_VERSION
    assert (tmp_path / "results.md").read_text() == report.markdown(
        load_results(tmp_path / "results.json")
    )


def test_seeds_come_from_the_results_when_the_setup_is_missing():
    bare = dataclasses.replace(QUICK, setup=None)
    assert bare.seeds() == [0, 1]
    assert "quick run" not in report.markdown(bare).split("\n")[0]


def _cost(rows: list[CostRow], p_star: dict[str, int | None]) -> CostResult:
    return CostResult(
        batch=64,
        P=sorted({r.P for r in rows}),
        repeats=3,
        steps_per_repeat=3,
        clock="CPU",
        memory="saved bytes",
        negligible_ratio=1.1,
        rows=rows,
        p_star=p_star,
    )


def _row(m: int, subsets: str, p: int, ratio: float) -> CostRow:
    return CostRow(
        M=m,
        views=[],
        subsets=subsets,
        P=p,
        time_s=ratio * 1e-3,
        joint_time_s=1e-3,
        time_ratio=TimeRatio(ratio, ratio * 0.9, ratio * 1.1),
        saved_bytes=2,
        joint_saved_bytes=1,
        memory_ratio=2.0,
    )


def test_cost_rule_in_words_for_each_outcome():
    c = _cost(
        [
            _row(3, "all", 1, 1.02),
            _row(3, "all", 4, 1.05),
            _row(3, "all", 16, 1.4),
            _row(6, "all", 1, 3.0),
            _row(6, "all", 4, 5.0),
            _row(6, "singletons", 1, 1.0),
        ],
        {"M=3 all": 16, "M=6 all": 1, "M=6 singletons": None},
    )
    assert cost.verdict(c, 3, "all") == (
        "negligible up to P = 4; above 1.10x joint's step time from P = 16 (1.4x)"
    )
    assert cost.verdict(c, 6, "all").endswith("at every P measured, already 3.0x at P = 1")
    assert cost.verdict(c, 6, "singletons").startswith("negligible (at most 1.10x")
    text = cost.markdown(c)
    assert "- M=3 all: negligible up to P = 4" in text
    assert "Smallest measured P" not in text  # the old, unreadable form


def test_two_views_are_one_cost_setting():
    assert cost.SETTINGS.count((2, "all")) == 1 and (2, "singletons") not in cost.SETTINGS
    # results written before the rule hold both M = 2 modes: the table and the plot show one
    assert QUICK.cost is not None
    old = copy.deepcopy(QUICK.cost)
    twins = [
        dataclasses.replace(r, subsets="singletons")
        for r in old.rows
        if (r.M, r.subsets) == (2, "all")
    ]
    old.rows = [*old.rows, *twins]
    assert {(r.M, r.subsets) for r in old.rows} >= {(2, "all"), (2, "singletons")}
    assert (2, "singletons") not in cost.distinct_settings(old.rows)
    table = [line for line in cost.markdown(old).splitlines() if line.startswith("| 2 |")]
    assert table and all("all (= singletons)" in line for line in table)
    assert len(table) == len(old.P)


def _titles_and_labels(monkeypatch):
    """Record the title, axis labels and legend entries of every figure saved."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    seen: list[dict] = []
    save = Figure.savefig

    def record(fig, *args, **kwargs):
        ax = fig.axes[0]
        legend = ax.get_legend()
        seen.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                "errorbars": sum(
                    1 for c in ax.containers if type(c).__name__ == "ErrorbarContainer"
                ),
            }
        )
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return seen


def test_every_plot_is_readable_alone(tmp_path, monkeypatch):
    seen = _titles_and_labels(monkeypatch)
    result = copy.deepcopy(QUICK)
    report.write_outputs(result, tmp_path)
    accuracy, gain, cost_plot = seen
    assert "quick run, 2 seeds per point" in accuracy["title"]
    assert "standard deviation" in accuracy["title"] and "points" in accuracy["ylabel"]
    assert accuracy["errorbars"] == 5  # the five methods other than joint
    assert "joint (reference)" in accuracy["legend"]
    rho = QUICK.gain_vs_undertraining.spearman_mean
    assert f"Spearman ρ = {rho:+.2f}" in gain["title"] and "15 view sets" in gain["title"]
    assert gain["errorbars"] == 15 and "points" in gain["xlabel"] and "points" in gain["ylabel"]
    assert cost_plot["title"] and "quartiles" in cost_plot["title"]
    assert "negligible-cost limit (1.10x)" in cost_plot["legend"]
    assert "M=2 all (= singletons)" in cost_plot["legend"]
    assert not any(label.startswith("M=2 singletons") for label in cost_plot["legend"])
    for name in ("accuracy.png", "gain_vs_undertraining.png", "cost.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_log_gets_plain_lines_and_no_bar(tmp_path, capsys):
    """stderr is not a terminal under pytest: no tqdm bar, one line per view set on stdout."""
    from examples.multiview.make_fixture import write_fixture

    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    options = [o for o in TINY_OPTIONS if o != "--no-progress"]
    argv = ["--data-root", str(wheel), "--out", str(tmp_path / "out"), *options]
    run.main([*argv, "--methods", "joint", "--pairs", "fou+fac", "fac+kar"])
    out, err = capsys.readouterr()
    assert "it/s" not in err and "run/s" not in err and "\r" not in err
    assert out.count("view set fou+fac test %") == 1 and "view set fac+kar test %" in out
