"""benchmarks.ensemble_gap end to end on tiny data: the synthetic settings with a few points
and one epoch, AV-MNIST on the real-format fixture; the protocol's fixed trials against the
benchmarks' recorded selections; the rule; resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.ensemble_gap import analysis, protocol, run

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "examples"
TINY_SYNTHETIC = ("--max-epochs", "1", "--synthetic-points", "60", "40", "50", "--no-progress")


def _point(path: Path, u1: float) -> dict:
    data = json.loads(path.read_text())
    return next(p for p in data["points"] if abs(p["u1"] - u1) < 1e-9)


@pytest.mark.parametrize(
    ("setting", "results"),
    [
        ("synthetic", "synthetic-quick-0.2-results.json"),
        ("undertrained", "synthetic-undertrained-quick-results.json"),
    ],
)
def test_synthetic_settings_are_the_benchmarks_point_and_selection(setting, results):
    data = json.loads((DOCS / results).read_text())
    recorded = {**data["setup"]["spec"], **protocol.SYNTHETIC_POINT}
    spec = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in vars(protocol.synthetic_spec(setting)).items()
    }
    assert spec == recorded
    point = _point(DOCS / results, protocol.SYNTHETIC_POINT["u1"])
    for method in ("mcr", "ensemble"):
        assert point["methods"][method]["trial"] == protocol.TRIALS[setting][method]


def test_avmnist_trials_are_the_full_runs_selection():
    data = json.loads((DOCS / "avmnist-full-primary-results.json").read_text())
    for method in ("mcr", "ensemble"):
        assert data["methods"][method]["trial"] == protocol.TRIALS["avmnist"][method]


def test_synthetic_settings_run_report_and_resume(tmp_path):
    out = tmp_path / "out"
    argv = ["--settings", "synthetic", "undertrained", "--seeds", "0", "1", "--out", str(out)]
    result = run.main([*argv, *TINY_SYNTHETIC])
    assert set(result["settings"]) == {"synthetic", "undertrained"}
    s = result["settings"]["synthetic"]
    assert set(s["predictors"]) >= {"mcr_fused", "ensemble", "mcr_head_m1", *protocol.REMEDIES}
    for entry in s["predictors"].values():
        assert len(entry["per_seed"]) == 2 and 0.0 <= entry["mean"] <= 1.0
        assert 0.0 <= entry["ece"] <= 1.0 and set(entry["per_category"]) == {"shared", "u1", "u2"}
    assert s["tests"]["refit_fusion_head"]["ensemble"]["n"] == 2
    assert sum(s["reliance"]["mcr_fused"].values()) == pytest.approx(1.0)
    overlap = s["overlap_with_mcr_fused"]["ensemble"]
    assert overlap["n"] == 2 * 50
    assert s["of_those_right"]["ensemble"] == s["ensemble_right_mcr_fused_wrong"]
    assert s["of_those_right"]["mcr_fused"] == 0
    fit = s["training_fit"]
    assert set(fit) == {
        "mcr_fused",
        "mcr_head_m1",
        "mcr_head_m2",
        "ensemble_m1",
        "ensemble_m2",
        "ensemble",
    }
    assert set(fit["ensemble"]) == {"all", "shared", "u1", "u2"}
    for per_kind in fit.values():
        for values in per_kind.values():
            assert 0.0 <= values["accuracy"] <= 1.0 and 0.2 <= values["confidence"] <= 1.0
    assert set(result["code_at_start"]) == {"commit", "uncommitted"}
    assert result["environment"]["torch_threads"] == 1
    # two settings and two seeds: no remedy can become a default
    assert result["decision"]["all_settings_measured"] is False
    assert not any(r["becomes_default"] for r in result["decision"]["remedies"].values())
    assert (out / "results.md").read_text().count(
        "| temperature_scaled_combination − ensemble"
    ) == 2
    stored = sorted((out / "runs").iterdir())
    assert len(stored) == 8
    stamps = [p.stat().st_mtime_ns for p in stored]
    again = run.main([*argv, *TINY_SYNTHETIC])
    assert [p.stat().st_mtime_ns for p in sorted((out / "runs").iterdir())] == stamps
    assert again["settings"] == result["settings"]
    assert run.main(["--report", str(out / "results.json")])["settings"] == result["settings"]


def test_avmnist_runs_on_the_fixture(tmp_path):
    from examples.avmnist.make_fixture import make_fixture

    root = make_fixture(tmp_path / "data")
    argv = [
        *("--settings", "avmnist", "--seeds", "0", "--out", str(tmp_path / "out")),
        *("--mnist", str(root / "mnist"), "--fsdd", str(root / "fsdd")),
        *("--pairs", "3", "1", "2", "--max-epochs", "1", "--no-progress"),
    ]
    s = run.main(argv)["settings"]["avmnist"]
    assert set(s["reliance"]["mcr_fused"]) == {"image", "audio"}
    assert s["overlap_with_mcr_fused"]["ensemble"]["n"] == 2 * 10
    assert "per_category" not in s["predictors"]["mcr_fused"]


def test_bad_command_lines_are_clear_errors(tmp_path):
    with pytest.raises(SystemExit, match="needs --mnist and --fsdd"):
        run.main(["--settings", "avmnist", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="distinct seeds"):
        run.main(["--settings", "synthetic", "--seeds", "1", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="expected --out"):
        run.main(["--settings", "synthetic"])
    with pytest.raises(SystemExit, match=r"expected a results\.json"):
        run.main(["--report", str(tmp_path / "missing.json")])


def test_the_rule_needs_a_win_on_every_setting_with_enough_seeds():
    def setting(verdict: str, seeds: int = 10) -> dict:
        tests = {r: {"ensemble": {"verdict": verdict}} for r in protocol.REMEDIES}
        return {"seeds": list(range(seeds)), "tests": tests}

    wins = {name: setting("win") for name in protocol.SETTINGS}
    assert all(r["becomes_default"] for r in analysis.decide(wins)["remedies"].values())
    one_tie = {**wins, "avmnist": setting("no detectable difference")}
    assert not any(r["becomes_default"] for r in analysis.decide(one_tie)["remedies"].values())
    few_seeds = {**wins, "avmnist": setting("win", seeds=protocol.MIN_SEEDS_FOR_VERDICT - 1)}
    assert analysis.decide(few_seeds)["all_settings_measured"] is False


def test_mcr_and_the_ensemble_must_share_their_test_points():
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="same points"):
        analysis.analyse_seed({"test": {"labels": labels}}, {"test": {"labels": labels.flip(0)}})


def test_the_code_state_names_the_commit_and_the_uncommitted_files(tmp_path):
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "mcr_reg").mkdir()
    (tmp_path / "mcr_reg" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    git("add", "mcr_reg/a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    assert run.code_state(tmp_path)["uncommitted"] == []
    (tmp_path / "mcr_reg" / "a.py").write_text("x = 2\n")
    state = run.code_state(tmp_path)
    assert state["uncommitted"] == ["mcr_reg/a.py"] and len(state["commit"]) == 40
    assert run.code_state(tmp_path / "mcr_reg" / "missing")["commit"] is None
