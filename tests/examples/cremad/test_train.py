"""CREMA-D train.py end to end on the fixture (smoke inputs), its config, and resuming."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from examples.common.cli import parse_args
from examples.cremad import model, train
from tests.examples._helpers.av_pipelines import (
    check_smoke_outputs,
)

METHODS = ("joint", "ensemble", "mcr")


def smoke_argv(root: Path, out: Path, method: str, *extra: str) -> list[str]:
    return [
        "--data-root", str(root), "--out", str(out), "--method", method, "--smoke",
        "--max-epochs", "1", "--device", "cpu", "--seed", "0", "--fold", "1", "--no-progress",
        *extra,
    ]  # fmt: skip


def test_released_settings_are_the_defaults() -> None:
    args = parse_args(train.make_parser(), ["--method", "mcr"])
    assert (args.lr, args.weight_decay, args.batch_size, args.optimizer) == (1e-4, 1e-4, 32, "adam")
    assert args.strategy == "greedy" and args.split == "speaker"
    expected = {"num_permutations": 32, "mipd_weight": 0.1, "unimodal_weight": 0.01,
                "contrastive_weight": 1.0, "temperature": 0.5, "ceb_weight": 0.0}  # fmt: skip
    assert {k: args.method_options[k] for k in expected} == expected
    flags = parse_args(train.make_parser(), ["--method", "mcr", "--lr", "1e-3", "--fold", "3"])
    assert flags.lr == 1e-3 and flags.fold == 3


def test_bad_media_stop_before_training(cremad_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "CREMA-D"
    shutil.copytree(cremad_root, root)
    victim = sorted((root / "AudioWAV").glob("*.wav"))[0]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(victim.name)):
        train.main(smoke_argv(root, tmp_path / "run", "joint"))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_model_is_the_av_resnet18_with_6_classes() -> None:
    net = model.build_model()
    assert net.modalities == ("audio", "video")
    assert (net.fusion_head.linear.in_features, net.fusion_head.linear.out_features) == (1024, 6)


@pytest.fixture(scope="module")
def runs(cremad_root: Path, module_runs: Path) -> dict[str, Any]:
    out = module_runs
    return {m: (out / m, train.main(smoke_argv(cremad_root, out / m, m))) for m in METHODS}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_writes_its_outputs(runs: dict[str, Any], method: str) -> None:
    out, returned = runs[method]
    metrics = check_smoke_outputs(out, returned, method, num_test=6)
    assert metrics["data"]["clips"] == {"train": 24, "val": 6, "test": 6}
    assert metrics["data"]["split"] == "speaker" and metrics["data"]["fold"] == 1
    assert metrics["data"]["video"]["frame_size"] == 32  # --smoke shrinks the inputs
    stages = [(h["stage"], h["epoch"]) for h in metrics["history"]]
    if method == "mcr":  # the released recipe: unimodal pre-training, then MCR
        assert stages == [("unimodal", 0), ("joint", 0)]
        assert metrics["method_options"]["num_permutations"] == 32
        assert metrics["method_options"]["mipd_weight"] == 0.1
        assert metrics["method_options"]["init"] == "unimodal"
    else:
        assert [epoch for _, epoch in stages] == [0]


