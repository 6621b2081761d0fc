"""The AV-MNIST benchmark: every method on degraded MNIST images paired with spoken digits.

    python -m examples.avmnist.download --out data/avmnist
    python -m benchmarks.avmnist --mnist data/avmnist/mnist --fsdd data/avmnist/fsdd \\
        --quick --out runs/avmnist-quick
    python -m benchmarks.avmnist --mnist data/avmnist/mnist --fsdd data/avmnist/fsdd \\
        --out runs/avmnist-full

The protocol is pre-registered in docs/examples/avmnist.md. For every seed (which fixes the
pairs, the splits and the initialisation) each method gets the same budget and the same
number of tuning trials (:data:`GRID`); the trial with the best mean validation accuracy over
the seeds is reported on the test set. Every run also fits a linear probe on each encoder's
latent; ``probe gap`` = the probe of the encoder trained alone (the ensemble's) minus the
probe of the same encoder trained by the method.

Outputs in ``--out``: ``results.json``, ``results.md``, ``accuracy.png`` (test accuracy per
method, one point per seed) and ``probes.png`` (probe accuracy per modality and method).
Each finished training run is kept in ``--out``/runs, so the same command after a stop
trains only what is missing (``--no-resume``: all again).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.avmnist.protocol import (
    GRID,
    METHOD_KEYS,
    QUICK_METHODS,
    Budget,
    DataSpec,
    Job,
    Plan,
    add_comparisons,
    resolution,
    run_spec,
    select_trial,
    source,
    train,
)
from benchmarks.avmnist.report import markdown, write_outputs
from benchmarks.harness.store import RunStore, add_resume_argument
from benchmarks.harness.sweep import run_sweep
from examples.avmnist.data import PairCounts
from examples.common.provenance import provenance


def run_benchmark(
    data: DataSpec,
    plan: Plan,
    *,
    store: RunStore | None,
    data_digest: str,
    workers: int,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Train every method x trial x seed of the plan (runs kept in ``store``), choose each
    method's trial on validation, and add the comparisons."""
    jobs = {
        (key, t, seed): Job(data, key, trial, seed, plan.budget, plan.counts, data_digest)
        for key in plan.methods
        for t, trial in enumerate(GRID[key][: plan.grid])
        for seed in plan.seeds
    }

    def line(method: Any, keys: list[tuple[str, int, int]], runs: list[dict[str, Any]]) -> str:
        return f"{method}: test % " + " ".join(f"{100 * r['test']:.1f}" for r in runs)

    by_key = run_sweep(
        train,
        jobs,
        store=store,
        spec=run_spec,
        workers=workers,
        progress=progress,
        desc="avmnist",
        group=lambda key: key[0],
        line=line,
        log=log,
    )
    methods = {}
    for key in plan.methods:
        trials = GRID[key][: plan.grid]
        runs = [[by_key[(key, t, s)] for s in plan.seeds] for t in range(len(trials))]
        methods[key] = select_trial(runs, trials)
    result: dict[str, Any] = {"methods": methods}
    add_comparisons(result, resolution(asdict(plan.counts)))
    return result


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--mnist", type=Path, required=True, help="folder with the MNIST idx files")
    p.add_argument("--fsdd", type=Path, required=True, help="folder with the FSDD recordings")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="6 methods, 2 seeds, 1 trial")
    p.add_argument("--methods", nargs="+", choices=METHOD_KEYS, default=None)
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (full 10, quick 2)")
    p.add_argument("--grid", type=int, default=None, help="trials per method (full 2, quick 1)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument(
        "--pairs",
        type=int,
        nargs=3,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="pairs per class",
    )
    p.add_argument(
        "--image-file", choices=("test", "train"), default="test", help="MNIST file of the images"
    )
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--no-progress", action="store_true")
    add_resume_argument(p)
    return p


def make_plan(args: argparse.Namespace) -> Plan:
    """The full protocol, or ``--quick``, with flag overrides."""
    quick = bool(args.quick)
    grid = args.grid or (1 if quick else 2)
    if not 1 <= grid <= 2:
        raise ValueError(f"expected --grid 1 or 2, got {grid}")
    seeds = args.seeds or (2 if quick else 10)
    budget = Budget()
    budget = replace(
        budget,
        max_epochs=args.max_epochs or budget.max_epochs,
        patience=args.patience or budget.patience,
    )
    counts = PairCounts(*args.pairs) if args.pairs else PairCounts()
    return Plan(
        seeds=tuple(range(seeds)),
        grid=grid,
        methods=tuple(args.methods or (QUICK_METHODS if quick else METHOD_KEYS)),
        budget=budget,
        counts=counts,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    started = time.time()
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    data = DataSpec(str(args.mnist), str(args.fsdd), args.image_file, plan.budget.spec_size)
    t0 = time.time()
    src = source(data)  # fail early on bad files, before any worker starts
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    store = RunStore(str(out / "runs"), reuse=args.resume)
    result = run_benchmark(
        data,
        plan,
        store=store,
        data_digest=src.digest,
        workers=args.workers,
        progress=not args.no_progress,
    )
    result["setup"] = {
        "mnist": str(args.mnist),
        "fsdd": str(args.fsdd),
        "image_file": args.image_file,
        "recordings": len(src.recordings),
        "data_digest": src.digest,
        "plan": {k: v for k, v in asdict(plan).items() if k not in ("budget", "counts")},
        "budget": asdict(plan.budget),
        "pairs_per_class": asdict(plan.counts),
        "grid": {k: GRID[k][: plan.grid] for k in plan.methods},
        "quick": bool(args.quick),
        "wall_time_s": time.time() - t0,
        "load_average": os.getloadavg(),
    }
    result["provenance"] = provenance(started, arguments=argv)
    write_outputs(result, out)
    print(markdown(result))
    print(f"wrote {out}/results.json, results.md and the plots in {time.time() - t0:.0f} s")
    return result
