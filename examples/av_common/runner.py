"""What the audio-visual scripts (CREMA-D, AVE, UCF-51) share: the extra flags of ``train.py``,
its argument checks, the run's config and loaders, the data facts for ``metrics.json``; and the
cache-filling command of ``data.py``. Each ``train.py`` wires data, model, task and method itself.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from examples.av_common.dataset import AVClipDataset, ClipRecord, FeatureCache
from examples.common.cli import parse_args, train_config
from examples.common.config import TrainConfig
from examples.common.data import build_loaders

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


def av_config(args: argparse.Namespace) -> TrainConfig:
    """The run's :class:`TrainConfig` from the flags; ``--smoke`` caps the batch size so that the
    2-batch smoke epochs see several clips each."""
    config = train_config(args)
    if config.smoke:
        config.batch_size = min(config.batch_size, SMOKE_BATCH_SIZE)
    return config


def av_loaders(
    datasets: Mapping[str, AVClipDataset], config: TrainConfig
) -> dict[str, DataLoader[Any]]:
    """Training, validation and test loaders; every training batch is full, so no MCR step
    sees a single clip (MCR permutes across the batch)."""
    return build_loaders(
        datasets,
        batch_size=config.batch_size,
        seed=config.seed,
        num_workers=config.num_workers,
        pin_memory=config.device == "cuda",
        drop_last=True,
    )


def describe(datasets: Mapping[str, AVClipDataset], **extra: Any) -> dict[str, Any]:
    """What ``metrics.json`` records under ``"data"``: clip counts, audio and video settings."""
    return {
        "clips": {name: len(ds) for name, ds in datasets.items()},
        "audio": datasets["train"].audio.to_dict(),
        "video": datasets["train"].video.to_dict(),
        **extra,
    }


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
