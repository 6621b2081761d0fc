"""examples.avmnist.train runs any method of the benchmark, mcr_uni_pre included."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.avmnist.protocol import VARIANTS
from examples.avmnist import train
from examples.common.cli import parse_args, train_config


@pytest.mark.parametrize(
    "given",
    [["--method", "mcr_uni_pre"], ["--method=mcr_uni_pre"]],
    ids=["separate", "joined"],
)
def test_mcr_uni_pre_is_mcr_from_unimodal_initialisation(given: list[str]) -> None:
    argv = train.with_registered_methods(["--data-root", "d", *given, "--out", "o"])
    assert argv == [
        "--data-root",
        "d",
        "--method",
        "mcr",
        "--method-option",
        "init=unimodal",
        "--out",
        "o",
    ]
    config = train_config(parse_args(train.make_parser(), argv))
    method, options = VARIANTS["mcr_uni_pre"]  # what the benchmark trains under that key
    assert config.method == method
    assert {k: config.method_options[k] for k in options} == options


def test_other_methods_are_left_as_given() -> None:
    argv = ["--method", "joint", "--method-option", "x=1"]
    assert train.with_registered_methods(argv) == argv


@pytest.mark.slow
def test_a_smoke_run_of_mcr_uni_pre(avmnist_root: Path, tmp_path: Path) -> None:
    metrics = train.main(
        [
            *("--data-root", str(avmnist_root), "--method", "mcr_uni_pre"),
            *("--train-per-class", "3", "--val-per-class", "1", "--test-per-class", "2"),
            *("--smoke", "--no-progress", "--out", str(tmp_path / "run")),
        ]
    )
    assert metrics["method"] == "mcr" and metrics["method_options"]["init"] == "unimodal"
    assert (tmp_path / "run" / "metrics.json").is_file()
