"""benchmarks.step_cost: runs as a module, writes the documented JSON, and counts
operations that do not depend on the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.step_cost import (
    CASES,
    SCHEMA,
    build_steps,
    count_ops,
    main,
    peak_bytes,
    resnet_steps,
)

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
        memory = r["peak_bytes"]
        assert 0 < memory["joint"] < memory["mcr"]
        assert memory["ratio"] == memory["mcr"] / memory["joint"]


def test_operation_counts_repeat_exactly() -> None:
    joint, with_mcr = build_steps(CASES[0], batch=16, latent=8)
    assert count_ops(joint)[0] == count_ops(joint)[0]
    assert count_ops(with_mcr)[0] == count_ops(with_mcr)[0]


@pytest.mark.slow
def test_runs_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "benchmarks.step_cost", "--quick", "--repeats", "1", "--steps", "1"]
    subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    assert json.loads(out.read_text())["schema"] == SCHEMA


def test_peak_bytes_is_the_most_held_at_once() -> None:
    kept: list[torch.Tensor] = []

    def step() -> None:
        kept.clear()
        a = torch.empty(1000)  # 4,000 bytes, released at the end of the step
        kept.append(torch.empty(500))  # 2,000 bytes, still held
        del a

    assert 6000 <= peak_bytes(step) < 6000 + 1024


def test_peak_bytes_ignores_releasing_memory_held_before_the_call() -> None:
    """The profiler reports the release of a block it saw allocated in an earlier profiling
    session (or of a block at an address such a block had), a release the call's own
    allocations do not cover: counted, it lowered the running sum and the peak, depending on
    where the allocator put the tensors. Released here on purpose, it must not count."""
    from torch.profiler import ProfilerActivity, profile

    earlier: list[torch.Tensor] = []
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        earlier += [torch.empty(500), torch.empty(500)]  # 2,000 bytes each, sizes known

    def step() -> None:
        earlier.pop()  # releases 2,000 bytes allocated before the call (once per call)
        a = torch.empty(1000)  # 4,000 bytes, released at the end of the step
        del a

    assert 4000 <= peak_bytes(step) < 4000 + 1024


def test_every_case_builds_and_its_mcr_step_does_more_than_joint() -> None:
    for case in CASES:
        joint, with_mcr = build_steps(case, batch=8, latent=4)
        assert count_ops(joint)[0] < count_ops(with_mcr)[0], case.name


def test_resnet_pair_steps_run_and_count() -> None:
    pytest.importorskip("torchvision", reason="the ResNet-18 pair needs torchvision")
    joint, with_mcr = resnet_steps(draws=1, batch=2)
    assert 0 < count_ops(joint)[0] < count_ops(with_mcr)[0]


@pytest.mark.slow
def test_compiled_step_compiles_as_one_graph() -> None:
    """The benchmark's compiled step (inductor, ``fullgraph=True``: a graph break raises) runs;
    compiled and eager values agree in tests/mcr_reg/test_compile.py."""
    joint, compiled = build_steps(CASES[1], batch=8, latent=4, compiled=True)
    compiled()
    compiled()
    assert count_ops(joint)[0] > 0
