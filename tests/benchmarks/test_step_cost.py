"""benchmarks.step_cost: runs as a module and as a file, writes the documented JSON, and counts
operations that do not depend on the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.step_cost import CASES, SCHEMA, build_steps, count_ops, main

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_ops_times_and_ratios(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    report = main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["schema"] == SCHEMA
    assert [r["name"] for r in report["results"]] == [c.name for c in CASES[:2]]
    for r in report["results"]:
        ops = r["ops"]
        assert 0 < ops["joint"] < ops["mcr"] and ops["added"] == ops["mcr"] - ops["joint"]
        assert len(r["cpu_ratio"]["values"]) == report["settings"]["repeats"]
        assert all(v > 0 for v in r["cpu_seconds"]["mcr"]["values"])
        assert r["top_ops"] and all(t["op"].startswith("aten::") for t in r["top_ops"])


def test_operation_counts_repeat_exactly() -> None:
    joint, with_mcr = build_steps(CASES[0], batch=16, latent=8)
    assert count_ops(joint)[0] == count_ops(joint)[0]
    assert count_ops(with_mcr)[0] == count_ops(with_mcr)[0]


@pytest.mark.slow
def test_runs_as_a_file(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    cmd = [sys.executable, "benchmarks/step_cost.py", "--quick", "--repeats", "1", "--steps", "1"]
    subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    assert json.loads(out.read_text())["schema"] == SCHEMA
