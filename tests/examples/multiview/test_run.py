"""The multi-view benchmark runner: view-set rule, selection, probes and a smoke run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from examples.multiview import run
from examples.multiview.data import VIEWS, load_views
from examples.multiview.make_fixture import write_fixture
from tests.examples._helpers.multiview_runs import tiny_argv, without_setup_or_times


def test_pairs_are_the_fifteen_combinations():
    pairs = run.pairs()
    assert len(pairs) == 15 and len({p.views for p in pairs}) == 15
    assert all(len(p.views) == 2 and p.kind == "pair" for p in pairs)
    assert pairs[0].name == "fou+fac"


def test_triples_follow_the_preregistered_rule():
    # ranked: pix 0.97 > fac 0.96 > kar 0.95 > fou 0.80 > zer 0.79 > mor 0.70
    acc = {"fou": 0.80, "fac": 0.96, "kar": 0.95, "pix": 0.97, "zer": 0.79, "mor": 0.70}
    weakest, strongest, mixed = run.triples(acc)
    assert (weakest.kind, weakest.views) == ("weakest3", ("fou", "zer", "mor"))
    assert (strongest.kind, strongest.views) == ("strongest3", ("fac", "kar", "pix"))
    assert (mixed.kind, mixed.views) == ("mixed3", ("kar", "pix", "mor"))  # ranks 1, 3, 6
    with pytest.raises(ValueError, match="missing"):
        run.triples({"fou": 0.5})


def test_triples_break_ties_by_view_order():
    weakest, strongest, mixed = run.triples(dict.fromkeys(VIEWS, 0.5))
    assert strongest.views == ("fou", "fac", "kar") and weakest.views == ("pix", "zer", "mor")
    assert mixed.views == ("fou", "kar", "mor")


def test_selection_uses_validation_only():
    runs = [
        [{"val": 0.5, "test": 0.99, "seconds": 1.0}, {"val": 0.5, "test": 0.99, "seconds": 1.0}],
        [{"val": 0.9, "test": 0.10, "seconds": 1.0}, {"val": 0.7, "test": 0.20, "seconds": 1.0}],
    ]
    sel = run.select_trial(runs, [{"lr": 1}, {"lr": 2}])
    assert sel["trial"] == {"lr": 2} and sel["per_seed"] == [0.10, 0.20]
    assert sel["mean"] == pytest.approx(0.15) and sel["val_mean"] == pytest.approx(0.8)


def test_linear_probe_separates_separable_latents_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 10
    means = torch.randn(10, 8, generator=g) * 5
    z = means[y] + torch.randn(200, 8, generator=g)
    assert run.linear_probe(z[:100], y[:100], z[100:], y[100:]) > 0.95
    noise = torch.randn(200, 8, generator=g)
    assert run.linear_probe(noise[:100], y[:100], noise[100:], y[100:]) < 0.4


def test_undertraining_is_unimodal_probe_minus_joint_probe():
    entry = {
        "views": ["a", "b"],
        "methods": {
            "ensemble": {"probe": {"a": {"mean": 0.9}, "b": {"mean": 0.8}}},
            "joint": {"probe": {"a": {"mean": 0.85}, "b": {"mean": 0.8}}},
        },
    }
    gap = run.undertraining(entry, "joint")
    assert gap["per_view"] == pytest.approx({"a": 0.05, "b": 0.0})
    assert gap["mean"] == pytest.approx(0.025) and gap["max"] == pytest.approx(0.05)
    assert run.undertraining(entry, "mcr") is None


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
    assert [vs["name"] for vs in result["view_sets"]] == ["fou+mor", "pix+zer"]
    paired = result["paired"]["mcr-joint"]
    assert paired["n"] == 4 and paired["wins"] + paired["ties"] + paired["losses"] == 4
    assert set(result["paired"]) == {"mcr-joint", "mcr-ensemble"}
    assert result["paired_by_kind"]["pair"] == result["paired"]  # only pairs here
    abl = result["ablations"]
    assert set(abl["variants"]) == set(run.ABLATIONS) and abl["seeds"] == [0]
    for row in abl["per_view_set"].values():
        assert set(row) == {"mcr", *run.ABLATIONS} and len(row["mcr"]["per_seed"]) == 1
    assert {f"{v}-mcr" for v in run.ABLATIONS} == set(abl["paired"])
    rows = result["gain_vs_undertraining"]["rows"]
    assert [r["view_set"] for r in rows] == ["fou+mor", "pix+zer"]
    assert "mcr" in result["view_sets"][0]["undertraining"]
    text = (out / "results.md").read_text()
    assert "mcr − joint" in text and "head_gradient_sum_and_supcon" in text
    assert (out / "gain_vs_undertraining.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_pairs_flag(tmp_path):
    with pytest.raises(ValueError, match="expected --pairs out of"):
        run.make_plan(
            run.build_parser().parse_args(["--data-root", "x", "--out", "y", "--pairs", "fou+xyz"])
        )


@pytest.mark.slow
@pytest.mark.parametrize("form", ["file", "module"])
def test_runner_runs_as_file_and_as_module(form, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    target = ["examples/multiview/run.py"] if form == "file" else ["-m", "examples.multiview.run"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [
            sys.executable,
            *target,
            *tiny_argv(wheel, tmp_path / "o", "--methods", "joint", "ensemble"),
            *("--pairs", "kar+mor", "--seeds", "1"),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kar+mor" in proc.stdout  # the per-view-set summary line and the table
    assert (tmp_path / "o" / "results.json").is_file()


def test_mcr_singletons_only_on_six_views_and_no_pairs_flag():
    args = run.build_parser().parse_args(
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
    plan = run.make_plan(args)
    assert plan.pairs == () and plan.six and not plan.ablations
    six = run.ViewSet(VIEWS, "all6")
    assert run.methods_for(six, plan.methods) == ["joint", "ensemble", "mcr_singletons"]
    assert run.methods_for(run.pairs()[0], plan.methods) == ["joint", "ensemble"]
    assert run.methods_for(six, ["joint", "mcr"]) == ["joint", "mcr", "mcr_singletons"]


def _resume_argv(wheel, out) -> list[str]:
    return tiny_argv(wheel, out, "--methods", "joint", "ensemble", "--pairs", "fou+mor")


def test_a_stopped_benchmark_resumes_from_its_finished_runs(tmp_path, monkeypatch):
    wheel = write_fixture(tmp_path / "data", "wheel", per_class=12)
    out = tmp_path / "out"
    argv = _resume_argv(wheel, out)
    first = run.main(argv)
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == 2 * 2  # two methods x two seeds, one file per finished run
    trained: list[run.Job] = []
    real = run.train
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
    from examples.common.runstore import spec_digest

    job = run.Job("root", ("fou", "mor"), "mcr", {"mipd_weight": 0.1}, 0, data_digest="data")

    def digest(j: run.Job) -> str:
        return spec_digest(run.run_spec(j))

    base = digest(job)
    assert digest(replace(job, root="elsewhere")) == base  # the path is not the data
    others = [
        digest(replace(job, data_digest="other data")),
        digest(replace(job, views=("fou", "zer"))),
        digest(replace(job, key="joint")),
        digest(replace(job, trial={"mipd_weight": 1.0})),
        digest(replace(job, seed=1)),
        digest(replace(job, budget=replace(job.budget, patience=3))),
        digest(replace(job, sizes=run.SplitSizes(6, 3, 3))),
        digest(replace(job, probe=True)),
    ]
    assert len({base, *others}) == 1 + len(others)
    wheel = write_fixture(tmp_path / "a", "wheel", per_class=12)
    data = load_views(wheel)
    value = run.data_digest(data)
    data.features["mor"][0, 0] += 1.0
    assert run.data_digest(data) != value
