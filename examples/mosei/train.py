"""Train one method on CMU-MOSEI or CMU-MOSI (aligned features), e.g.::

    python -m examples.mosei.train --data-root DATA --out runs/mosei_vt_mcr --method mcr \\
        --modalities VT
    python -m examples.mosei.train --data-root DATA --dataset mosi --modalities VAT ...

The released hyper-parameters for the chosen data set and modalities are loaded from
``configs/{mosei,mosi}_{vt,vat}.json`` unless ``--config`` is given; flags override them.
All shared flags (``--method``, ``--strategy``, ``--max-epochs``, ``--device``, ``--resume``,
``--smoke``, ...) are those of :mod:`examples.common.cli`; outputs (``metrics.json``,
``importance.png``, ``tb/``, ``checkpoint.pt``) are those of :mod:`examples.common.trainer`.

The target is the sentiment score (``--task regression``, L1 loss, early stopping on the
validation MAE, metrics of :mod:`examples.mosei.metrics`) or its sign (``--task binary``:
label ``sentiment >= 0``, BCE, early stopping on accuracy; this reports the has-0 Acc-2/F1,
since the non-0 variant needs the raw scores, which a binary label no longer carries).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from examples.common.cli import build_parser, parse_args, train_config
from examples.common.data import build_loaders
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment
from examples.mosei.data import load_splits, parse_modalities
from examples.mosei.metrics import sentiment_metrics, weighted_f1
from examples.mosei.model import build_model

CONFIG_DIR = Path(__file__).parent / "configs"
SMOKE_BATCH_SIZE = 8


def default_config(dataset: str, modalities: str) -> Path:
    """``configs/<dataset>_<vt|vat>.json`` (``None`` path for other modality sets)."""
    letters = "".join(m[0] for m in parse_modalities(modalities))  # canonical V, A, T order
    return CONFIG_DIR / f"{dataset}_{letters}.json"


def regression_metrics(outputs: Tensor, labels: Tensor) -> dict[str, float]:
    """``metric_fn`` of the regression task: every MOSEI metric on the score predictions."""
    return sentiment_metrics(outputs.reshape(-1), labels.reshape(-1))


def binary_has0_metrics(outputs: Tensor, labels: Tensor) -> dict[str, float]:
    """``metric_fn`` of the binary task: Acc-2 and weighted F1, has-0 (logit >= 0 positive)."""
    pred = outputs.reshape(-1).numpy() >= 0
    true = labels.reshape(-1).numpy() > 0.5
    return {"acc2_has0": float((pred == true).mean()), "f1_has0": weighted_f1(pred, true)}


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``--task``."""
    if task == "regression":
        return TaskSpec(
            "regression", metric_fn=regression_metrics, monitor="mae", monitor_mode="min"
        )
    if task == "binary":
        return TaskSpec("binary", metric_fn=binary_has0_metrics, monitor="accuracy")
    raise ValueError(f"expected task 'regression' or 'binary', got {task!r}")


def make_parser(argv: Sequence[str] | None) -> argparse.ArgumentParser:
    """The shared parser with this pipeline's flags; its default config follows the flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--dataset", choices=("mosei", "mosi"), default="mosei")
    pre.add_argument("--modalities", default="VT")
    known, _ = pre.parse_known_args(argv)
    config = default_config(known.dataset, known.modalities)
    parser = build_parser(
        "Train on CMU-MOSEI / CMU-MOSI", default_config=config if config.is_file() else None
    )
    parser.add_argument("--dataset", choices=("mosei", "mosi"), default="mosei")
    parser.add_argument("--modalities", default="VT", help="letters out of V, A, T (e.g. VT, VAT)")
    parser.add_argument("--task", choices=("regression", "binary"), default="regression")
    parser.add_argument("--num-layers", type=int, default=5, help="Transformer layers")
    parser.add_argument("--num-heads", type=int, default=5, help="attention heads (divide 40)")
    parser.add_argument("--dropout", type=float, default=0.1)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse flags, load the data, train and test; returns the ``metrics.json`` content."""
    args = parse_args(make_parser(argv), argv)
    if args.data_root is None:
        raise ValueError("expected --data-root: the folder holding the MOSEI/MOSI pickle")
    if args.smoke:
        args.batch_size = min(args.batch_size, SMOKE_BATCH_SIZE)
    splits = load_splits(
        args.data_root, dataset=args.dataset, modalities=args.modalities, task=args.task
    )
    datasets = {"train": splits["train"], "val": splits["valid"], "test": splits["test"]}
    loaders = build_loaders(
        datasets,
        batch_size=args.batch_size,
        seed=args.seed,
        num_workers=getattr(args, "num_workers", 0),
        drop_last=True,  # every MCR step permutes a full batch
    )
    feature_dims = splits["train"].feature_dims()

    def make_model() -> Any:
        return build_model(
            feature_dims,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            dropout=args.dropout,
        )

    return run_experiment(
        train_config(args), build_model=make_model, loaders=loaders, task=task_spec(args.task)
    )


if __name__ == "__main__":
    main()
