"""The sampled-subsets protocol (docs/performance.md, "Sampled subsets on the six-view set"):
the arms, one run, each arm's trial chosen on validation, and the registered loss rule."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from benchmarks.harness.paired_stats import item_resolution, mean_std, paired_comparison
from benchmarks.multiview.jobs import Job, RunResult, best_trial, train
from benchmarks.multiview.protocol import BUDGET, GRID
from examples.multiview.data import NUM_CLASSES, VIEWS, SplitSizes

SCHEMA = "mcr-reg/sampled-subsets/1"

#: The arms: MCR options on top of the trial's.
ARMS: dict[str, dict[str, Any]] = {
    "all": {"subsets": "all"},
    "sampled": {"subsets": "sampled"},
    "singletons": {"subsets": "singletons"},
}
#: A loss of the arm under test: its mean paired difference to "all" below this (points) ...
LOSS_MARGIN = -1.0
#: ... or more than this many of the seeds losing by more than 2 points.
LOSING_SEEDS = 1


def run_key(arm: str, trial: int, seed: int) -> str:
    return f"{arm}/trial{trial}/seed{seed}"


def job_for(args: argparse.Namespace, arm: str, trial: int, seed: int) -> Job:
    options = {**GRID["mcr"][trial], **ARMS[arm]}
    budget = BUDGET if args.max_epochs is None else replace(BUDGET, max_epochs=args.max_epochs)
    sizes = SplitSizes(*args.per_class) if args.per_class else SplitSizes()
    return Job(str(args.data_root), VIEWS, "mcr", options, seed, budget=budget, sizes=sizes)


def train_run(job: Job) -> dict[str, Any]:
    """One run of an arm, as the JSON object the results file keeps under ``runs``."""
    return asdict(train(job))


def arm_summary(
    runs: dict[str, dict[str, Any]], arm: str, trials: int, seeds: int
) -> dict[str, Any]:
    """The arm's trial chosen on mean validation accuracy, and its test accuracy per seed."""
    by_trial = [
        [RunResult(**runs[run_key(arm, t, s)]) for s in range(seeds)] for t in range(trials)
    ]
    chosen = best_trial(by_trial)
    test = [100.0 * r.test for r in by_trial[chosen]]
    return {
        "trial": GRID["mcr"][chosen],
        "test_per_seed": test,
        "test": mean_std(test),
        "val_mean_per_trial": [100.0 * statistics.fmean(r.val for r in rs) for rs in by_trial],
        "seconds_median": statistics.median(r.seconds for rs in by_trial for r in rs),
        "epochs_median": statistics.median(r.epochs for rs in by_trial for r in rs),
    }


def verdict(comparison: dict[str, Any], differences: Sequence[float]) -> str:
    """The registered rule: a loss if the mean difference is below LOSS_MARGIN points or more
    than LOSING_SEEDS seeds lose by more than 2 points; else no loss seen."""
    big_losses = sum(d < -2.0 for d in differences)
    if comparison["mean_diff"] < LOSS_MARGIN or big_losses > LOSING_SEEDS:
        return "loses accuracy"
    return "no loss seen"


def compare_arms(runs: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Every arm's selected trial and test accuracies, and each arm against ``all``."""
    arms = {a: arm_summary(runs, a, args.trials, args.seeds) for a in ARMS}
    sizes = SplitSizes(*args.per_class) if args.per_class else SplitSizes()
    step = item_resolution(sizes.test * NUM_CLASSES, percent=True)  # one test item, in points
    reference = arms["all"]["test_per_seed"]
    against_all = {}
    for arm in ("sampled", "singletons"):
        values = arms[arm]["test_per_seed"]
        comparison = paired_comparison(values, reference, step)
        differences = [a - b for a, b in zip(values, reference)]
        against_all[arm] = {
            **comparison,
            "differences": differences,
            "time_ratio": arms[arm]["seconds_median"] / arms["all"]["seconds_median"],
            "verdict": verdict(comparison, differences),
        }
    return {"arms": arms, "against_all": against_all}
