"""benchmarks.gpu_check: the CPU dry run exercises every check that does not need CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import SCHEMA, main


@pytest.mark.slow
def test_cpu_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    report = main(["--device", "cpu", "--quick", "--out", str(out)])
    assert json.loads(out.read_text())["schema"] == SCHEMA
    assert report["ok"] is True
    checks = report["checks"]
    assert checks["agreement"]["status"] == "ok"
    assert checks["agreement"]["details"]["worst"][1] <= checks["agreement"]["details"]["tolerance"]
    assert "mcr.ceb.head.net.0.weight" in checks["agreement"]["details"]["relative_errors"]
    assert checks["sync_free"]["details"]["skipped"].startswith("needs CUDA")
    for dtype in ("bfloat16", "float16"):
        entry = checks["autocast"]["details"][dtype]
        assert entry["finite"] and entry["worst_grad_relative_error"] <= entry["tolerance"]
        assert set(entry["training_steps"]) == {"resnet18", "mosei"}
    timing = report["timing"]
    assert timing["memory"] == "skipped on CPU"
    for model in ("resnet18", "mosei"):
        assert list(timing["models"][model]["variants"]) == ["joint", "mcr@4", "input@4"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message shown without CUDA")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--device cpu for a dry run"):
        main(["--out", str(tmp_path / "g.json")])


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_run_on_cuda(tmp_path: Path) -> None:
    report = main(["--quick", "--out", str(tmp_path / "g.json")])
    assert report["ok"] is True, json.dumps(report["checks"], indent=1, default=str)
    assert report["checks"]["sync_free"]["status"] == "ok"
    assert "skipped" not in report["checks"]["sync_free"]["details"]
    memory = report["timing"]["models"]["resnet18"]["variants"]["mcr@4"]["memory"]
    assert memory["method"] == "torch.cuda.max_memory_allocated" and memory["step_bytes"] > 0
