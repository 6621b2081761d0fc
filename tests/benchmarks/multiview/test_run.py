"""The multi-view benchmark runner: view-set rule, selection, probes and a smoke run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from benchmarks.multiview import jobs, run
from benchmarks.multiview.protocol import ABLATIONS, build_parser, make_plan
from benchmarks.multiview.results import MethodResult, Probe, ViewSetResult
from benchmarks.multiview.summary import undertraining
from benchmarks.multiview.view_sets import ViewSet, methods_for, pairs, triples
from examples.common.latent_probe import linear_probe
from examples.multiview.data import VIEWS, SplitSizes, load_views
from examples.multiview.make_fixture import write_fixture
from tests.benchmarks.multiview.runs import tiny_argv, without_setup_or_times
from tests.examples._helpers.entry_points import run_entry_point


def test_pairs_are_the_fifteen_combinations():
    found = pairs()
    assert len(found) == 15 and len({p.views for p in found}) == 15
    assert all(len(p.views) == 2 and p.kind == "pair" for p in found)
    assert found[0].name == "fou+fac"


def test_triples_follow_the_preregistered_rule():
    # ranked: pix 0.97 > fac 0.96 > kar 0.95 > fou 0.80 > zer 0.79 > mor 0.70
    acc = {"fou": 0.80, "fac": 0.96, "kar": 0.95, "pix": 0.97, "zer": 0.79, "mor": 0.70}
    weakest, strongest, mixed = triples(acc)
    assert (weakest.kind, weakest.views) == ("weakest3", ("fou", "zer", "mor"))
    assert (strongest.kind, strongest.views) == ("strongest3", ("fac", "kar", "pix"))
    assert (mixed.kind, mixed.views) == ("mixed3", ("kar", "pix", "mor"))  # ranks 1, 3, 6
    with pytest.raises(ValueError, match="missing"):
        triples({"fou": 0.5})


def test_triples_break_ties_by_view_order():
    weakest, strongest, mixed = triples(dict.fromkeys(VIEWS, 0.5))
    assert strongest.views == ("fou", "fac", "kar") and weakest.views == ("pix", "zer", "mor")
    assert mixed.views == ("fou", "kar", "mor")


def test_selection_uses_validation_only():
    def runs(val: float, test: float) -> jobs.RunResult:
        return jobs.RunResult(val=val, test=test, epochs=1, seconds=1.0)

    trials = [[runs(0.5, 0.99), runs(0.5, 0.99)], [runs(0.9, 0.10), runs(0.7, 0.20)]]
    sel = jobs.select_trial(trials, [{"lr": 1}, {"lr": 2}])
    assert sel.trial == {"lr": 2} and sel.per_seed == [0.10, 0.20]
    assert sel.mean == pytest.approx(0.15) and sel.val_mean == pytest.approx(0.8)


def test_linear_probe_in_float32_separates_separable_latents_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 10
    means = torch.randn(10, 8, generator=g) * 5
    z = means[y] + torch.randn(200, 8, generator=g)

    def probe(z: torch.Tensor) -> float:
        return linear_probe(z[:100], y[:100], z[100:], y[100:], num_classes=10, dtype=torch.float32)

    assert probe(z) > 0.95
    assert probe(torch.randn(200, 8, generator=g)) < 0.4


def test_undertraining_is_unimodal_probe_minus_joint_probe():
    def method(a: float, b: float) -> MethodResult:
        probe = {"a": Probe(a, [a]), "b": Probe(b, [b])}
        return MethodResult(a, 0.0, [a], a, {}, [a], 1.0, probe=probe)

    entry = ViewSetResult("a+b", ["a", "b"], "pair")
    entry.methods = {"ensemble": method(0.9, 0.8), "joint": method(0.85, 0.8)}
    gap = undertraining(entry, "joint")
    assert gap is not None and gap.per_view == pytest.approx({"a": 0.05, "b": 0.0})
    assert gap.mean == pytest.approx(0.025) and gap.max == pytest.approx(0.05)
    assert undertraining(entry, "mcr") is None


@pytest.mark.slow
def test_smoke_run_on_a_tiny_fake_wheel(tmp_path, monkeypatch):
    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    snapshots: list[dict] = []
    write = run.atomic_write_json

    def keep_snapshots(obj, path):
        if path.name == "results.partial.json":
            snapshots.append(json.loads(json.dumps(obj)))
        write(obj, path)

    monkeypatch.setattr(run, "atomic_write_json", keep_snapshots)
    out = tmp_path / "out"
    argv = [
        "--data-root",
        str(wheel),
        "--out",
        str(out),
        "--methods",
        "joint",
        "ensemble",
        "--seeds",
        "2",
        "--grid",
        "1",
        "--max-epochs",
        "2",
        "--per-class",
        "6",
        "3",
        "3",
        "--triples",
        "--six",
        "--no-ablations",
        "--no-cost",
        "--workers",
        "1",
        "--no-progress",
    ]
    run.main(argv)
    result = json.loads((out / "results.json").read_text())
    names = [vs["name"] for vs in result["view_sets"]]
    assert len(names) == 15 + 3 + 1 and names[-1] == "+".join(VIEWS)
    assert set(result["triple_rule"]["triples"]) == {"weakest3", "strongest3", "mixed3"}
    for vs in result["view_sets"]:
        assert set(vs["methods"]) == {"joint", "ensemble"}
        for r in vs["methods"].values():
            assert len(r["per_seed"]) == 2 and 0.0 <= r["mean"] <= 1.0
        assert set(vs["unimodal_test"]) == set(vs["views"])
        assert set(vs["methods"]["joint"]["probe"]) == set(vs["views"])
        assert "joint" in vs["undertraining"]
    assert result["setup"]["budget"]["max_epochs"] == 2
    text = (out / "results.md").read_text()
    assert "| fou+fac | pair |" in text and "linear probes" in text
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # the run's snapshot: after the six-view set, then after all view sets; gone once done
    assert [len(snapshot["view_sets"]) for snapshot in snapshots] == [1, 19]
    assert "paired" in snapshots[-1]
    assert not (out / "results.partial.json").exists()


@pytest.mark.slow
def test_smoke_run_with_mcr_ablations_and_paired_tests(tmp_path):
    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    out = tmp_path / "out"
    argv = tiny_argv(
        wheel.parent,
        out,
        *("--methods", "joint", "ensemble", "mcr", "--pairs", "fou+mor", "pix+zer"),
        *("--ablations", "--ablation-seeds", "1"),
    )
    result = run.main(argv)
    assert [vs.name for vs in result.view_sets] == ["fou+mor", "pix+zer"]
    paired = result.paired["mcr-joint"]
    assert paired.n == 4 and paired.wins + paired.ties + paired.losses == 4
    assert set(result.paired) == {"mcr-joint", "mcr-ensemble"}
    assert result.paired_by_kind["pair"] == result.paired  # only pairs here
    abl = result.ablations
    assert abl is not None
    assert set(abl.variants) == set(ABLATIONS) and abl.seeds == [0]
    for row in abl.per_view_set.values():
        assert set(row) == {"mcr", *ABLATIONS} and len(row["mcr"].per_seed) == 1
    assert {f"{v}-mcr" for v in ABLATIONS} == set(abl.paired)
    assert result.gain_vs_undertraining is not None
    rows = result.gain_vs_undertraining.rows
    assert [r.view_set for r in rows] == ["fou+mor", "pix+zer"]
    assert "mcr" in (result.view_sets[0].undertraining or {})
    text = (out / "results.md").read_text()
    assert "mcr − joint" in text and "head_gradient_sum_and_supcon" in text
    assert (out / "gain_vs_undertraining.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_pairs_flag(tmp_path):
    with pytest.raises(ValueError, match="expected --pairs out of"):
        make_plan(
            build_parser().parse_args(["--data-root", "x", "--out", "y", "--pairs", "fou+xyz"])
        )


@pytest.mark.slow
def test_runner_runs_as_a_module(tmp_path):
    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    proc = run_entry_point(
        ["-m", "benchmarks.multiview"],
        *tiny_argv(wheel, tmp_path / "o", "--methods", "joint", "ensemble"),
        *("--pairs", "kar+mor", "--seeds", "1"),
    )
    assert "kar+mor" in proc.stdout  # the per-view-set summary line and the table
    assert (tmp_path / "o" / "results.json").is_file()


def test_mcr_singletons_only_on_six_views_and_no_pairs_flag():
    args = build_parser().parse_args(
        [
            "--data-root",
            "x",
            "--out",
            "y",
            "--pairs",
            "--six",
            "--no-triples",
            "--methods",
            "joint",
            "ensemble",
            "mcr_singletons",
        ]
    )
    plan = make_plan(args)
    assert plan.pairs == () and plan.six and not plan.ablations
    six = ViewSet(VIEWS, "all6")
    assert methods_for(six, plan.methods) == ["joint", "ensemble", "mcr_singletons"]
    assert methods_for(pairs()[0], plan.methods) == ["joint", "ensemble"]
    assert methods_for(six, ["joint", "mcr"]) == ["joint", "mcr", "mcr_singletons"]


def _resume_argv(wheel, out) -> list[str]:
    return tiny_argv(wheel, out, "--methods", "joint", "ensemble", "--pairs", "fou+mor")


def test_a_stopped_benchmark_resumes_from_its_finished_runs(tmp_path, monkeypatch):
    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    out = tmp_path / "out"
    argv = _resume_argv(wheel, out)
    first = run.main(argv)
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == 2 * 2  # two methods x two seeds, one file per finished run
    trained: list[jobs.Job] = []
    real = jobs.train
    monkeypatch.setattr(run, "train", lambda job: trained.append(job) or real(job))
    assert without_setup_or_times(run.main(argv)) == without_setup_or_times(first)
    assert trained == []  # everything came from the finished runs
    files[0].unlink()  # as if the benchmark had stopped before this run finished
    assert without_setup_or_times(run.main(argv)) == without_setup_or_times(first)
    assert len(trained) == 1
    trained.clear()
    run.main([*argv, "--max-epochs", "2"])  # another budget: other runs
    assert len(trained) == 4
    trained.clear()
    run.main([*argv, "--no-resume"])
    assert len(trained) == 4


def test_run_specs_name_every_setting_and_the_data(tmp_path):
    from benchmarks.harness.store import spec_digest

    job = jobs.Job("root", ("fou", "mor"), "mcr", {"mipd_weight": 0.1}, 0, data_digest="data")

    def digest(j: jobs.Job) -> str:
        return spec_digest(jobs.run_spec(j))

    base = digest(job)
    assert digest(replace(job, root="elsewhere")) == base  # the path is not the data
    others = [
        digest(replace(job, data_digest="other data")),
        digest(replace(job, views=("fou", "zer"))),
        digest(replace(job, key="joint")),
        digest(replace(job, trial={"mipd_weight": 1.0})),
        digest(replace(job, seed=1)),
        digest(replace(job, budget=replace(job.budget, patience=3))),
        digest(replace(job, sizes=SplitSizes(6, 3, 3))),
        digest(replace(job, probe=True)),
    ]
    assert len({base, *others}) == 1 + len(others)
    wheel = write_fixture(tmp_path / "a", "wheel", per_class=12)
    data = load_views(wheel)
    value = jobs.data_digest(data)
    data.features["mor"][0, 0] += 1.0
    assert jobs.data_digest(data) != value
