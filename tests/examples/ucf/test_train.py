"""UCF-51 train.py and run_splits.py end to end on the fixture (smoke inputs), the released
config, resuming, and both ways of starting every entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from examples.common.cli import parse_args
from examples.ucf import run_splits, train
from tests.examples._helpers.av_pipelines import (
    check_smoke_outputs,
)

REPO = Path(__file__).resolve().parents[3]
METHODS = ("joint", "ensemble", "mcr")
NUM_TEST = 5  # split 1 tests on group 1: one clip of each of the 5 classes with audio
KEPT = ["ApplyEyeMakeup", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching"]


def smoke_flags(root: Path, method: str, *extra: str) -> list[str]:
    return [
        "--data-root", str(root), "--method", method, "--smoke", "--max-epochs", "1",
        "--device", "cpu", "--seed", "0", "--no-progress", *extra,
    ]  # fmt: skip


def smoke_argv(root: Path, out: Path, method: str, *extra: str) -> list[str]:
    return [*smoke_flags(root, method, *extra), "--out", str(out)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_entry_point(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python <args>`` (from the repository root), without the package on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_released_settings_are_the_defaults() -> None:
    args = parse_args(train.make_parser(), ["--method", "mcr"])
    assert (args.lr, args.weight_decay, args.batch_size, args.optimizer) == (1e-4, 1e-4, 32, "adam")
    assert (args.strategy, args.split, args.val_fraction) == ("greedy", 1, 0.1)
    expected = {"init": "unimodal", "finetune_lr_scale": 0.1, "num_permutations": 32, "mipd_weight": 0.001,
                "unimodal_weight": 0.1, "contrastive_weight": 1.0, "temperature": 0.5,
                "ceb_weight": 0.0}  # fmt: skip
    assert {k: args.method_options[k] for k in expected} == expected
    with pytest.raises(SystemExit):
        parse_args(train.make_parser(), ["--split", "4"])


def test_bad_media_stop_before_training(ucf_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "UCF101"
    shutil.copytree(ucf_root, root)
    victim = root / "UCF-101" / "BalanceBeam" / "v_BalanceBeam_g15_c01.avi"
    victim.write_bytes(b"RIFF not an avi")
    with pytest.raises(ValueError, match=re.escape(victim.name)):
        train.main(smoke_argv(root, tmp_path / "run", "joint", "--cache-dir", str(tmp_path / "c")))
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.fixture(scope="module")
def runs(ucf_root: Path, module_runs: Path) -> dict[str, Any]:
    out = module_runs
    return {m: (out / m, train.main(smoke_argv(ucf_root, out / m, m))) for m in METHODS}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_smoke_run_writes_its_outputs(runs: dict[str, Any], method: str) -> None:
    out, returned = runs[method]
    metrics = check_smoke_outputs(out, returned, method, num_test=NUM_TEST)
    assert metrics["task"]["num_classes"] == 5
    facts = metrics["data"]
    assert facts["clips"]["test"] == NUM_TEST and facts["split"] == 1
    assert facts["classes"] == KEPT and facts["dropped_classes"] == ["ApplyLipstick"]
    assert (facts["clips_listed"], facts["clips_with_audio"]) == (31, 25)
    if method == "mcr":  # the released setting: unimodal pre-training, then MCR
        assert metrics["method_options"]["init"] == "unimodal"
        assert metrics["method_options"]["mipd_weight"] == 0.001
        assert [(h["stage"], h["epoch"]) for h in metrics["history"]] == [
            ("unimodal", 0),
            ("joint", 0),
        ]


def fake_metrics(split: int) -> dict[str, Any]:
    return {
        "method": "mcr",
        "test": {"accuracy": 0.5 + 0.01 * split, "macro_f1": 0.4 + 0.02 * split},
        "test_unimodal": {"audio": {"accuracy": 0.3 * split}, "video": {"accuracy": 0.1}},
    }


def test_run_splits_sets_the_fold_and_summarises(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_train(argv: list[str]) -> Mapping[str, Any]:
        calls.append(argv)
        split = int(argv[argv.index("--split") + 1])
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(fake_metrics(split)))
        return fake_metrics(split)

    (tmp_path / "split3").mkdir()
    (tmp_path / "split3" / "checkpoint.pt").write_bytes(b"")  # an interrupted fold
    summary = run_splits.run_splits(
        ["--out", str(tmp_path), "--", "--method", "mcr"], train_main=fake_train
    )
    assert [c[:2] for c in calls] == [["--method", "mcr"]] * 3
    assert [c[c.index("--split") + 1] for c in calls] == ["1", "2", "3"]
    assert [c[-1] == "--resume" for c in calls] == [False, False, True]
    accuracies = [0.51, 0.52, 0.53]
    assert summary["mean"]["accuracy"] == pytest.approx(statistics.fmean(accuracies))
    assert summary["std"]["accuracy"] == pytest.approx(0.01)  # sample std of 0.51, 0.52, 0.53
    assert summary["std"]["audio_accuracy"] == pytest.approx(statistics.stdev([0.3, 0.6, 0.9]))
    assert summary["method"] == "mcr"
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    calls.clear()  # a second call reads the finished folds instead of training them again
    again = run_splits.run_splits(
        ["--out", str(tmp_path), "--splits", "1", "2"], train_main=fake_train
    )
    assert calls == [] and again["splits"] == [1, 2]
    assert again["std"]["accuracy"] == pytest.approx(statistics.stdev([0.51, 0.52]))
    with pytest.raises(ValueError, match="--split is set by run_splits"):
        run_splits.run_splits(["--out", str(tmp_path), "--", "--split", "2"], train_main=fake_train)


@pytest.mark.slow
def test_train_runs_as_a_module(ucf_root: Path, tmp_path: Path) -> None:
    run_entry_point("-m", "examples.ucf.train", *smoke_argv(ucf_root, tmp_path / "run", "joint"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["classes"] == KEPT and metrics["method"] == "joint"


#: Starts the other entry points in one interpreter (each launch costs seconds of imports), as
#: ``python -m`` does from the repository root.
ENTRY_POINTS = """
import json, runpy, sys
repo, out, flags = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, repo)  # what python -m does from the repository root
def start(target, *argv):
    sys.argv = [target, *argv]
    try:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        assert done.code in (0, None), (target, done.code)
start("examples.ucf.make_fixture", f"{out}/a")
start("examples.ucf.data", "--data-root", f"{out}/a", "--cache-dir", f"{out}/c", "--smoke")
start("examples.ucf.run_splits", "--out", f"{out}/rs", "--", "--data-root", f"{out}/a", *flags)
start("examples.ucf.make_fixture", f"{out}/b")
start("examples.ucf.data", "--help")
start("examples.ucf.run_splits", "--help")
start("examples.ucf.train", "--data-root", f"{out}/b", "--out", f"{out}/m", *flags)
"""


@pytest.mark.slow
def test_other_entry_points_start_as_modules(tmp_path: Path) -> None:
    flags = json.dumps(smoke_flags(Path("unused"), "joint")[2:])  # without --data-root
    done = run_entry_point("-c", ENTRY_POINTS, str(REPO), str(tmp_path), flags, cwd=tmp_path)
    for name in ("a", "b"):
        assert len(list((tmp_path / name / "UCF-101").glob("*/*.avi"))) == 31
    assert len(list((tmp_path / "c").glob("ucf51-*/*.npz"))) == 25
    assert done.stdout.count("usage:") == 2
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["data"]["classes"] == KEPT
    # run_splits over the three folds: the summary is the mean and sample std of the folds' runs
    per_split = [
        json.loads((tmp_path / "rs" / f"split{k}" / "metrics.json").read_text()) for k in (1, 2, 3)
    ]
    assert [m["data"]["split"] for m in per_split] == [1, 2, 3]
    accuracies = [m["test"]["accuracy"] for m in per_split]
    summary = json.loads((tmp_path / "rs" / "summary.json").read_text())
    assert summary["mean"]["accuracy"] == pytest.approx(statistics.fmean(accuracies))
    assert summary["std"]["accuracy"] == pytest.approx(statistics.stdev(accuracies))
    mean, std = 100 * statistics.fmean(accuracies), 100 * statistics.stdev(accuracies)
    assert f"accuracy: {mean:.1f} +- {std:.1f} % over splits 1, 2, 3" in done.stdout
