"""Train one method on CREMA-D with audio and video ResNet-18 encoders, e.g.::

    python -m examples.cremad.train --data-root CREMA-D --out runs/cremad/mcr_fold0 \\
        --method mcr --fold 0 --cache-dir cache --device cuda --num-workers 8

The released hyper-parameters (``configs/resnet18.json``: Adam, lr 1e-4, weight decay 1e-4,
batch 32, MCR with P = 32 permutations, greedy strategy, lambda_M 0.1, contrastive weight 1 at
temperature 0.5, lambda_uni 0.01; the released schedule: 780 steps at the base rate, then
cosine annealing with warm restarts, T_0 = 4 steps, T_mult = 2; at most 1500 epochs per stage,
patience 100 validation rounds) are loaded unless ``--config`` is given; flags override them.
The shared flags (``--method``, ``--strategy``, ``--max-epochs``, ``--device``, ``--seed``,
``--resume``, ``--smoke``, ...) are those of :mod:`examples.common.cli`; the outputs
(``metrics.json``, ``importance.png``, ``tb/``, ``checkpoint.pt``) those of
:mod:`examples.common.trainer`.

Splits: ``--split speaker`` (default; speaker-disjoint folds made from the file names with
``--split-seed``, the protocol of the MCR paper), ``--split fold-csv`` (the published fold
files, ``--fold-csv`` names them) or ``--split ogm`` (OGM-GE's ``train.csv`` / ``test.csv``).
``--smoke`` also shrinks the inputs (1 s of audio at 8 kHz, 32 x 32 frames) so that a CPU run
on the fixture of :mod:`examples.cremad.make_fixture` takes seconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.av_common import runner
from examples.common.cli import build_parser
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment
from examples.cremad import data, model

CONFIG = Path(__file__).parent / "configs" / "resnet18.json"


def make_parser() -> argparse.ArgumentParser:
    """The shared parser plus the CREMA-D and audio-visual flags."""
    parser = build_parser("Train audio + video ResNet-18 on CREMA-D", default_config=CONFIG)
    parser.add_argument(
        "--split", choices=("speaker", "fold-csv", "ogm"), default="speaker", help="protocol"
    )
    parser.add_argument("--fold", type=int, default=0, help="fold index, from 0")
    parser.add_argument("--num-folds", type=int, default=5, help="generated speaker folds")
    parser.add_argument(
        "--split-seed", type=int, default=0, help="seed of the generated folds / OGM hold-out"
    )
    parser.add_argument(
        "--fold-csv",
        default="folds/fold_{fold}.csv",
        help="published fold file (relative to --data-root unless absolute); {fold} is the "
        "0-based, {fold1} the 1-based fold number",
    )
    parser.add_argument("--ogm-train-csv", default="train.csv", help="OGM-GE train split file")
    parser.add_argument("--ogm-test-csv", default="test.csv", help="OGM-GE test split file")
    runner.add_av_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, load the data, train and test; returns the ``metrics.json`` content."""
    args = runner.parse_av_args(
        make_parser(), argv, data_root_hint="the CREMA-D folder holding AudioWAV/, VideoFlash/"
    )
    datasets = data.build_datasets(
        args.data_root,
        split=args.split,
        fold=args.fold,
        seed=args.split_seed,
        num_folds=args.num_folds,
        fold_csv=args.fold_csv,
        ogm_train_csv=args.ogm_train_csv,
        ogm_test_csv=args.ogm_test_csv,
        **runner.media_options(args),
    )
    config = runner.av_config(args)  # method, loop and outputs (released config + flags)
    return run_experiment(
        config,
        build_model=lambda: model.build_model(
            audio_weights=args.pretrained_audio, video_weights=args.pretrained_video
        ),
        task=TaskSpec("classification", num_classes=data.NUM_CLASSES),
        loaders=runner.av_loaders(datasets, config),
        data_info=runner.describe(datasets, dataset="CREMA-D", split=args.split, fold=args.fold),
    )


if __name__ == "__main__":
    main()
