"""run.py end to end on a tiny setting: the files and the results schema."""

import json
import statistics
import sys

import pytest
import torch

from benchmarks.harness.result_files import to_json
from benchmarks.harness.tuning import GRID, VARIANTS, Budget
from benchmarks.synthetic import run, summary, training
from benchmarks.synthetic.generator import SyntheticSpec
from benchmarks.synthetic.protocol import PREMISE_GAP, REGIMES
from benchmarks.synthetic.results import MethodResult, Point, SweepResult
from examples.common.cli import METHODS


def tiny_args(out, *extra: str) -> list[str]:
    """run.py arguments of a tiny sweep: 2 points, 2 seeds, 1 trial, 1 epoch."""
    base = ["--out", str(out), "--u1", "0.2", "0.6", "--seeds", "2", "--grid", "1"]
    return [*base, "--max-epochs", "1", *extra]


@pytest.mark.slow
def test_tiny_sweep_writes_results_markdown_and_plot(tmp_path):
    out = tmp_path / "syn"
    run.main(tiny_args(out, "--n-train", "60", "--n-eval", "40", "--workers", "1", "--ablations"))
    result = json.loads((out / "results.json").read_text())
    assert [p["u1"] for p in result["points"]] == [0.2, 0.6]
    for point in result["points"]:
        assert point["u2"] == 0.2
        assert point["s"] == pytest.approx(1 - point["u1"] - 0.2)
        assert sorted(point["methods"]) == sorted([*METHODS, "mcr_uni_pre"])
        for res in point["methods"].values():
            assert len(res["per_seed"]) == 2
            # the reported mean and std are those of the per-seed test accuracies
            assert res["mean"] == pytest.approx(statistics.fmean(res["per_seed"]))
            assert res["std"] == pytest.approx(statistics.stdev(res["per_seed"]))
        assert "mcr" in point["error_matrices"]
    assert set(result["ablations"]) >= {"strategy", "components", "perturbation", "rules"}
    assert result["ablations"]["cpu_seconds"] > 0
    assert result["setup"]["cpu_seconds"] > result["ablations"]["cpu_seconds"]
    assert set(result["claims"]) >= {
        "joint_below_ensemble",
        "mcr_above_ensemble",
        "mcr_above_joint",
        "mcr_uni_pre_above_ensemble",
        "mcr_uni_pre_at_or_above_all",
    }
    text = (out / "results.md").read_text()
    assert "| mcr |" in text and "U1/S" in text
    assert (out / "accuracy_vs_ratio.png").read_bytes()[:4] == b"\x89PNG"


def test_selection_uses_validation_not_test():
    def run_result(val: float, test: float) -> training.RunResult:
        per_category = {"shared": 1.0, "u1": None, "u2": 0.0}
        return training.RunResult(
            val=val, test=test, per_category=per_category, importance=None, probe=0.5,
            pred=[], labels=[], seconds=1.0,
        )  # fmt: skip

    runs = [[run_result(0.9, 0.1)], [run_result(0.5, 0.9)]]
    chosen, chosen_runs = summary.select_trial(runs, [{"lr": 1}, {"lr": 2}])
    assert chosen.trial == {"lr": 1} and chosen.mean == 0.1 and chosen_runs == runs[0]
    assert chosen.per_category == {"shared": 1.0, "u1": None, "u2": 0.0}


def _method(mean: float, **fields) -> MethodResult:
    base = {"std": 0.0, "val_mean": mean, "trial": {}, "trials_val_mean": [mean]}
    base |= {"per_seed": [mean], "per_category": {}, "importance": None, "seconds": 0.0}
    return MethodResult(mean=mean, **{**base, **fields})


def _sweep(*points: tuple[float, dict[str, MethodResult]]) -> SweepResult:
    return SweepResult(points=[Point(u1, round(0.8 - u1, 10), 0.2, 1.0, m) for u1, m in points])


def test_claims_at_most_imbalanced_point():
    result = _sweep(
        (0.1, {"joint": _method(0.9), "ensemble": _method(0.8), "mcr": _method(0.7)}),
        (
            0.7,
            {
                "joint": _method(0.6),
                "ensemble": _method(0.7),
                "mcr": _method(0.75),
                "mcr_uni_pre": _method(0.8),
            },
        ),
    )
    claims = summary.check_claims(result)
    assert claims["point"]["u1"] == 0.7
    assert (
        claims["joint_below_ensemble"]
        and claims["mcr_above_ensemble"]
        and claims["mcr_at_or_above_all"]  # the MCR variant is not a baseline
        and claims["mcr_uni_pre_at_or_above_all"]
    )
    assert claims["mcr_best_other"] == "ensemble"
    result.points[1].methods["multiloss"] = _method(0.77)
    claims = summary.check_claims(result)
    assert not claims["mcr_at_or_above_all"] and claims["mcr_best_other"] == "multiloss"
    assert claims["mcr_uni_pre_at_or_above_all"]


def test_variant_key_trains_the_registered_method_with_its_fixed_options():
    spec = SyntheticSpec(u1=0.7, s=0.1, u2=0.2, n_train=40, n_val=20, n_test=20)
    budget = Budget(max_epochs=1, patience=1)
    result = training.train_one(spec, budget, "mcr_uni_pre", {"mipd_weight": 0.1}, 0)
    hits = sum(p == y for p, y in zip(result.pred, result.labels, strict=True))
    assert result.test == pytest.approx(hits / len(result.labels))
    assert VARIANTS["mcr_uni_pre"] == ("mcr", {"init": "unimodal"})
    assert GRID["mcr_uni_pre"] == GRID["mcr"]  # same trials as plain MCR


def test_bad_sweep_raises():
    with pytest.raises(ValueError, match="no room for shared"):
        run.train_sweep(
            u1_values=[0.9],
            u2=0.2,
            methods=["joint"],
            seeds=[0],
            grid_size=1,
            spec=SyntheticSpec(),
            budget=Budget(),
            workers=1,
            ablations=False,
        )


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log"])
def test_two_workers_show_one_line_per_point_and_a_bar_on_a_terminal(
    tmp_path, capsys, monkeypatch, terminal
):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)  # capsys's stderr
    run.main(
        tiny_args(
            tmp_path / "syn",
            *("--methods", "joint", "ensemble", "--n-train", "40", "--n-eval", "20"),
            *("--workers", "2", "--no-ablations"),
        )
    )
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "test %:" in line]
    assert len(lines) == 2  # one per sweep point, when its last run finishes
    for u1 in ("0.20", "0.60"):
        line = next(line for line in lines if f"point U1={u1} " in line)
        assert "joint " in line and "ensemble " in line and "(4 runs" in line
    if terminal:
        assert "sweep" in captured.err and "8/8" in captured.err  # the bar, on stderr
    else:
        assert "8/8" not in captured.err and "\r" not in captured.err  # a log: lines only


def test_linear_probe_separable_and_shuffled_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    x = torch.randn(400, 6, generator=g) + 10.0 * torch.nn.functional.one_hot(y, 6).float()
    assert training.linear_probe(x[:300], y[:300], x[300:], y[300:]) == 1.0
    shuffled = y[torch.randperm(400, generator=g)]  # no relation to x: about chance (0.25)
    assert training.linear_probe(x[:300], shuffled[:300], x[300:], shuffled[300:]) < 0.45


def test_linear_probe_bad_shapes():
    with pytest.raises(
        ValueError, match=r"\(N, D\) and \(M, D\) latents, got \(5, 3\) and \(4, 2\)"
    ):
        training.linear_probe(
            torch.zeros(5, 3), torch.zeros(5).long(), torch.zeros(4, 2), torch.zeros(4).long()
        )
    with pytest.raises(ValueError, match="one label per row, got 5 rows / 4 labels"):
        training.linear_probe(
            torch.zeros(5, 3), torch.zeros(4).long(), torch.zeros(4, 3), torch.zeros(4).long()
        )


def test_probe_gaps_against_the_ensemble_per_seed():
    point = Point(0.7, 0.1, 0.2, 7.0)
    point.methods = {
        "ensemble": _method(0.8, probe_per_seed=[0.8, 0.7]),
        "joint": _method(0.7, probe_per_seed=[0.7, 0.65]),
    }
    summary.add_probe_gaps(point)
    assert point.methods["joint"].probe_gap_per_seed == pytest.approx([0.1, 0.05])
    assert point.methods["joint"].probe_gap == pytest.approx(0.075)
    assert point.methods["ensemble"].probe_gap == 0.0
    lone = Point(0.7, 0.1, 0.2, 7.0, {"joint": _method(0.7, probe_per_seed=[0.7])})
    summary.add_probe_gaps(lone)
    assert lone.methods["joint"].probe_gap is None


def _premise_result(gaps, joint, ensemble):
    return _sweep(
        (
            0.7,
            {
                "joint": _method(joint, probe_gap=0.0, probe_gap_per_seed=gaps),
                "ensemble": _method(ensemble, probe_gap=0.0),
            },
        )
    )


@pytest.mark.parametrize(
    ("gaps", "joint", "ensemble", "holds"),
    [
        ([0.05, 0.031, 0.04], 0.6, 0.7, True),
        ([0.05, 0.029, 0.04], 0.6, 0.7, False),  # only two seeds with a 3-point gap
        ([0.05, 0.05, 0.05], 0.7, 0.6, False),  # joint not below the ensemble
        ([0.05, 0.01, 0.04, 0.03], 0.6, 0.7, True),  # 3 of 4 seeds
    ],
)
def test_undertrained_premise(gaps, joint, ensemble, holds):
    claims = summary.check_claims(_premise_result(gaps, joint, ensemble))
    assert claims["undertrained_premise"] is holds
    assert claims["seeds_with_joint_probe_gap_ge_3pt"] == sum(g >= PREMISE_GAP for g in gaps)


@pytest.mark.slow
def test_undertrained_regime_end_to_end(tmp_path):
    out = tmp_path / "under"
    run.main(
        tiny_args(
            out,
            *("--regime", "undertrained", "--methods", "joint", "ensemble"),
            *("--n-train", "60", "--n-eval", "40", "--workers", "1", "--no-ablations"),
        )
    )
    result = json.loads((out / "results.json").read_text())
    assert result["setup"]["regime"] == "undertrained"
    assert result["setup"]["spec"]["input_dims"] == [128, 2048]
    for point in result["points"]:
        for res in point["methods"].values():
            assert len(res["probe_per_seed"]) == 2
            assert res["probe"] == pytest.approx(statistics.fmean(res["probe_per_seed"]))
            assert res["probe_gap"] is not None
        assert point["methods"]["ensemble"]["probe_gap"] == 0.0
    assert "undertrained_premise" in result["claims"]
    text = (out / "results.md").read_text()
    assert "probe gap" in text and "| joint |" in text


def test_a_stopped_sweep_resumes_from_its_finished_runs(tmp_path, monkeypatch):
    out = tmp_path / "syn"
    argv = tiny_args(out, "--n-train", "60", "--n-eval", "40", "--workers", "1")
    argv += ["--methods", "joint", "mcr", "--no-ablations"]
    first = run.main(argv)
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == 2 * 2 * 2  # points x methods x seeds (one trial)
    trained: list[str] = []
    real = training.train_one

    def counting(*args):
        trained.append(args[2])
        return real(*args)

    monkeypatch.setattr(training, "train_one", counting)

    def same(value):  # the results without the setup, the run times and the provenance
        if isinstance(value, dict):
            drop = {"setup", "seconds", "cpu_seconds", "provenance"}
            return {k: same(v) for k, v in value.items() if k not in drop}
        return [same(v) for v in value] if isinstance(value, list) else value

    assert same(to_json(run.main(argv))) == same(to_json(first)) and trained == []
    files[0].unlink()  # as if the sweep had stopped before this run finished
    assert same(to_json(run.main(argv))) == same(to_json(first)) and len(trained) == 1
    trained.clear()
    run.main([*argv, "--no-resume"])
    assert len(trained) == 8
    spec = REGIMES["fusion"]
    key = training.run_spec(spec, Budget(), "mcr", {"mipd_weight": 0.1}, 0)
    assert key != training.run_spec(spec, Budget(), "mcr", {"mipd_weight": 0.1}, 1)
    assert key != training.run_spec(spec, Budget(max_epochs=3), "mcr", {"mipd_weight": 0.1}, 0)
