"""The training loop every example uses.

``run_experiment(args, build_model=..., datasets=..., task=...)`` is the whole pipeline of a
``train.py``: seed, build the model and the method chosen with ``--method``, train each of the
method's stages to early stopping on the validation metric, evaluate the best weights on the
test set and write ``OUT/metrics.json``, ``OUT/importance.png``, TensorBoard logs in
``OUT/tb`` and an atomic ``OUT/checkpoint.pt`` after every epoch (``--resume`` continues at the
next epoch).

The lower-level pieces (:func:`fit`, :func:`evaluate`) run without touching the disk, which is
how the synthetic benchmark trains hundreds of small models.

Under ``torchrun`` (a process group initialised before ``run_experiment``), training data is
sharded, the method is wrapped in ``DistributedDataParallel``, evaluation outputs are gathered
from all ranks, and only rank 0 logs and writes files.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from examples.common.checkpoint import atomic_torch_save, atomic_write_json, load_checkpoint
from examples.common.data import build_loaders, move_to_device, set_loader_epoch
from examples.common.distributed import (
    all_gather_objects,
    barrier,
    broadcast_float,
    is_distributed,
    is_main_process,
)
from examples.common.importance import permutation_importance, plot_importance
from examples.common.methods import Method, build_method
from examples.common.metrics import error_matrix
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec

OptimizerFactory = Callable[[list[dict[str, Any]], "TrainConfig"], torch.optim.Optimizer]


# --------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Settings of the loop (the ``--`` flags of :mod:`examples.common.cli`).

    ``smoke`` caps training at 2 epochs of ``max_batches`` (default 2) batches and evaluation
    at ``max_batches`` batches: enough to check that a pipeline runs end to end.
    """

    max_epochs: int = 100
    patience: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    optimizer: Literal["adam", "adamw"] = "adam"
    grad_clip: float | None = None
    scheduler: Literal["none", "cosine"] = "none"
    warmup_epochs: float = 0.0
    device: str = "cpu"
    seed: int = 0
    smoke: bool = False
    max_batches: int | None = None
    progress: bool = True
    importance: bool = True
    amp: Literal["none", "bf16", "fp16"] = "none"

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"expected max_epochs >= 1, got {self.max_epochs}")
        if self.patience < 1:
            raise ValueError(f"expected patience >= 1, got {self.patience}")
        if self.lr <= 0:
            raise ValueError(f"expected lr > 0, got {self.lr}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"expected optimizer 'adam' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("none", "cosine"):
            raise ValueError(f"expected scheduler 'none' or 'cosine', got {self.scheduler!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"expected amp 'none', 'bf16' or 'fp16', got {self.amp!r}")
        if self.smoke:
            self.max_epochs = min(self.max_epochs, 2)
            self.max_batches = self.max_batches or 2

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """Build from parsed :func:`examples.common.cli.build_parser` flags."""
        return cls(
            max_epochs=args.max_epochs,
            patience=args.patience,
            lr=args.lr,
            weight_decay=args.weight_decay,
            optimizer=args.optimizer,
            grad_clip=args.grad_clip,
            scheduler=args.scheduler,
            warmup_epochs=args.warmup_epochs,
            device=args.device,
            seed=args.seed,
            smoke=args.smoke,
            progress=not getattr(args, "no_progress", False),
            amp=getattr(args, "amp", "none"),
        )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the method's parameter groups with the config's lr and weight decay."""
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    for group in groups:
        group.setdefault("lr_scale", 1.0)
        group["lr"] = config.lr * group["lr_scale"]
    return cls(groups, lr=config.lr, weight_decay=config.weight_decay)


def autocast(config: TrainConfig) -> Any:
    """``torch.autocast`` for the configured mixed precision (a no-op context for ``"none"``)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    device_type = torch.device(config.device).type
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def schedule_factor(
    config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int
) -> float:
    """Learning-rate multiplier: linear warm-up, then constant or cosine decay to 0."""
    warmup = config.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if config.scheduler == "cosine":
        progress = (step - warmup) / max(1.0, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


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
    """The one place the learning rate is set: ``base_lr × lr_scale × schedule(step)``.

    ``lr_scale`` is each group's multiplier (a method may change it every step: OGM-GE, MLB);
    the schedule is :func:`schedule_factor` over ``config.max_epochs`` epochs.
    """
    factor = schedule_factor(config, step, steps_per_epoch * config.max_epochs, steps_per_epoch)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor * group["lr_scale"]


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
    importance: Tensor | None = None
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
            imp = out.importance.detach().float()
            importance = imp if importance is None else importance + imp
        n_steps += 1
        if i % 20 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{float(out.loss.detach()):.4f}")
    n = max(n_steps, 1)
    terms = {k: float(v) / n for k, v in sums.items()}
    return terms, (importance / n).tolist() if importance is not None else None


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
        build_optimizer: ``(param_groups, config) -> Optimizer``; default Adam/AdamW.
        ddp_kwargs: extra arguments of ``DistributedDataParallel`` (used under torchrun).

    Returns:
        The :class:`FitResult` (history of every epoch, summary of every stage).
    """
    device = torch.device(config.device)
    logger = logger or Logger(None)
    make_optimizer = build_optimizer or default_optimizer
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    start = restore(method, checkpoint_path, device) if resume and checkpoint_path else Resume()
    result = start.result
    train_loader = loaders["train"]
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if config.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches)

    for stage_index in range(start.stage_index, len(method.stages)):
        stage = method.stages[stage_index]
        method.begin_stage(stage)
        optimizer = make_optimizer(method.param_groups(stage), config)
        for group in optimizer.param_groups:
            group.setdefault("lr_scale", 1.0)
            group["base_lr"] = group["lr"] / group["lr_scale"] if group["lr_scale"] else config.lr
        tracks = method.tracks(stage)
        stopper = TrackStopper(tracks, method.task.monitor_mode, config.patience)
        first_epoch = 0
        if stage_index == start.stage_index and start.optimizer is not None:
            optimizer.load_state_dict(start.optimizer)
            stopper.load_state_dict(start.stopper or {})
            first_epoch = start.epoch
        runner = _distributed(method, device, ddp_kwargs)
        scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
        clip_groups = _track_parameters(method, tracks)
        epochs_run = first_epoch
        for epoch in range(first_epoch, config.max_epochs):
            if stopper.done():  # patience ran out (also: resumed right after the last epoch)
                break
            t0 = time.time()
            method.begin_epoch(stage, epoch)
            method.set_train_mode(stage)
            if isinstance(train_loader, DataLoader):
                set_loader_epoch(train_loader, 1000 * stage_index + epoch)
            train_terms, train_importance = train_one_epoch(
                runner,
                method,
                train_loader,
                optimizer,
                scaler,
                config,
                stage=stage,
                epoch=epoch,
                steps_per_epoch=steps_per_epoch,
                clip_groups=clip_groups,
            )
            evaluated = evaluate(
                method,
                loaders["val"],
                stage,
                device=device,
                max_batches=config.max_batches,
                importance_seed=config.seed if config.importance else None,
            )
            val = evaluated.metrics(method.task)
            method.end_epoch(stage, epoch, val)
            values = {t: broadcast_float(v, device) for t, v in method.monitor(stage, val).items()}
            improved = stopper.update(epoch, values, method)
            record = {
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
                "lr": {
                    g.get("name", str(j)): g["lr"] for j, g in enumerate(optimizer.param_groups)
                },
                "seconds": time.time() - t0,
            }
            result.history.append(record)
            _log_epoch(logger, method, record, len(result.history) - 1)
            epochs_run = epoch + 1
            if checkpoint_path is not None:
                _save(
                    checkpoint_path, method, optimizer, stopper, result, stage_index, epoch, False
                )
        stopper.restore(method)
        result.stages.append(
            {
                "name": stage,
                "epochs_run": epochs_run,
                "best_epoch": dict(stopper.best_epoch),
                "best_value": dict(stopper.best),
            }
        )
        if checkpoint_path is not None:
            _save(
                checkpoint_path,
                method,
                optimizer,
                stopper,
                result,
                stage_index,
                epochs_run - 1,
                True,
            )
        if runner is not method:
            # A DistributedDataParallel wrapper sits in reference cycles and holds the process
            # group; freeing it now (not at some later garbage collection, possibly after
            # destroy_process_group) avoids aborts in gloo's teardown at interpreter exit.
            del runner
            gc.collect()
    return result


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


def _save(
    path: Path,
    method: Method,
    optimizer: torch.optim.Optimizer,
    stopper: TrackStopper,
    result: FitResult,
    stage_index: int,
    epoch: int,
    stage_done: bool,
) -> None:
    if is_main_process():
        atomic_torch_save(
            {
                "version": 1,
                "stage_index": stage_index,
                "epoch": epoch,
                "stage_done": stage_done,
                "method": method.state_dict(),
                "optimizer": optimizer.state_dict(),
                "stopper": stopper.state_dict(),
                "history": result.history,
                "stages": result.stages,
                "rng": _rng_state(),
            },
            path,
        )
    barrier()


# --------------------------------------------------------------------------- the experiment
def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen method's hyper-parameters; for ``mcr`` the ``--strategy`` flag is added."""
    options = dict(getattr(args, "method_options", {}) or {})
    if args.method == "mcr":
        options["strategy"] = args.strategy
    return options


def run_experiment(
    args: argparse.Namespace,
    *,
    build_model: Callable[[], MultimodalModel],
    datasets: Mapping[str, Dataset[Any]] | None = None,
    task: TaskSpec,
    loaders: Mapping[str, Iterable[Any]] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    build_optimizer: OptimizerFactory | None = None,
    ddp_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and test one method on one data set; write the run's files into ``args.out``.

    Args:
        args: parsed flags of :func:`examples.common.cli.build_parser` (``parse_args``).
        build_model: returns a fresh :class:`MultimodalModel` (called after seeding).
        datasets: ``{"train", "val", "test"}`` -> torch Dataset of dict samples.
        task: the task description (loss, metrics, monitored metric).
        loaders: ready loaders instead of ``datasets`` (e.g. with a custom sampler).
        collate_fn: collate function for the default loaders.
        build_optimizer: ``(param_groups, config) -> Optimizer`` (default Adam/AdamW).
        ddp_kwargs: extra ``DistributedDataParallel`` arguments under torchrun.

    Returns:
        The dict written to ``metrics.json``.

    Raises:
        ValueError: if neither ``datasets`` nor ``loaders`` is given.
    """
    if datasets is None and loaders is None:
        raise ValueError("run_experiment needs datasets or loaders")
    t0 = time.time()
    config = TrainConfig.from_args(args)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but torch.cuda.is_available() is False")
    seed_everything(config.seed)
    model = build_model()
    method = build_method(args.method, model, task, method_options(args))
    if getattr(args, "unimodal_reference", None) is not None:  # fail before training, not after
        _read_reference(Path(args.unimodal_reference), list(model.modalities))
    method.set_seed(config.seed)
    method.to(device)
    if loaders is None:
        assert datasets is not None
        loaders = build_loaders(
            datasets,
            batch_size=args.batch_size,
            seed=config.seed,
            num_workers=getattr(args, "num_workers", 0),
            collate_fn=collate_fn,
            pin_memory=device.type == "cuda",
        )
    out_dir = Path(args.out)
    if is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
    logger = Logger(out_dir / "tb")
    try:
        fit_result = fit(
            method,
            loaders,
            config,
            checkpoint_path=out_dir / "checkpoint.pt",
            resume=bool(getattr(args, "resume", False)),
            logger=logger,
            build_optimizer=build_optimizer,
            ddp_kwargs=ddp_kwargs,
        )
        final_stage = method.stages[-1]
        test = evaluate(
            method,
            loaders["test"],
            final_stage,
            device=device,
            max_batches=config.max_batches,
            importance_seed=config.seed,
        )
        val = evaluate(
            method,
            loaders["val"],
            final_stage,
            device=device,
            max_batches=config.max_batches,
            importance_seed=None,
        )
        metrics = _summarise(args, method, task, test, val, fit_result, config, t0)
        if is_main_process():
            atomic_write_json(metrics, out_dir / "metrics.json")
            atomic_write_json(
                _test_predictions(task, test, list(method.model.modalities)),
                out_dir / "test_predictions.json",
            )
            rows = [r["importance"] for r in fit_result.history if r["importance"] is not None]
            if rows:
                plot_importance(
                    rows,
                    method.model.modalities,
                    out_dir / "importance.png",
                    title=f"{args.method}: validation importance per modality",
                    accuracy=[
                        r["val"]["multimodal"][task.monitor]
                        for r in fit_result.history
                        if r["importance"] is not None
                    ],
                )
            test_metrics = metrics["test"]
            logger.scalars(
                "test", {k: v for k, v in test_metrics.items() if isinstance(v, float)}, 0
            )
    finally:
        logger.close()
    return metrics


def _test_predictions(task: TaskSpec, test: EvalOutputs, names: list[str]) -> dict[str, Any]:
    """Per-sample test predictions (class indices, or values for regression) for later comparison."""

    def as_list(outputs: Tensor) -> list[Any]:
        pred = task.predict(outputs)
        return (pred if pred is not None else outputs.float().reshape(-1)).tolist()

    return {
        "modalities": names,
        "labels": test.labels.tolist(),
        "multimodal": as_list(test.outputs),
        "unimodal": (
            {m: as_list(test.unimodal[m]) for m in names} if test.unimodal is not None else None
        ),
    }


def _read_reference(path: Path, names: list[str]) -> dict[str, Any]:
    """Read and check a ``test_predictions.json`` given as ``--unimodal-reference``."""
    try:
        ref = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read --unimodal-reference {path}: {err}") from err
    if not isinstance(ref, dict) or not isinstance(ref.get("unimodal"), dict):
        raise ValueError(
            f"expected --unimodal-reference {path} to be a test_predictions.json with unimodal "
            "predictions (written by a run of e.g. --method ensemble), got none"
        )
    missing = [m for m in names if m not in ref["unimodal"]]
    if missing:
        raise ValueError(
            f"--unimodal-reference {path} lacks the modalities {missing}; it has "
            f"{sorted(ref['unimodal'])}"
        )
    return ref


def _reference_unimodal_predictions(path: Path, names: list[str], labels: Tensor) -> list[Tensor]:
    """Unimodal test predictions of another run, checked against this run's test set."""
    ref = _read_reference(path, names)
    if ref.get("labels") != labels.tolist():
        raise ValueError(
            f"--unimodal-reference {path} was made on another test set: expected "
            f"{len(labels)} labels equal to this run's, got {len(ref.get('labels') or [])} "
            "that differ"
        )
    return [torch.tensor(ref["unimodal"][m], dtype=torch.long) for m in names]


def _summarise(
    args: argparse.Namespace,
    method: Method,
    task: TaskSpec,
    test: EvalOutputs,
    val: EvalOutputs,
    fit_result: FitResult,
    config: TrainConfig,
    t0: float,
) -> dict[str, Any]:
    test_m = test.metrics(task)
    val_m = val.metrics(task)
    names = list(method.model.modalities)
    err = None
    pred = task.predict(test.outputs)
    reference = getattr(args, "unimodal_reference", None)
    if pred is not None and reference is not None:
        uni_preds = _reference_unimodal_predictions(Path(reference), names, test.labels.long())
        err = error_matrix(pred, uni_preds, test.labels.long())
        err = {**err.as_dict(), "unimodal_source": str(reference)}
    elif pred is not None and test.unimodal is not None:
        own = [task.predict(test.unimodal[m]) for m in names]
        err = error_matrix(pred, [p for p in own if p is not None], test.labels.long())
        err = {**err.as_dict(), "unimodal_source": f"{method.name} unimodal heads"}
    return _jsonable(
        {
            "method": args.method,
            "strategy": args.strategy if args.method == "mcr" else None,
            "method_options": method.options,
            "seed": config.seed,
            "task": {"kind": task.kind, "num_classes": task.num_classes, "monitor": task.monitor},
            "modalities": names,
            "test": test_m["multimodal"],
            "test_unimodal": test_m["unimodal"],
            "val": val_m["multimodal"],
            "error_matrix": err,
            "importance": {
                "modalities": names,
                "test": test.importance.tolist() if test.importance is not None else None,
                "val_history": [r["importance"] for r in fit_result.history],
                "train_history": [r["train_importance"] for r in fit_result.history],
            },
            "stages": fit_result.stages,
            "history": [
                {k: r[k] for k in ("stage", "epoch", "train", "monitor", "seconds")}
                for r in fit_result.history
            ],
            "config": {
                **asdict(config),
                **{k: v for k, v in vars(args).items() if k != "_default_config"},
            },
            "wall_time_s": time.time() - t0,
        }
    )


__all__ = [
    "EvalOutputs",
    "FitResult",
    "Logger",
    "TrackStopper",
    "TrainConfig",
    "default_optimizer",
    "evaluate",
    "fit",
    "run_experiment",
    "schedule_factor",
    "seed_everything",
]
