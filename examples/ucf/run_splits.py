"""Run one method on the three official UCF-51 folds and report mean +- std, e.g.::

    python -m examples.ucf.run_splits --out runs/ucf/mcr -- \\
        --data-root UCF101 --method mcr --cache-dir cache --device cuda --num-workers 8

Everything after ``--`` goes to :mod:`examples.ucf.train` (except ``--split``, ``--out`` and
``--resume``, which this script sets: fold k writes ``OUT/split<k>/``). The script can be re-run
after an interruption: a fold whose ``metrics.json`` exists is read, not trained again
(``--force`` retrains it), and a fold with only a ``checkpoint.pt`` is resumed.

It writes ``OUT/summary.json``: per fold the test accuracy and macro F1 (and the unimodal
heads' test accuracies where the method has them), and their mean and standard deviation over
the folds (the sample standard deviation, ``ddof = 1``; 0 for a single fold), and prints one
line per metric, e.g. ``accuracy: 55.1 +- 0.6 % over splits 1, 2, 3``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from examples.common.checkpoint import atomic_write_json
from examples.common.provenance import provenance
from examples.ucf import data, train

logger = logging.getLogger(__name__)

#: Flags of ``train.py`` that this script sets itself.
RESERVED = ("--split", "--out", "--resume")


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """This script's flags, and the ``train.py`` flags after ``--``.

    Raises:
        ValueError: a reserved flag is among the ``train.py`` flags.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="one sub-folder per fold")
    parser.add_argument(
        "--splits", type=int, nargs="+", choices=data.SPLITS, default=list(data.SPLITS)
    )
    parser.add_argument("--force", action="store_true", help="retrain folds that have results")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then train.py flags")
    args = parser.parse_args(argv)
    rest = list(args.train_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    for flag in rest:
        if flag.split("=", 1)[0] in RESERVED:
            raise ValueError(
                f"{flag} is set by run_splits per fold; leave it out of the train flags"
            )
    return args, rest


def mean_std_over_folds(per_split: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over folds of every test metric they all report.

    Args:
        per_split: fold -> its ``metrics.json`` content.

    Returns:
        ``{"splits": [...], "per_split": {k: {metric: value}}, "mean": {...}, "std": {...}}``.
    """
    rows: dict[int, dict[str, float]] = {}
    for split, metrics in sorted(per_split.items()):
        row = {name: float(v) for name, v in metrics["test"].items()}
        for modality, values in (metrics.get("test_unimodal") or {}).items():
            if "accuracy" in values:
                row[f"{modality}_accuracy"] = float(values["accuracy"])
        rows[split] = row
    shared = [name for name in next(iter(rows.values())) if all(name in r for r in rows.values())]
    mean = {name: statistics.fmean(r[name] for r in rows.values()) for name in shared}
    std = {
        name: statistics.stdev(r[name] for r in rows.values()) if len(rows) > 1 else 0.0
        for name in shared
    }
    return {"splits": sorted(rows), "per_split": rows, "mean": mean, "std": std}


def run_splits(
    argv: Sequence[str] | None = None,
    *,
    train_main: Callable[[list[str]], Mapping[str, Any]] = train.main,
) -> dict[str, Any]:
    """Train (or read) every requested fold, then write and print the summary.

    Returns:
        The content of ``OUT/summary.json``.
    """
    started = time.time()
    args, rest = parse(argv)
    results: dict[int, Mapping[str, Any]] = {}
    for split in args.splits:
        out = args.out / f"split{split}"
        finished = out / "metrics.json"
        if finished.is_file() and not args.force:
            logger.info("split %d: reading the finished run in %s", split, out)
            results[split] = json.loads(finished.read_text())
            continue
        resume = ["--resume"] if (out / "checkpoint.pt").is_file() and not args.force else []
        results[split] = train_main([*rest, "--split", str(split), "--out", str(out), *resume])
    summary = mean_std_over_folds(results)
    summary["method"] = next(iter(results.values())).get("method")
    summary["provenance"] = provenance(started, arguments=argv)  # each split's is in its metrics
    atomic_write_json(summary, args.out / "summary.json")
    splits = ", ".join(map(str, summary["splits"]))
    for name, value in summary["mean"].items():
        scale, unit = (100.0, " %") if "accuracy" in name or "f1" in name else (1.0, "")
        std = summary["std"][name]
        print(f"{name}: {scale * value:.1f} +- {scale * std:.1f}{unit} over splits {splits}")
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run_splits(argv)


if __name__ == "__main__":
    main()
