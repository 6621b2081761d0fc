"""Train one method on AV-MNIST, e.g.::

    python -m examples.avmnist.download --out data/avmnist
    python -m examples.avmnist.train --data-root data/avmnist --method mcr --out runs/avmnist-mcr

``--method`` takes every registered method and the benchmark's ``mcr_uni_pre`` (MCR from
unimodal initialisation: ``--method mcr --method-option init=unimodal``, which it stands for).
``--data-root`` holds the MNIST idx files and the FSDD recordings anywhere below it (or give
``--mnist`` and ``--fsdd`` apart). The benchmark's budget (``configs/default.json``) is loaded
unless ``--config`` is given; flags override it. All shared flags (``--method``,
``--strategy``, ``--method-option``, ``--resume``, ``--smoke``, ...) and outputs
(``metrics.json``, ``test_predictions.json``, ``checkpoint.pt``, ``tb/``) are those of
:mod:`examples.common.cli` and :mod:`examples.common.trainer`. ``--seed`` fixes the pairs,
the splits and the training run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.avmnist.data import NUM_CLASSES, PairCounts, build_datasets, load_source
from examples.avmnist.model import build_model
from examples.common.cli import build_parser, parse_args, train_config
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment

CONFIG = Path(__file__).resolve().parent / "configs" / "default.json"

#: Benchmark keys that are a registered method with an option: key -> (method, option).
BENCHMARK_KEYS: dict[str, tuple[str, str]] = {"mcr_uni_pre": ("mcr", "init=unimodal")}


def with_registered_methods(argv: Sequence[str]) -> list[str]:
    """``argv`` with a benchmark key given to ``--method`` (``mcr_uni_pre``) written as the
    registered method and its option (``--method mcr --method-option init=unimodal``)."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--method" and i + 1 < len(args) and args[i + 1] in BENCHMARK_KEYS:
            key, i = args[i + 1], i + 2
        elif arg.startswith("--method=") and arg.split("=", 1)[1] in BENCHMARK_KEYS:
            key, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        method, option = BENCHMARK_KEYS[key]
        out += ["--method", method, "--method-option", option]
    return out


def make_parser() -> argparse.ArgumentParser:
    parser = build_parser(
        "Train on AV-MNIST (MNIST images + FSDD audio); --method also takes mcr_uni_pre "
        "(MCR from unimodal initialisation: mcr with --method-option init=unimodal)",
        default_config=CONFIG,
    )
    parser.add_argument(
        "--mnist", type=Path, default=None, help="MNIST folder (default: data root)"
    )
    parser.add_argument("--fsdd", type=Path, default=None, help="FSDD folder (default: data root)")
    parser.add_argument("--image-file", choices=("test", "train"), default="test")
    parser.add_argument("--spec-size", type=int, default=32, help="spectrogram side")
    parser.add_argument("--channels", type=int, default=6, help="first encoder block's channels")
    parser.add_argument("--train-per-class", type=int, default=PairCounts.train)
    parser.add_argument("--val-per-class", type=int, default=PairCounts.val)
    parser.add_argument("--test-per-class", type=int, default=PairCounts.test)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, read the files, train and test; returns the ``metrics.json`` content."""
    args = parse_args(
        make_parser(), with_registered_methods(sys.argv[1:] if argv is None else argv)
    )
    mnist = args.mnist or args.data_root
    fsdd = args.fsdd or args.data_root
    if mnist is None or fsdd is None:
        raise ValueError(
            "expected --data-root (a folder holding the MNIST idx files and the FSDD recordings) "
            "or both --mnist and --fsdd; get the data with "
            "`python -m examples.avmnist.download --out DIR`"
        )
    source = load_source(mnist, fsdd, image_file=args.image_file, spec_size=args.spec_size)
    counts = PairCounts(args.train_per_class, args.val_per_class, args.test_per_class)
    datasets, info = build_datasets(source, counts, args.seed)
    return run_experiment(
        train_config(args),
        build_model=lambda: build_model(args.spec_size, channels=args.channels),
        datasets=datasets,
        task=TaskSpec("classification", num_classes=NUM_CLASSES),
        data_info={**info, "image_file": args.image_file, "recordings": len(source.recordings)},
    )


if __name__ == "__main__":
    main()
