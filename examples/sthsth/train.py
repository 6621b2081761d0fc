"""Train one method on Something-Something v2 (RGB + optical flow), single process or DDP::

    python -m examples.sthsth.train --data-root DATA --out runs/ssv2_mcr --method mcr --device cuda
    torchrun --standalone --nproc_per_node 8 -m examples.sthsth.train --data-root DATA \\
        --out runs/ssv2_mcr --method mcr --device cuda

The released hyper-parameters (``configs/sthsth_rgb_flow.json``: AdamW lr 1e-5, weight decay
0.02, gradient clipping at norm 5, batch 16, 30 epochs, MCR λ_M 0.1, λ_uni 1, λ_ceb 1) are
loaded unless ``--config`` is given; flags override them. Shared flags and outputs are those of
:mod:`examples.common.cli` and :mod:`examples.common.trainer`.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised here
(NCCL with ``--device cuda``, gloo on CPU), each rank uses the GPU of its ``LOCAL_RANK``, the
training set is split with ``DistributedSampler``, the trainer wraps the method in
``DistributedDataParallel``, gathers evaluation outputs, logs and checkpoints on rank 0 only,
and MCR gathers latents across ranks (``gather_distributed=True``). ``--batch-size`` is per
process.

Mixed precision: the shared ``--amp {none,bf16,fp16}`` flag of :mod:`examples.common.cli`; the
released config asks for ``bf16``. The shared loop runs each training step (encoders, fusion
head, method losses) under ``torch.autocast`` (fp16 with a ``GradScaler``); MCR computes its
divergences and contrastive term in float32 whatever the autocast dtype; evaluation runs in
float32. Mixed precision is used on CUDA only: with ``--device cpu`` this pipeline trains in
float32 whatever ``--amp`` says (:func:`amp_for_device`): CPU runs are tests and smoke runs,
and bfloat16 autocast made the smoke model slower on CPU, not faster. ``metrics.json``
records the precision actually used.

Validation: the official validation set is the reported (``test``) set; the labelled test set
is not public. Model selection (the trainer keeps the best validation epoch) uses a held-out
``--val-fraction`` of the training videos, so the reported number is not selected on itself.

``--smoke`` swaps in the small ``swin3d_smoke`` backbone, 4 frames of 32 x 32 pixels, batches of
2 and no pretrained weights, so a CPU epoch on the fixture takes seconds.
"""

from __future__ import annotations

import argparse
import gc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from examples.common.cli import build_parser, parse_args, train_config
from examples.common.data import build_loaders
from examples.common.distributed import is_distributed, world_size
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment
from examples.sthsth.data import (
    LABELS_FILE,
    SPLIT_FILES,
    SomethingSomething,
    find_annotation,
    read_labels,
    read_split,
)
from examples.sthsth.model import build_model

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "sthsth_rgb_flow.json"
SMOKE = {"backbone": "swin3d_smoke", "num_frames": 4, "frame_size": 32, "batch_size": 2}


def make_parser() -> argparse.ArgumentParser:
    """The shared parser plus this pipeline's flags."""
    parser = build_parser("Train on Something-Something v2", default_config=DEFAULT_CONFIG)
    parser.add_argument("--layout", choices=("hdf5", "webm"), default="hdf5")
    parser.add_argument("--streams", default="rgb,flow", help="comma-separated: rgb,flow")
    parser.add_argument("--backbone", choices=("swin3d_t", "swin3d_smoke"), default="swin3d_t")
    parser.add_argument(
        "--pretrained",
        default="auto",
        help="'auto' (local Kinetics-400 weights if cached), 'none', or a weights file",
    )
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.02,
        help="share of training videos held out for model selection (0: use the validation set)",
    )
    return parser


def amp_for_device(amp: str, device: str) -> str:
    """The mixed precision to train with: ``amp`` on CUDA, ``"none"`` (float32) elsewhere.

    Example:
        >>> amp_for_device("bf16", "cuda"), amp_for_device("bf16", "cpu")
        ('bf16', 'none')
    """
    return amp if device == "cuda" else "none"


def setup_distributed(device: str) -> bool:
    """Initialise the process group under torchrun; returns whether one was started here."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return False
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return True


def holdout_split(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split ``ids`` into (train, held-out) with a seeded shuffle; at least 2 held out.

    Raises:
        ValueError: ``fraction`` outside [0, 1) or too few ids to hold any out.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"expected --val-fraction in [0, 1), got {fraction}")
    if fraction == 0:
        return list(ids), []
    n_val = max(2, round(fraction * len(ids)))
    if n_val >= len(ids):
        raise ValueError(f"cannot hold out {n_val} of {len(ids)} training videos")
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
    held = {ids[i] for i in order[:n_val]}
    return [i for i in ids if i not in held], [i for i in ids if i in held]


def make_datasets(args: argparse.Namespace, streams: Sequence[str]) -> dict[str, Any]:
    """``{"train", "val", "test"}`` data sets (see the module docstring for val and test)."""
    labels = read_labels(find_annotation(args.data_root, LABELS_FILE))
    train_ids = [
        i for i, _ in read_split(find_annotation(args.data_root, SPLIT_FILES["train"]), labels)
    ]
    fit_ids, val_ids = holdout_split(train_ids, args.val_fraction, args.seed)
    common = dict(
        layout=args.layout, streams=streams, num_frames=args.num_frames, size=args.frame_size
    )
    test = SomethingSomething(args.data_root, "validation", train=False, **common)
    train = SomethingSomething(args.data_root, "train", train=True, ids=fit_ids, **common)
    val = (
        SomethingSomething(args.data_root, "train", train=False, ids=val_ids, **common)
        if val_ids
        else test
    )
    return {"train": train, "val": val, "test": test}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, set up DDP if launched by torchrun, train and test."""
    args = parse_args(make_parser(), argv)
    if args.data_root is None:
        raise ValueError("expected --data-root: the Something-Something v2 folder")
    if args.smoke:
        args.backbone, args.num_frames = SMOKE["backbone"], SMOKE["num_frames"]
        args.frame_size, args.pretrained = SMOKE["frame_size"], "none"
        args.batch_size = min(args.batch_size, SMOKE["batch_size"])
    args.amp = amp_for_device(args.amp, args.device)
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    started = setup_distributed(args.device)
    args.world_size = world_size()
    try:
        datasets = make_datasets(args, streams)
        num_classes = datasets["train"].num_classes
        loaders = build_loaders(
            datasets,
            batch_size=args.batch_size,
            seed=args.seed,
            num_workers=args.num_workers,
            pin_memory=args.device == "cuda",
            drop_last=True,  # every MCR step permutes a full batch, on every process
        )
        pretrained = None if args.pretrained == "none" else args.pretrained

        def make_model() -> MultimodalModel:
            return build_model(
                num_classes,
                streams=streams,
                backbone=args.backbone,
                pretrained=pretrained,
            )

        task = TaskSpec("classification", num_classes=num_classes)
        return run_experiment(train_config(args), build_model=make_model, loaders=loaders, task=task)
    finally:
        if started:
            gc.collect()  # free DDP wrappers (reference cycles holding the group) first
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
