"""The training loop every example uses.

``run_experiment(config, build_model=..., datasets=..., task=...)`` is the whole pipeline of a
``train.py`` (``config`` from :func:`examples.common.cli.train_config`): seed, build the model
and the method, :func:`fit` each of the method's stages to early stopping on the validation
metric, :func:`evaluate` the best weights on the test set and write the run's files
(:mod:`examples.common.reporting`), TensorBoard logs in ``OUT/tb`` and an atomic
``OUT/checkpoint.pt`` after every epoch (``resume`` continues at the next epoch).

:func:`fit` is a short loop over stages and epochs calling :func:`train_one_epoch` and
:func:`evaluate`; :func:`restore` does the resume bookkeeping and :func:`set_learning_rate`
is the one place the learning rate is set. They run without touching the disk unless asked,
which is how the benchmarks train hundreds of small models.

Under ``torchrun`` (a process group initialised before ``run_experiment``), training data is
sharded, the method is wrapped in ``DistributedDataParallel``, evaluation outputs are gathered
from all ranks, and only rank 0 logs and writes files.
"""

from __future__ import annotations

import gc
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from examples.common.checkpoint import atomic_torch_save, load_checkpoint
from examples.common.config import TrainConfig
from examples.common.data import build_loaders, move_to_device, set_loader_epoch
from examples.common.distributed import (
    all_gather_objects,
    barrier,
    broadcast_float,
    is_distributed,
    is_main_process,
)
from examples.common.importance import permutation_importance
from examples.common.methods import Method, build_method
from examples.common.model import MultimodalModel
from examples.common.reporting import read_reference, summarise, write_outputs
from examples.common.task import TaskSpec
from mcr_reg import ImportanceTracker

OptimizerFactory = Callable[[list[dict[str, Any]], "TrainConfig"], torch.optim.Optimizer]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the method's parameter groups with the config's lr and weight decay.

    Each group keeps ``initial_lr`` (the config's lr, stored once) and its ``lr_scale``; its
    ``lr`` starts at their product (:func:`set_learning_rate` sets it at every step).
    """
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    for group in groups:
        group.setdefault("lr_scale", 1.0)
        group["initial_lr"] = config.lr
        group["lr"] = group["initial_lr"] * group["lr_scale"]
    return cls(groups, lr=config.lr, weight_decay=config.weight_decay)


def autocast(config: TrainConfig) -> Any:
    """``torch.autocast`` for the configured mixed precision (a no-op context for ``"none"``)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    device_type = torch.device(config.device).type
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def schedule_factor(
    config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int
) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based, counted within a stage).

    ``"none"`` and ``"cosine"``: a linear warm-up over ``warmup_epochs``, then constant or one
    cosine decay to 0 at ``total_steps``. ``"cosine_restarts"``: the released recipe: 1 for
    the first ``warmup_steps`` steps (the rate is held, not ramped), then
    :func:`restart_cosine` of the step count *from the start of training* (the warm-up steps
    count), as the released code calls ``CosineAnnealingWarmRestarts.step(step)``.
    """
    if config.scheduler == "cosine_restarts":
        if step < config.warmup_steps:
            return 1.0
        return restart_cosine(step, config.restart_period, config.restart_mult)
    warmup = config.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if config.scheduler == "cosine":
        progress = (step - warmup) / max(1.0, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def restart_cosine(step: int, period: int, mult: int) -> float:
    """Cosine annealing with warm restarts (SGDR, Loshchilov and Hutter), ``eta_min = 0``.

    Cycle i lasts ``period * mult**i`` steps; within a cycle the factor is
    ``(1 + cos(pi * t / T_i)) / 2`` at its ``t``-th step, so it is 1 at every restart. The
    same values as ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=period,
    T_mult=mult).step(step)``, computed in integers: torch finds the cycle with a
    floating-point logarithm, which can misplace a boundary (``T_0=1, T_mult=3``, step 121);
    with the released ``T_0=4, T_mult=2`` the two agree at every step tested.
    """
    if step < 0 or period < 1 or mult < 1:
        raise ValueError(
            f"expected step >= 0, period >= 1 and mult >= 1, got {step}, {period}, {mult}"
        )
    if mult == 1:
        t, length = step % period, period
    else:
        start, length = 0, period
        while step >= start + length:
            start += length
            length *= mult
        t = step - start
    return 0.5 * (1.0 + math.cos(math.pi * t / length))


# --------------------------------------------------------------------------- early stopping
class TrackStopper:
    """Early stopping with one or more tracks, each keeping its own best weights.

    A track is a set of state-dict key prefixes; when its monitored value improves, the
    matching entries of the method's state dict are copied (to CPU). The stage stops when
    every track has gone ``patience`` epochs without improving.
    """

    def __init__(self, tracks: Mapping[str, tuple[str, ...]], mode: str, patience: int) -> None:
        self.tracks = dict(tracks)
        self.mode = mode
        self.patience = patience
        self.best: dict[str, float | None] = {t: None for t in tracks}
        self.best_epoch: dict[str, int] = {t: -1 for t in tracks}
        self.bad: dict[str, int] = {t: 0 for t in tracks}
        self.best_state: dict[str, dict[str, Tensor]] = {}

    def _improves(self, new: float, old: float | None) -> bool:
        if math.isnan(new):
            return False
        if old is None:
            return True
        return new > old if self.mode == "max" else new < old

    def update(self, epoch: int, values: Mapping[str, float], method: nn.Module) -> list[str]:
        """Record one epoch's values; returns the tracks that improved."""
        improved = []
        state = None
        for track, prefixes in self.tracks.items():
            value = float(values[track])
            if self._improves(value, self.best[track]):
                state = state if state is not None else method.state_dict()
                self.best[track] = value
                self.best_epoch[track] = epoch
                self.bad[track] = 0
                self.best_state[track] = {
                    k: v.detach().to("cpu", copy=True)
                    for k, v in state.items()
                    # weights only: extra state (e.g. MCR's RNG) must not rewind with them
                    if any(k.startswith(p) for p in prefixes) and not k.endswith("_extra_state")
                }
                improved.append(track)
            else:
                self.bad[track] += 1
        return improved

    def done(self) -> bool:
        return all(b >= self.patience for b in self.bad.values())

    def restore(self, method: nn.Module) -> None:
        """Load every track's best weights into ``method``."""
        for track in self.tracks:
            if track in self.best_state:
                method.load_state_dict(self.best_state[track], strict=False)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = dict(state["best"])
        self.best_epoch = dict(state["best_epoch"])
        self.bad = dict(state["bad"])
        self.best_state = dict(state["best_state"])


# --------------------------------------------------------------------------- evaluation
@dataclass
class EvalOutputs:
    """Everything :func:`evaluate` collects on one split (gathered from all ranks)."""

    outputs: Tensor
    labels: Tensor
    unimodal: dict[str, Tensor] | None
    importance: Tensor | None

    def metrics(self, task: TaskSpec) -> dict[str, Any]:
        uni = None
        if self.unimodal is not None:
            uni = {m: task.metrics(o, self.labels) for m, o in self.unimodal.items()}
        return {"multimodal": task.metrics(self.outputs, self.labels), "unimodal": uni}


@torch.no_grad()
def evaluate(
    method: Method,
    loader: Iterable[Any],
    stage: str,
    *,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
    importance_seed: int | None = 0,
) -> EvalOutputs:
    """Run the method's evaluation heads over ``loader``.

    Args:
        method: the trained method (put in eval mode here).
        loader: batches ``{modality: tensor, "label": tensor}``.
        stage: which stage's heads to use (e.g. ``"unimodal"`` during ensemble training).
        device: where to run.
        max_batches: stop after this many batches (smoke runs).
        importance_seed: seed of the permutations of the importance diagnostic; ``None``
            skips the diagnostic.
    """
    method.eval()
    device = torch.device(device)
    regression = method.task.kind == "regression"
    gen = torch.Generator().manual_seed(importance_seed) if importance_seed is not None else None
    outs: list[Tensor] = []
    labels: list[Tensor] = []
    unis: dict[str, list[Tensor]] | None = None
    imp_sum = torch.zeros(len(method.model.modalities), dtype=torch.float64)
    n_imp = 0

    def head(z: Mapping[str, Tensor]) -> Tensor:
        return method.heads(z, stage)[0]

    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = move_to_device(batch, device)
        latents = method.encode(batch)
        out, uni = method.heads(latents, stage)
        outs.append(out.float().cpu())
        labels.append(batch["label"].cpu())
        if uni is not None:
            unis = unis if unis is not None else {m: [] for m in uni}
            for m, o in uni.items():
                unis[m].append(o.float().cpu())
        if gen is not None and out.shape[0] >= 2:
            imp = permutation_importance(head, latents, regression=regression, generator=gen)
            imp_sum += imp.double() * out.shape[0]
            n_imp += out.shape[0]
    local = (
        torch.cat(outs) if outs else torch.empty(0),
        torch.cat(labels) if labels else torch.empty(0),
        {m: torch.cat(v) for m, v in unis.items()} if unis is not None else None,
        imp_sum,
        n_imp,
    )
    parts = all_gather_objects(local)
    outputs = torch.cat([p[0] for p in parts if p[0].numel()])
    label_t = torch.cat([p[1] for p in parts if p[1].numel()])
    unimodal = None
    if parts[0][2] is not None:
        unimodal = {m: torch.cat([p[2][m] for p in parts if p[2] is not None]) for m in parts[0][2]}
    total_n = sum(p[4] for p in parts)
    importance = None
    if gen is not None and total_n > 0:
        importance = (sum(p[3] for p in parts) / total_n).float()
    return EvalOutputs(outputs, label_t, unimodal, importance)


# --------------------------------------------------------------------------- logging
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


# --------------------------------------------------------------------------- training
@dataclass
class FitResult:
    """Per-epoch history and per-stage summaries of :func:`fit`."""

    history: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)


def _track_parameters(method: Method, tracks: Mapping[str, tuple[str, ...]]) -> list[list[Tensor]]:
    named = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    if len(tracks) == 1:
        return [[p for _, p in named]]
    return [
        [p for n, p in named if any(n.startswith(pre) for pre in prefixes)]
        for prefixes in tracks.values()
    ]


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


def set_learning_rate(
    optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, steps_per_epoch: int
) -> None:
    """The one place the learning rate is set: ``initial_lr × lr_scale × schedule(step)``.

    ``lr_scale`` is each group's multiplier (a method may change it every step: OGM-GE, MLB);
    the schedule is :func:`schedule_factor` over ``config.max_epochs`` epochs.
    """
    factor = schedule_factor(config, step, steps_per_epoch * config.max_epochs, steps_per_epoch)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor * group["lr_scale"]


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
            _log_epoch(logger, method, record, len(result.history) - 1)
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


def _log_epoch(logger: Logger, method: Method, record: Mapping[str, Any], step: int) -> None:
    stage = record["stage"]
    logger.scalars(f"{stage}/train", record["train"], step)
    logger.scalars(f"{stage}/val", _flatten("", record["val"]), step)
    logger.scalars(f"{stage}/lr", record["lr"], step)
    names = method.model.modalities
    for key in ("importance", "train_importance"):
        if record[key] is not None:
            logger.scalars(f"{stage}/{key}", dict(zip(names, record[key], strict=True)), step)


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


# --------------------------------------------------------------------------- the experiment
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
        metrics = summarise(
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
