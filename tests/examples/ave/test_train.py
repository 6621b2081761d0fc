"""AVE train.py end to end on the fixture (smoke inputs), its config, and resuming."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from examples.ave import model, train
from examples.ave.make_fixture import NUM_TEST, NUM_VAL
from examples.common.cli import parse_args
from tests.examples._helpers.av_pipelines import (
    check_smoke_outputs,
)

METHODS = ("joint", "ensemble", "mcr")


def smoke_argv(root: Path, out: Path, method: str, *extra: str) -> list[str]:
    return [
        "--data-root", str(root), "--out", str(out), "--method", method, "--smoke",
        "--max-epochs", "1", "--device", "cpu", "--seed", "0", "--no-progress", *extra,
    ]  # fmt: skip


def test_released_settings_are_the_defaults() -> None:
    args = parse_args(train.make_parser(), ["--method", "mcr"])
    assert (args.lr, args.weight_decay, args.batch_size, args.optimizer) == (1e-4, 1e-4, 32, "adam")
    assert args.strategy == "greedy"
    expected = {"num_permutations": 32, "mipd_weight": 0.01, "unimodal_weight": 0.01,
                "contrastive_weight": 1.0, "temperature": 0.5, "ceb_weight": 0.0}  # fmt: skip
    assert {k: args.method_options[k] for k in expected} == expected


def test_bad_media_stop_before_training(ave_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "AVE_Dataset"
    shutil.copytree(ave_root, root)
    victim = sorted((root / "AVE").glob("*.mp4"))[0]
    victim.write_bytes(b"not an mp4")
    with pytest.raises(ValueError, match=re.escape(victim.name)):
        train.main(smoke_argv(root, tmp_path / "run", "joint", "--cache-dir", str(tmp_path / "c")))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_model_is_the_av_resnet18_with_28_classes() -> None:
    net = model.build_model()
    assert net.modalities == ("audio", "video")
    assert (net.fusion_head.linear.in_features, net.fusion_head.linear.out_features) == (1024, 28)


@pytest.fixture(scope="module")
def runs(ave_root: Path, module_runs: Path) -> dict[str, Any]:
    out = module_runs
    return {m: (out / m, train.main(smoke_argv(ave_root, out / m, m))) for m in METHODS}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_writes_its_outputs(runs: dict[str, Any], method: str) -> None:
    out, returned = runs[method]
    metrics = check_smoke_outputs(out, returned, method, num_test=NUM_TEST)
    assert metrics["task"]["num_classes"] == 28
    assert metrics["data"]["clips"] == {"train": 28, "val": NUM_VAL, "test": NUM_TEST}
    assert metrics["data"]["video"]["num_frames"] == 4
    if method == "mcr":
        assert metrics["method_options"]["mipd_weight"] == 0.01


