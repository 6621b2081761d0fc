"""CREMA-D train.py end to end on the fixture (smoke inputs), its config, and resuming."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from examples.common import trainer
from examples.common.cli import parse_args
from examples.cremad import train

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


@pytest.fixture(scope="module")
def runs(cremad_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cremad_runs")
    return {m: (out / m, train.main(smoke_argv(cremad_root, out / m, m))) for m in METHODS}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_writes_its_outputs(runs: dict[str, Any], method: str) -> None:
    out, returned = runs[method]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))
    assert metrics["method"] == method and metrics["modalities"] == ["audio", "video"]
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and "macro_f1" in metrics["test"]
    assert len(metrics["importance"]["test"]) == 2
    assert metrics["data"]["clips"] == {"train": 24, "val": 6, "test": 6}
    assert metrics["data"]["split"] == "speaker" and metrics["data"]["fold"] == 1
    assert metrics["data"]["video"]["frame_size"] == 32  # --smoke shrinks the inputs
    assert [h["epoch"] for h in metrics["history"]] == [0]
    if method == "joint":
        assert metrics["error_matrix"] is None  # no unimodal predictions to compare with
    else:
        counts = metrics["error_matrix"]["counts"]
        assert sum(map(sum, counts)) == 6  # every test clip falls in one cell (Figure 5)
    if method == "mcr":
        assert metrics["method_options"]["num_permutations"] == 32
        assert metrics["method_options"]["mipd_weight"] == 0.1
    assert (out / "importance.png").stat().st_size > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "checkpoint.pt").is_file()


class SimulatedCrashError(Exception):
    """Stands for a crash right after the first checkpoint was written."""


@pytest.mark.slow
def test_resume_continues_at_the_next_epoch(
    cremad_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    argv = smoke_argv(cremad_root, out, "mcr", "--max-epochs", "2")
    save = trainer.atomic_torch_save

    def save_then_crash(obj: Any, path: Path) -> None:
        save(obj, path)
        raise SimulatedCrashError

    monkeypatch.setattr(trainer, "atomic_torch_save", save_then_crash)
    with pytest.raises(SimulatedCrashError):
        train.main(argv)
    monkeypatch.undo()
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["stage_done"]) == (0, False)
    assert not (out / "metrics.json").exists()
    resumed = train.main([*argv, "--resume"])
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    first_epoch = {k: checkpoint["history"][0][k] for k in ("stage", "epoch", "train", "seconds")}
    assert {k: resumed["history"][0][k] for k in first_epoch} == first_epoch  # not re-run
