"""End-to-end runs of ``examples.sthsth.train`` on the fixture: single process, resume, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from examples.common.cli import parse_args
from examples.common.data import build_loaders
from examples.sthsth import train
from examples.sthsth.model import VideoEncoder

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def data_root(sthsth_root: Path) -> Path:
    """The HDF5-layout fixture shared by every example test (tests/examples/conftest.py)."""
    return sthsth_root


def _argv(data_root: Path, out: Path, *extra: str) -> list[str]:
    base = ["--data-root", str(data_root), "--out", str(out), "--smoke", "--no-progress"]
    return [*base, "--method", "mcr", *extra]


@pytest.fixture
def training_precision(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.dtype, bool]]:
    """Per training forward of an encoder: (dtype of its patch-embedding convolution's output,
    whether autocast is on for the clip's device)."""
    seen: list[tuple[torch.dtype, bool]] = []
    forward = VideoEncoder.forward

    def recording(self: VideoEncoder, clip: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return forward(self, clip)
        conv_dtypes: list[torch.dtype] = []
        hook = self.backbone.patch_embed.proj.register_forward_hook(
            lambda module, inputs, output: conv_dtypes.append(output.dtype)
        )
        try:
            z = forward(self, clip)
        finally:
            hook.remove()
        seen.append((conv_dtypes[0], torch.is_autocast_enabled(clip.device.type)))
        return z

    monkeypatch.setattr(VideoEncoder, "forward", recording)
    return seen


def test_released_config_asks_for_bf16_used_on_cuda_only() -> None:
    args = parse_args(train.make_parser(), ["--data-root", "unused"])
    assert (args.amp, args.device) == ("bf16", "cpu")
    assert train.amp_for_device(args.amp, "cuda") == "bf16"
    assert train.amp_for_device(args.amp, "cpu") == "none"
    assert train.amp_for_device("fp16", "cuda") == "fp16"
    assert train.amp_for_device("none", "cuda") == "none"
    assert parse_args(train.make_parser(), ["--amp", "none"]).amp == "none"


@pytest.mark.slow
def test_mcr_smoke_single_process(
    data_root: Path, tmp_path: Path, training_precision: list[tuple[torch.dtype, bool]]
) -> None:
    out = tmp_path / "run"
    metrics = train.main(_argv(data_root, out))
    written = json.loads((out / "metrics.json").read_text())
    assert written["test"] == pytest.approx(metrics["test"])
    assert {"accuracy", "macro_f1"} <= set(written["test"])
    assert written["task"] == {"kind": "classification", "num_classes": 4, "monitor": "accuracy"}
    assert written["modalities"] == ["rgb", "flow"]
    config = written["config"]
    assert (config["optimizer"], config["lr"], config["weight_decay"]) == ("adamw", 1e-5, 0.02)
    assert config["grad_clip"] == 5.0 and config["world_size"] == 1
    # the released config asks for bf16; on CPU the pipeline trains in float32
    assert config["amp"] == "none"
    assert training_precision and set(training_precision) == {(torch.float32, False)}
    assert (config["backbone"], config["num_frames"], config["batch_size"]) == (
        "swin3d_smoke",
        4,
        2,
    )
    opts = written["method_options"]
    assert (opts["mipd_weight"], opts["unimodal_weight"], opts["ceb_weight"]) == (0.1, 1.0, 1.0)
    assert opts["init"] == "unimodal" and opts["num_permutations"] == 16  # the released run
    stages = [h["stage"] for h in written["history"]]
    first_joint = stages.index("joint")
    assert first_joint > 0 and set(stages[:first_joint]) == {"unimodal"}
    assert set(stages[first_joint:]) == {"joint"}
    assert {"mcr/mipd", "mcr/contrastive", "mcr/ceb", "mcr/unimodal"} <= set(
        written["history"][-1]["train"]
    )
    assert (out / "importance.png").stat().st_size > 0
    assert any((out / "tb").iterdir())


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_torchrun_gloo(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "examples.sthsth.train",
        *_argv(data_root, out, "--val-fraction", "0", "--device", "cpu"),
    ]
    proc = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["world_size"] == 2
    assert [h["stage"] for h in metrics["history"]] == ["unimodal", "unimodal", "joint", "joint"]
    assert all(math.isfinite(h["train"]["loss"]) for h in metrics["history"])
    # the 4 validation videos are split 2 + 2 over the ranks and gathered for the metrics
    assert metrics["importance"]["test"] is not None
    predictions = json.loads((out / "test_predictions.json").read_text())
    assert len(predictions["labels"]) == len(predictions["multimodal"]) == 4
    assert (out / "importance.png").is_file()
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "importance.png",
        "metrics.json",
        "tb",
        "test_predictions.json",
    ]


def test_holdout_split() -> None:
    ids = [str(i) for i in range(100)]
    fit, held = train.holdout_split(ids, 0.05, seed=3)
    assert len(held) == 5 and len(fit) == 95
    assert sorted(fit + held, key=int) == ids
    assert train.holdout_split(ids, 0.05, seed=3) == (fit, held)
    assert train.holdout_split(ids, 0.05, seed=4)[1] != held
    assert train.holdout_split(ids, 0.0, seed=0) == (ids, [])
    assert len(train.holdout_split(ids[:10], 0.01, seed=0)[1]) == 2  # at least two
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        train.holdout_split(ids, 1.0, seed=0)
    with pytest.raises(ValueError, match="cannot hold out 2 of 2"):
        train.holdout_split(ids[:2], 0.5, seed=0)


def test_too_few_training_videos_for_a_batch() -> None:
    videos = list(range(10))
    with pytest.raises(ValueError, match="at least batch_size=64 training samples, got 10"):
        build_loaders(
            {"train": videos, "val": videos, "test": videos}, batch_size=64, seed=0, drop_last=True
        )


def test_no_process_group_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert train.setup_distributed("cpu") is False


def test_missing_data_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--data-root"):
        train.main(["--out", str(tmp_path), "--smoke"])
    with pytest.raises(FileNotFoundError, match="something-something-v2-labels"):
        train.main(["--data-root", str(tmp_path), "--out", str(tmp_path / "o"), "--smoke"])


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_released_bf16_autocast_on_cuda(
    data_root: Path, tmp_path: Path, training_precision: list[tuple[torch.dtype, bool]]
) -> None:
    metrics = train.main(_argv(data_root, tmp_path / "run", "--device", "cuda"))
    assert metrics["config"]["amp"] == "bf16"
    # the shared loop's autocast covers the encoders: their convolutions run in bfloat16
    assert training_precision and set(training_precision) == {(torch.bfloat16, True)}
    assert all(math.isfinite(h["train"]["loss"]) for h in metrics["history"])
    joint = [h for h in metrics["history"] if h["stage"] == "joint"]
    assert joint and all(math.isfinite(h["train"]["mcr/mipd"]) for h in joint)
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
