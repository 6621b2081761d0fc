"""What the CREMA-D and AVE ``train.py`` scripts share: their extra flags, the training loader
and the call into the common training loop (:mod:`examples.common.trainer`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from examples.av_common.dataset import AVClipDataset
from examples.av_common.model import build_av_resnet18
from examples.common.checkpoint import atomic_write_json
from examples.common.data import EpochSeededSampler, build_loaders
from examples.common.distributed import is_main_process
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment

#: ``--smoke`` caps the batch size so that the 2-batch smoke epochs see several clips each.
SMOKE_BATCH_SIZE = 4


def add_av_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of both audio-visual pipelines, on top of :func:`examples.common.cli.build_parser`."""
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="decode every clip once into this feature cache (progress bar) and train from it; "
        "a new sub-folder is made whenever a preprocessing setting changes",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="drop clips whose media are missing or undecodable (logged with a count) "
        "instead of stopping with an error that names the file",
    )
    for modality in ("audio", "video"):
        parser.add_argument(
            f"--pretrained-{modality}",
            default=None,
            metavar="PATH|torchvision",
            help=f"initialise the {modality} ResNet-18 from a local torchvision state dict, or "
            "from torchvision's download cache with 'torchvision' (never downloads)",
        )


def configure_logging() -> None:
    """INFO-level messages of the data loaders (clip counts, skipped files) on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def train_loader(
    dataset: AVClipDataset, batch_size: int, seed: int, num_workers: int, pin_memory: bool
) -> DataLoader[Any]:
    """Shuffled training loader (order fixed by seed and epoch) that drops the last partial
    batch, so that no step sees a single clip (MCR permutes across the batch).

    Raises:
        ValueError: fewer training clips than one batch.
    """
    if len(dataset) < batch_size:
        raise ValueError(
            f"expected at least batch_size={batch_size} training clips, got {len(dataset)}"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSeededSampler(len(dataset), seed),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        drop_last=True,
    )


def run_av_experiment(
    args: argparse.Namespace,
    datasets: Mapping[str, AVClipDataset],
    num_classes: int,
    *,
    data_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and test ``args.method`` on the audio + video ResNet-18 model.

    Args:
        args: parsed flags (common flags plus :func:`add_av_flags` and the pipeline's own).
        datasets: ``{"train", "val", "test"}`` datasets.
        num_classes: output classes.
        data_info: extra facts about the data recorded under ``"data"`` in ``metrics.json``.

    Returns:
        The content of ``OUT/metrics.json``.
    """
    if args.smoke:
        args.batch_size = min(args.batch_size, SMOKE_BATCH_SIZE)
    pin = args.device == "cuda"
    workers = getattr(args, "num_workers", 0)
    loaders = build_loaders(
        datasets, batch_size=args.batch_size, seed=args.seed, num_workers=workers, pin_memory=pin
    )
    loaders["train"] = train_loader(datasets["train"], args.batch_size, args.seed, workers, pin)

    def make_model() -> MultimodalModel:
        return build_av_resnet18(
            num_classes, audio_weights=args.pretrained_audio, video_weights=args.pretrained_video
        )

    task = TaskSpec("classification", num_classes=num_classes)
    metrics = run_experiment(args, build_model=make_model, loaders=loaders, task=task)
    metrics["data"] = {
        "clips": {name: len(ds) for name, ds in datasets.items()},
        "audio": datasets["train"].audio.to_dict(),
        "video": datasets["train"].video.to_dict(),
        **dict(data_info or {}),
    }
    if is_main_process():
        atomic_write_json(metrics, Path(args.out) / "metrics.json")
    return metrics
