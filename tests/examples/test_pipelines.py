"""Every pipeline's ``train.py`` through the same two checks, on its tiny real-format data.

* **smoke:** ``--method mcr --smoke`` with the pipeline's released config writes
  ``metrics.json`` (equal to what ``main`` returned), ``test_predictions.json`` (whose labels
  and predictions give the reported accuracy), the importance plot, TensorBoard events and the
  checkpoint; MCR's terms are logged in every joint-stage epoch. The audio-visual pipelines
  (CREMA-D, AVE, UCF-101) run this smoke run once, in their own ``test_train.py``, with the
  same checks (``tests/examples/_helpers/av_pipelines.py``); it is not repeated here.
* **resume:** a run interrupted at the end of its first epoch and resumed with ``--resume``
  gives the same history, epoch by epoch and term by term (MCR's permutation draws included),
  as the uninterrupted run.

Pipeline-specific checks (data counts, configs, errors) stay in ``tests/examples/<pipeline>``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples.common.methods import MCR
from tests.examples._helpers.outputs import assert_accuracy_matches_predictions, assert_mcr_training

#: pipeline -> (root fixture, extra flags of a quick run)
PIPELINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cremad": ("cremad_root", ("--fold", "1")),
    "ave": ("ave_root", ()),
    "ucf": ("ucf_root", ()),
    "mosei": ("mosei_root", ("--num-layers", "1")),
    "sthsth": ("sthsth_root", ()),
    "multiview": ("multiview_root", ("--views", "fou,kar,mor", "--train-per-class", "6")),
}


#: The audio-visual pipelines: their own tests run the MCR smoke run (see the module docstring).
AUDIO_VISUAL = ("cremad", "ave", "ucf")


def _main(pipeline: str) -> Callable[[list[str]], dict[str, Any]]:
    return importlib.import_module(f"examples.{pipeline}.train").main  # type: ignore[no-any-return]


#: multiview: the fixture has 12 samples per class (the real split is 100/50/50)
SMALL_SPLITS = {"multiview": ("--val-per-class", "3", "--test-per-class", "3")}


def _argv(pipeline: str, root: Path, out: Path, *extra: str) -> list[str]:
    base = ["--data-root", str(root), "--out", str(out), "--method", "mcr", "--smoke"]
    base += SMALL_SPLITS.get(pipeline, ())
    return [*base, "--seed", "0", "--no-progress", *PIPELINES[pipeline][1], *extra]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", [p for p in PIPELINES if p not in AUDIO_VISUAL])
def test_mcr_smoke_run_writes_its_outputs(
    pipeline: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root = request.getfixturevalue(PIPELINES[pipeline][0])
    out = tmp_path / "run"
    returned = _main(pipeline)(_argv(pipeline, root, out, "--max-epochs", "1"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))
    assert_accuracy_matches_predictions(out, metrics)
    assert_mcr_training(metrics)
    assert len(metrics["importance"]["test"]) == len(metrics["modalities"])
    assert (out / "importance.png").stat().st_size > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "checkpoint.pt").is_file()


class _InterruptedError(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_resume_reproduces_the_uninterrupted_run(
    pipeline: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = request.getfixturevalue(PIPELINES[pipeline][0])
    main = _main(pipeline)
    argv = _argv(pipeline, root, tmp_path / "part", "--max-epochs", "2")
    full = main(_argv(pipeline, root, tmp_path / "full", "--max-epochs", "2"))

    def stop_after_first_checkpoint(self: MCR, stage: str, epoch: int, val: object) -> None:
        if epoch == 1:  # before epoch 1's checkpoint: the one on disk is epoch 0's
            raise _InterruptedError

    with monkeypatch.context() as patch:
        patch.setattr(MCR, "end_epoch", stop_after_first_checkpoint)
        with pytest.raises(_InterruptedError):
            main(argv)
    assert not (tmp_path / "part" / "metrics.json").exists()
    resumed = main([*argv, "--resume"])
    steps = [(h["stage"], h["epoch"]) for h in resumed["history"]]
    assert steps == [(h["stage"], h["epoch"]) for h in full["history"]]
    assert len(steps) >= 2
    for got, want in zip(resumed["history"], full["history"], strict=True):
        assert got["train"] == pytest.approx(want["train"], rel=1e-5, abs=1e-7), got["stage"]
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-5, abs=1e-7, nan_ok=True)
