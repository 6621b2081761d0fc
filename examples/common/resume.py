"""The checkpoint of :func:`examples.common.trainer.fit` and resuming from it.

:class:`CheckpointSaver` writes, after every epoch, everything training needs to go on: the
method's state, the stage's optimizer and early stopping, the history so far and the Python,
NumPy and torch random states. :func:`restore` loads it back and says where training goes on
(:class:`Resume`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from examples.common.checkpoint import atomic_torch_save, load_checkpoint
from examples.common.distributed import barrier, is_main_process
from examples.common.early_stopping import TrackStopper
from examples.common.methods import Method
from examples.common.outcomes import FitResult


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Resume:
    """Where :func:`fit` starts: from scratch, or after the last epoch of a checkpoint."""

    result: FitResult = field(default_factory=FitResult)
    stage_index: int = 0
    epoch: int = 0  # the first epoch to run in stage ``stage_index``
    optimizer: dict[str, Any] | None = None  # states for the interrupted stage, if any
    stopper: dict[str, Any] | None = None


def restore(method: Method, checkpoint_path: Path, device: torch.device) -> Resume:
    """Load a checkpoint written by :func:`fit` into ``method``; say where training goes on.

    Restores the method's weights and extra state (e.g. MCR's permutation generator), the
    history, and the Python/NumPy/torch random states. A checkpoint written at the end of a
    stage continues with the next stage; one written mid-stage continues with the next epoch
    of that stage, with its optimizer and early-stopping state.
    """
    ckpt = load_checkpoint(checkpoint_path, map_location=device)
    method.load_state_dict(ckpt["method"])
    _set_rng_state(ckpt["rng"])
    result = FitResult(history=list(ckpt["history"]), stages=list(ckpt["stages"]))
    if ckpt["stage_done"]:
        return Resume(result, stage_index=ckpt["stage_index"] + 1)
    return Resume(
        result,
        stage_index=ckpt["stage_index"],
        epoch=ckpt["epoch"] + 1,
        optimizer=ckpt["optimizer"],
        stopper=ckpt["stopper"],
    )


class CheckpointSaver:
    """Writes :func:`fit`'s checkpoint (rank 0, atomically) to ``path``; nothing when None.

    A checkpoint holds the method's state, the stage's optimizer and early stopping, the
    history so far and the random states: everything :func:`restore` needs.
    """

    version = 1

    def __init__(self, path: Path | None, method: Method) -> None:
        self.path, self.method = path, method

    def save(
        self,
        optimizer: torch.optim.Optimizer,
        stopper: TrackStopper,
        result: FitResult,
        stage_index: int,
        epoch: int,
        *,
        stage_done: bool,
    ) -> None:
        if self.path is None:
            return
        if is_main_process():
            atomic_torch_save(
                {
                    "version": self.version,
                    "stage_index": stage_index,
                    "epoch": epoch,
                    "stage_done": stage_done,
                    "method": self.method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "stopper": stopper.state_dict(),
                    "history": result.history,
                    "stages": result.stages,
                    "rng": _rng_state(),
                },
                self.path,
            )
        barrier()
