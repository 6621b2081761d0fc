"""Train one method on UCF-51 (the UCF-101 clips with audio) with audio and video ResNet-18s::

    python -m examples.ucf.train --data-root UCF101 --split 1 --out runs/ucf/mcr/split1 \\
        --method mcr --cache-dir cache --device cuda --num-workers 8

``--data-root`` holds ``UCF-101/`` and ``ucfTrainTestlist/``; ``--split {1,2,3}`` is the official
fold (:mod:`examples.ucf.run_splits` runs all three and reports mean +- std). The released
hyper-parameters (``configs/resnet18.json``: Adam, lr 1e-4, weight decay 1e-4, batch 32; MCR
from unimodally pre-trained encoders, ``init=unimodal``, with P = 32 permutations, greedy
strategy, lambda_M 0.001, contrastive weight 1 at temperature 0.5, lambda_uni 0.1) are loaded
unless ``--config`` is given; flags override them. The shared flags (``--method``,
``--strategy``, ``--max-epochs``, ``--device``, ``--seed``, ``--resume``, ``--smoke``, ...) are
those of :mod:`examples.common.cli`; the outputs (``metrics.json``, ``importance.png``, ``tb/``,
``checkpoint.pt``) those of :mod:`examples.common.trainer`.

The validation set is held out of the training list by group (``--val-fraction`` of each
class's groups, drawn with ``--split-seed``); see :func:`examples.ucf.data.hold_out_groups`.
``--smoke`` also shrinks the inputs (1 s of audio at 8 kHz, 32 x 32 frames) so that a CPU run
on the fixture of :mod:`examples.ucf.make_fixture` takes seconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.av_common import runner
from examples.av_common.model import build_av_resnet18
from examples.common.cli import build_parser
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment
from examples.ucf import data

CONFIG = Path(__file__).parent / "configs" / "resnet18.json"


def make_parser() -> argparse.ArgumentParser:
    """The shared parser plus the UCF and audio-visual flags."""
    parser = build_parser("Train audio + video ResNet-18 on UCF-51", default_config=CONFIG)
    parser.add_argument(
        "--split", type=int, choices=data.SPLITS, default=1, help="official train/test fold"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of each class's training groups held out for validation",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the validation hold-out")
    parser.add_argument(
        "--probe-cache",
        type=Path,
        default=None,
        help="JSON file of the audio-stream probe (default: in --cache-dir, else under "
        "$XDG_CACHE_HOME or ~/.cache)",
    )
    runner.add_av_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, load the data, train and test; returns the ``metrics.json`` content."""
    args = runner.parse_av_args(
        make_parser(), argv, data_root_hint="the folder holding UCF-101/ and ucfTrainTestlist/"
    )
    datasets, fold = data.build_datasets(
        args.data_root,
        args.split,
        val_fraction=args.val_fraction,
        split_seed=args.split_seed,
        probe_cache=args.probe_cache,
        **runner.media_options(args),
    )
    config = runner.av_config(args)  # method, loop and outputs (released config + flags)
    return run_experiment(
        config,
        build_model=lambda: build_av_resnet18(
            len(fold.classes),
            audio_weights=args.pretrained_audio,
            video_weights=args.pretrained_video,
        ),
        task=TaskSpec("classification", num_classes=len(fold.classes)),
        loaders=runner.av_loaders(datasets, config),
        data_info=runner.describe(datasets, **fold.info()),
    )


if __name__ == "__main__":
    main()
