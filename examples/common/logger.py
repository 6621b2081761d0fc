"""TensorBoard logging of the training loop: :class:`Logger` writes scalars on rank 0,
:func:`log_epoch` one epoch's record of :func:`examples.common.trainer.fit`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from examples.common.distributed import is_main_process
from examples.common.methods import Method


class Logger:
    """TensorBoard scalars on rank 0 (a no-op elsewhere or when ``log_dir`` is None)."""

    def __init__(self, log_dir: Path | None) -> None:
        self.writer = None
        if log_dir is not None and is_main_process():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _flatten(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, Mapping):
            flat.update(_flatten(key, v))
        elif isinstance(v, (int, float)):
            flat[key] = float(v)
    return flat


def log_epoch(logger: Logger, method: Method, record: Mapping[str, Any], step: int) -> None:
    stage = record["stage"]
    logger.scalars(f"{stage}/train", record["train"], step)
    logger.scalars(f"{stage}/val", _flatten("", record["val"]), step)
    logger.scalars(f"{stage}/lr", record["lr"], step)
    names = method.model.modalities
    for key in ("importance", "train_importance"):
        if record[key] is not None:
            logger.scalars(f"{stage}/{key}", dict(zip(names, record[key], strict=True)), step)
