"""What the CREMA-D and AVE scripts share: the extra flags of ``train.py``, its argument
checks, the training loader and the call into the common training loop
(:mod:`examples.common.trainer`); and the cache-filling command of ``data.py``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from examples.av_common.dataset import AVClipDataset, ClipRecord, FeatureCache
from examples.av_common.model import build_av_resnet18
from examples.common.cli import parse_args, train_config
from examples.common.data import build_loaders
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment

logger = logging.getLogger(__name__)

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


def parse_av_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, data_root_hint: str
) -> argparse.Namespace:
    """Parse a ``train.py`` command line, turn on logging, and check ``--data-root`` was given.

    Args:
        parser: the pipeline's parser (shared flags plus :func:`add_av_flags`).
        argv: the command line (``None``: ``sys.argv``).
        data_root_hint: what ``--data-root`` should be, for the error message.

    Raises:
        ValueError: no ``--data-root`` (on the command line or in the config).
    """
    args = parse_args(parser, argv)
    configure_logging()
    if args.data_root is None:
        raise ValueError(f"expected --data-root: {data_root_hint}")
    return args


def media_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of a pipeline's ``build_datasets`` that come from the shared flags:
    ``smoke``, ``cache_dir``, ``skip_bad`` and ``progress``."""
    return {
        "smoke": args.smoke,
        "cache_dir": args.cache_dir,
        "skip_bad": args.skip_bad,
        "progress": not args.no_progress,
    }


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
        datasets,
        batch_size=args.batch_size,
        seed=args.seed,
        num_workers=workers,
        pin_memory=pin,
        drop_last=True,  # no step sees a single clip (MCR permutes across the batch)
    )

    def make_model() -> MultimodalModel:
        return build_av_resnet18(
            num_classes, audio_weights=args.pretrained_audio, video_weights=args.pretrained_video
        )

    info = {
        "clips": {name: len(ds) for name, ds in datasets.items()},
        "audio": datasets["train"].audio.to_dict(),
        "video": datasets["train"].video.to_dict(),
        **dict(data_info or {}),
    }
    return run_experiment(
        train_config(args),
        build_model=make_model,
        task=TaskSpec("classification", num_classes=num_classes),
        loaders=loaders,
        data_info=info,
    )


def parse_cache_args(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags of the cache-filling ``python -m examples.<dataset>.data`` command; turns on logging.

    Flags: ``--data-root`` and ``--cache-dir`` (required), ``--smoke`` (cache the small smoke
    inputs), ``--skip-bad`` (skip unreadable clips).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-root", required=True, type=Path)
    parser.add_argument("--cache-dir", required=True, type=Path)
    parser.add_argument("--smoke", action="store_true", help="cache the tiny --smoke inputs")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable clips")
    args = parser.parse_args(argv)
    configure_logging()
    return args


def fill_cache(
    cache: FeatureCache, records: Sequence[ClipRecord], *, skip_bad: bool
) -> list[ClipRecord]:
    """Decode every clip once into ``cache`` (progress bar) and log how many are cached.

    Returns:
        The cached records (all of them unless ``skip_bad``).
    """
    good = cache.build(records, skip_bad=skip_bad)
    logger.info("cached %d clips in %s", len(good), cache.directory)
    return good
