"""Train one method on AVE with audio and video ResNet-18 encoders, e.g.::

    python -m examples.ave.train --data-root AVE_Dataset --out runs/ave/mcr_seed0 \\
        --method mcr --seed 0 --cache-dir cache --device cuda --num-workers 8

The released hyper-parameters (``configs/resnet18.json``: Adam, lr 1e-4, weight decay 1e-4,
batch 32, MCR with P = 32 permutations, greedy strategy, lambda_M 0.01, contrastive weight 1 at
temperature 0.5, lambda_uni 0.01; the released schedule: 780 steps at the base rate, then
cosine annealing with warm restarts, T_0 = 4 steps, T_mult = 2; at most 1500 epochs per stage,
patience 150 validation rounds) are loaded unless ``--config`` is given; flags override them.
The shared flags (``--method``, ``--strategy``, ``--max-epochs``, ``--device``, ``--seed``,
``--resume``, ``--smoke``, ...) are those of :mod:`examples.common.cli`; the outputs
(``metrics.json``, ``importance.png``, ``tb/``, ``checkpoint.pt``) those of
:mod:`examples.common.trainer`.

AVE has one given train / val / test split; the paper's spread comes from three seeds
(``--seed 0/1/2``). ``--smoke`` also shrinks the inputs (1 s of audio at 8 kHz, 32 x 32 frames)
so that a CPU run on the fixture of :mod:`examples.ave.make_fixture` takes seconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.av_common import runner
from examples.ave import data, model
from examples.common.cli import build_parser
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment

CONFIG = Path(__file__).parent / "configs" / "resnet18.json"


def make_parser() -> argparse.ArgumentParser:
    """The shared parser plus the audio-visual flags."""
    parser = build_parser("Train audio + video ResNet-18 on AVE", default_config=CONFIG)
    runner.add_av_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, load the data, train and test; returns the ``metrics.json`` content."""
    args = runner.parse_av_args(
        make_parser(), argv, data_root_hint="the AVE_Dataset folder (AVE/, Annotations.txt)"
    )
    datasets = data.build_datasets(args.data_root, **runner.media_options(args))
    config = runner.av_config(args)  # method, loop and outputs (released config + flags)
    return run_experiment(
        config,
        build_model=lambda: model.build_model(
            audio_weights=args.pretrained_audio, video_weights=args.pretrained_video
        ),
        task=TaskSpec("classification", num_classes=data.NUM_CLASSES),
        loaders=runner.av_loaders(datasets, config),
        data_info=runner.describe(datasets, dataset="AVE"),
    )


if __name__ == "__main__":
    main()
