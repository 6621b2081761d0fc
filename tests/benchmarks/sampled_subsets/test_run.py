"""benchmarks.sampled_subsets: trains the three arms on a multi-view fixture, writes the JSON it
documents, resumes from it, and applies the registered verdict rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.sampled_subsets.protocol import ARMS, SCHEMA, run_key, verdict
from benchmarks.sampled_subsets.run import main
from examples.multiview.make_fixture import write_fixture

ARGS = ["--seeds", "2", "--trials", "1", "--max-epochs", "1", "--per-class", "6", "3", "3"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("mfeat"), layout="wheel", per_class=12)


def test_runs_every_arm_and_resumes(wheel: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    report = main(["--data-root", str(wheel), "--out", str(out), "--workers", "1", *ARGS])
    assert report["schema"] == SCHEMA
    assert set(report["runs"]) == {run_key(a, 0, s) for a in ARMS for s in (0, 1)}
    assert json.loads(out.read_text())["summary"] == json.loads(json.dumps(report["summary"]))
    arms = report["summary"]["arms"]
    assert all(len(arms[a]["test_per_seed"]) == 2 for a in ARMS)
    sampled = report["summary"]["against_all"]["sampled"]
    assert sampled["differences"] == [
        a - b for a, b in zip(arms["sampled"]["test_per_seed"], arms["all"]["test_per_seed"])
    ]
    # a second call finds every run in the file and trains nothing: the runs are unchanged
    stored = json.loads(out.read_text())["runs"]
    again = main(["--data-root", str(wheel), "--out", str(out), "--workers", "1", *ARGS])
    assert again["runs"] == stored


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.0, -0.5, 0.4, -1.0, 0.2], "no loss seen"),
        ([-1.5, -1.0, -1.2, -0.9, -1.4], "loses accuracy"),  # mean below -1 point
        ([-2.5, -2.2, 3.0, 1.0, 1.0], "loses accuracy"),  # two seeds lose by more than 2
        ([-2.5, 0.0, 0.5, 0.0, 0.5], "no loss seen"),  # one big loss is allowed
    ],
)
def test_verdict_follows_the_registered_rule(differences: list[float], expected: str) -> None:
    mean = sum(differences) / len(differences)
    assert verdict({"mean_diff": mean}, differences) == expected
