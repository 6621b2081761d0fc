"""The training loop every example uses.

``run_experiment(config, build_model=..., datasets=..., task=...)`` is the whole pipeline of a
``train.py`` (``config`` from :func:`examples.common.cli.train_config`): seed, build the model
and the method, :func:`fit` each of the method's stages to early stopping on the validation
metric, :func:`evaluate` the best weights on the test set and write the run's files
(:mod:`examples.common.reporting`), TensorBoard logs in ``OUT/tb`` and an atomic
``OUT/checkpoint.pt`` after every epoch (``resume`` continues at the next epoch).

:func:`fit` is a short loop over stages and epochs calling :func:`train_one_epoch` and
:func:`evaluate`. They run without touching the disk unless asked, which is how the benchmarks
train hundreds of small models. The parts the loop calls live in their own modules and are
importable from here too: the learning rate (:mod:`examples.common.schedule`), early stopping
(:mod:`examples.common.early_stopping`), evaluation (:mod:`examples.common.evaluation`), the
checkpoint and :func:`restore` (:mod:`examples.common.resume`), TensorBoard logging
(:mod:`examples.common.logger`) and the result types (:mod:`examples.common.outcomes`).

Under ``torchrun`` (a process group initialised before ``run_experiment``), training data is
sharded, the method is wrapped in ``DistributedDataParallel``, evaluation outputs are gathered
from all ranks, and only rank 0 logs and writes files.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from examples.common.config import TrainConfig
from examples.common.data import build_loaders, move_to_device, set_loader_epoch
from examples.common.distributed import broadcast_float, is_distributed, is_main_process
from examples.common.early_stopping import TrackStopper
from examples.common.evaluation import evaluate
from examples.common.logger import Logger, log_epoch
from examples.common.methods import Method, build_method
from examples.common.model import MultimodalModel
from examples.common.outcomes import EvalOutputs, FitResult
from examples.common.reporting import metrics_record, read_reference, write_outputs
from examples.common.resume import CheckpointSaver, Resume, restore
from examples.common.schedule import (
    OptimizerFactory,
    default_optimizer,
    restart_cosine,
    schedule_factor,
    set_learning_rate,
)
from examples.common.task import TaskSpec
from mcr_reg import ImportanceTracker


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(config: TrainConfig) -> Any:
    """``torch.autocast`` for the configured mixed precision (a no-op context for ``"none"``)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    device_type = torch.device(config.device).type
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def train_one_epoch(
    runner: nn.Module,
    method: Method,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    *,
    stage: str,
    epoch: int,
    steps_per_epoch: int,
    clip_groups: list[list[Tensor]],
) -> tuple[dict[str, float], list[float] | None]:
    """One pass over ``loader``: forward (``runner``, the method or its DDP wrapper), backward,
    the method's gradient hook, learning rate, clipping per early-stopping track, step.

    Returns:
        The mean of the loss and of every logged term, and the method's mean training-time
        importance (MCR reports one) or None.
    """
    device = torch.device(config.device)
    sums: dict[str, Tensor] = {}
    importance = ImportanceTracker(method.model.modalities)
    reports_importance = False
    n_steps = 0
    bar = tqdm(
        loader,
        total=steps_per_epoch,
        desc=f"{method.name}:{stage} epoch {epoch + 1}",
        disable=not (config.progress and is_main_process()),
        leave=False,
    )
    for i, batch in enumerate(bar):
        if i >= steps_per_epoch:
            break
        batch = move_to_device(batch, device)
        with autocast(config):
            out = runner(batch, stage)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        scaler.unscale_(optimizer)  # methods and clipping see true gradients
        method.before_optimizer_step(optimizer, stage)
        set_learning_rate(optimizer, config, epoch * steps_per_epoch + i, steps_per_epoch)
        if config.grad_clip is not None:
            for params in clip_groups:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        for k, v in {"loss": out.loss.detach(), **out.terms}.items():
            sums[k] = sums[k] + v.float() if k in sums else v.float().clone()
        if out.importance is not None:
            importance.update(out.importance)
            reports_importance = True
        n_steps += 1
        if i % 20 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{float(out.loss.detach()):.4f}")
    n = max(n_steps, 1)
    terms = {k: float(v) / n for k, v in sums.items()}
    return terms, list(importance.end_epoch().values()) if reports_importance else None


def _track_parameters(method: Method, tracks: Mapping[str, tuple[str, ...]]) -> list[list[Tensor]]:
    named = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    if len(tracks) == 1:
        return [[p for _, p in named]]
    return [
        [p for n, p in named if any(n.startswith(pre) for pre in prefixes)]
        for prefixes in tracks.values()
    ]


def fit(
    method: Method,
    loaders: Mapping[str, Iterable[Any]],
    config: TrainConfig,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    logger: Logger | None = None,
    build_optimizer: OptimizerFactory | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train every stage of ``method`` to early stopping; leaves the best weights loaded.

    For each stage: a fresh optimizer over the stage's parameter groups, then epochs of
    :func:`train_one_epoch` and :func:`evaluate` on the validation set until every
    early-stopping track has run out of patience (or ``max_epochs``); then the best weights
    of each track are restored.

    Args:
        method: the method (already on ``config.device``).
        loaders: ``"train"`` and ``"val"`` loaders (``build_loaders``).
        config: loop settings.
        checkpoint_path: write an atomic checkpoint there after every epoch (rank 0).
        resume: continue from ``checkpoint_path`` (:func:`restore`).
        logger: TensorBoard logger (None: no logging).
        build_optimizer: ``(param_groups, config) -> Optimizer``; default Adam/AdamW. Each
            group's ``initial_lr`` (else its ``lr``) is its learning rate before ``lr_scale``
            and the schedule.
        ddp_kwargs: extra arguments of ``DistributedDataParallel`` (used under torchrun).

    Returns:
        The :class:`FitResult` (history of every epoch, summary of every stage).
    """
    device = torch.device(config.device)
    logger = logger or Logger(None)
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    start = restore(method, checkpoint_path, device) if resume and checkpoint_path else Resume()
    saver = CheckpointSaver(checkpoint_path, method)
    result = start.result
    steps_per_epoch = len(loaders["train"])  # type: ignore[arg-type]
    if config.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches)
    for stage_index in range(start.stage_index, len(method.stages)):
        stage = method.stages[stage_index]
        method.begin_stage(stage)
        resumed = start if stage_index == start.stage_index else Resume()
        optimizer, stopper = _stage_state(method, stage, config, build_optimizer, resumed)
        runner = _distributed(method, device, ddp_kwargs)
        loop = _StageLoop(runner, method, stage, stage_index, optimizer, stopper, config)
        epochs_run = resumed.epoch
        for epoch in range(resumed.epoch, config.max_epochs):
            if stopper.done():  # patience ran out (also: resumed right after the last epoch)
                break
            record = loop.epoch(loaders, epoch, steps_per_epoch)
            result.history.append(record)
            log_epoch(logger, method, record, len(result.history) - 1)
            epochs_run = epoch + 1
            saver.save(optimizer, stopper, result, stage_index, epoch, stage_done=False)
        stopper.restore(method)
        result.stages.append(_stage_summary(stage, epochs_run, stopper))
        saver.save(optimizer, stopper, result, stage_index, epochs_run - 1, stage_done=True)
        if runner is not method:
            # A DistributedDataParallel wrapper sits in reference cycles and holds the process
            # group; freeing it now (not at some later garbage collection, possibly after
            # destroy_process_group) avoids aborts in gloo's teardown at interpreter exit.
            del loop, runner
            gc.collect()
    return result


def _stage_state(
    method: Method,
    stage: str,
    config: TrainConfig,
    build_optimizer: OptimizerFactory | None,
    resumed: Resume,
) -> tuple[torch.optim.Optimizer, TrackStopper]:
    """A stage's fresh optimizer and early stopping, or those of the interrupted stage.

    Every parameter group ends up with ``lr_scale`` and ``initial_lr`` (:func:`set_learning_rate`).
    """
    optimizer = (build_optimizer or default_optimizer)(method.param_groups(stage), config)
    # a factory that sets no initial_lr gives each group's rate before lr_scale as its lr
    initial = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    stopper = TrackStopper(method.tracks(stage), method.task.monitor_mode, config.patience)
    if resumed.optimizer is not None:
        optimizer.load_state_dict(resumed.optimizer)
        stopper.load_state_dict(resumed.stopper or {})
    for group, lr in zip(optimizer.param_groups, initial, strict=True):
        group.setdefault("lr_scale", 1.0)
        group.setdefault("initial_lr", lr)
    return optimizer, stopper


class _StageLoop:
    """The epochs of one stage: train, validate, update early stopping, build the record."""

    def __init__(
        self,
        runner: nn.Module,
        method: Method,
        stage: str,
        stage_index: int,
        optimizer: torch.optim.Optimizer,
        stopper: TrackStopper,
        config: TrainConfig,
    ) -> None:
        self.runner, self.method, self.stage, self.stage_index = runner, method, stage, stage_index
        self.optimizer, self.stopper, self.config = optimizer, stopper, config
        self.device = torch.device(config.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.clip_groups = _track_parameters(method, stopper.tracks)

    def epoch(
        self, loaders: Mapping[str, Iterable[Any]], epoch: int, steps_per_epoch: int
    ) -> dict[str, Any]:
        """Run one epoch; return its history record."""
        method, stage, config = self.method, self.stage, self.config
        t0 = time.time()
        method.begin_epoch(stage, epoch)
        method.set_train_mode(stage)
        train_loader = loaders["train"]
        if isinstance(train_loader, DataLoader):
            set_loader_epoch(train_loader, 1000 * self.stage_index + epoch)
        train_terms, train_importance = train_one_epoch(
            self.runner,
            method,
            train_loader,
            self.optimizer,
            self.scaler,
            config,
            stage=stage,
            epoch=epoch,
            steps_per_epoch=steps_per_epoch,
            clip_groups=self.clip_groups,
        )
        evaluated = evaluate(
            method,
            loaders["val"],
            stage,
            device=self.device,
            max_batches=config.max_batches,
            importance_seed=config.seed if config.importance else None,
        )
        val = evaluated.metrics(method.task)
        method.end_epoch(stage, epoch, val)
        values = {t: broadcast_float(v, self.device) for t, v in method.monitor(stage, val).items()}
        improved = self.stopper.update(epoch, values, method)
        groups = self.optimizer.param_groups
        return {
            "stage": stage,
            "epoch": epoch,
            "train": train_terms,
            "val": val,
            "monitor": values,
            "improved": improved,
            "importance": (
                evaluated.importance.tolist() if evaluated.importance is not None else None
            ),
            "train_importance": train_importance,
            "lr": {g.get("name", str(j)): g["lr"] for j, g in enumerate(groups)},
            "seconds": time.time() - t0,
        }


def _stage_summary(stage: str, epochs_run: int, stopper: TrackStopper) -> dict[str, Any]:
    return {
        "name": stage,
        "epochs_run": epochs_run,
        "best_epoch": dict(stopper.best_epoch),
        "best_value": dict(stopper.best),
    }


def _distributed(
    method: Method, device: torch.device, ddp_kwargs: Mapping[str, Any] | None
) -> nn.Module:
    """``method`` itself, or wrapped in ``DistributedDataParallel`` under torchrun."""
    if not is_distributed():
        return method
    from torch.nn.parallel import DistributedDataParallel

    kwargs = {"find_unused_parameters": True, **dict(ddp_kwargs or {})}
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device])
    return DistributedDataParallel(method, **kwargs)


def _seeded_method(
    config: TrainConfig,
    build_model: Callable[[], MultimodalModel],
    task: TaskSpec,
    device: torch.device,
) -> Method:
    """Seed everything, then build ``config.method`` on a fresh model, on ``device``; a bad
    unimodal reference file fails here, before any training."""
    seed_everything(config.seed)
    method = build_method(config.method, build_model(), task, config.method_options)
    if config.unimodal_reference is not None:
        read_reference(config.unimodal_reference, list(method.model.modalities))
    method.set_seed(config.seed)
    return method.to(device)


def run_experiment(
    config: TrainConfig,
    *,
    build_model: Callable[[], MultimodalModel],
    task: TaskSpec,
    datasets: Mapping[str, Dataset[Any]] | None = None,
    loaders: Mapping[str, Iterable[Any]] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    build_optimizer: OptimizerFactory | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
    data_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and test ``config.method`` on one data set; write the run's files to ``config.out``.

    Seed; build the model and the method; :func:`fit` every stage; :func:`evaluate` the best
    weights on the test and validation sets; write ``metrics.json``, ``test_predictions.json``,
    ``importance.png`` (:mod:`examples.common.reporting`), TensorBoard logs in ``tb/`` and, after
    every epoch, ``checkpoint.pt``.

    Args:
        config: the run (:func:`examples.common.cli.train_config` builds it from the flags).
        build_model: returns a fresh :class:`MultimodalModel` (called after seeding).
        task: the task description (loss, metrics, monitored metric).
        datasets: ``{"train", "val", "test"}`` -> torch Dataset of dict samples.
        loaders: ready loaders instead of ``datasets`` (``build_loaders`` with options).
        collate_fn: collate function for the default loaders.
        build_optimizer: ``(param_groups, config) -> Optimizer`` (default Adam/AdamW).
        ddp_kwargs: extra ``DistributedDataParallel`` arguments under torchrun.
        data_info: facts about the data recorded under ``"data"`` in ``metrics.json``.

    Returns:
        The dict written to ``metrics.json``.

    Raises:
        ValueError: if neither ``datasets`` nor ``loaders`` is given, or CUDA is asked for
            but missing.
    """
    if datasets is None and loaders is None:
        raise ValueError("run_experiment needs datasets or loaders")
    t0 = time.time()
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but torch.cuda.is_available() is False")
    method = _seeded_method(config, build_model, task, device)
    if loaders is None:
        assert datasets is not None
        loaders = _default_loaders(datasets, config, collate_fn)
    if is_main_process():
        config.out.mkdir(parents=True, exist_ok=True)
    logger = Logger(config.out / "tb")
    try:
        fit_result = fit(
            method,
            loaders,
            config,
            checkpoint_path=config.out / "checkpoint.pt",
            resume=config.resume,
            logger=logger,
            build_optimizer=build_optimizer,
            ddp_kwargs=ddp_kwargs,
        )
        test, val = (
            evaluate(
                method,
                loaders[split],
                method.stages[-1],
                device=device,
                max_batches=config.max_batches,
                importance_seed=config.seed if split == "test" else None,
            )
            for split in ("test", "val")
        )
        metrics = metrics_record(
            config, method, test, val, fit_result, time.time() - t0, data_info=data_info
        )
        if is_main_process():
            _write_run(config, metrics, method, test, fit_result, logger)
    finally:
        logger.close()
    return metrics


def _default_loaders(
    datasets: Mapping[str, Dataset[Any]],
    config: TrainConfig,
    collate_fn: Callable[[list[Any]], Any] | None,
) -> dict[str, Any]:
    """:func:`examples.common.data.build_loaders` with the run's batch size, seed and workers."""
    return build_loaders(
        datasets,
        batch_size=config.batch_size,
        seed=config.seed,
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.device(config.device).type == "cuda",
    )


def _write_run(
    config: TrainConfig,
    metrics: dict[str, Any],
    method: Method,
    test: EvalOutputs,
    fit_result: FitResult,
    logger: Logger,
) -> None:
    """The run's files (:func:`examples.common.reporting.write_outputs`) and the test scalars
    in TensorBoard."""
    write_outputs(config.out, metrics, method, test, fit_result)
    logger.scalars("test", {k: v for k, v in metrics["test"].items() if isinstance(v, float)}, 0)


__all__ = [
    "EvalOutputs",
    "FitResult",
    "Logger",
    "Resume",
    "TrackStopper",
    "TrainConfig",
    "default_optimizer",
    "evaluate",
    "fit",
    "restart_cosine",
    "restore",
    "run_experiment",
    "schedule_factor",
    "seed_everything",
    "set_learning_rate",
    "train_one_epoch",
]
