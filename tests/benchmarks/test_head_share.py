"""benchmarks.head_share: runs as a module, writes the documented JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.head_share import SCHEMA, VARIANTS, main

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_ratios_to_the_old_rule(tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    result = main(["--quick", "--modalities", "2", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["schema"] == SCHEMA
    for m in ("2", "3"):
        entry = result["modalities"][m]
        assert set(entry) == set(VARIANTS)
        assert entry["sum"]["cpu_vs_sum"]["values"] == [1.0] * result["repeats"]
        assert all(v > 0 for k in VARIANTS for v in entry[k]["cpu_s"]["values"])


@pytest.mark.slow
def test_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    cmd = [sys.executable, "-m", "benchmarks.head_share", "--quick", "--modalities", "2"]
    subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    assert set(json.loads(out.read_text())["modalities"]) == {"2"}
