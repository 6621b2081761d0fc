"""The synthetic competition benchmark: every method along a U1/S sweep (paper Figure 1).

    python -m benchmarks.synthetic --quick --out runs/synthetic-quick
    python -m benchmarks.synthetic --out runs/synthetic-full          # full sweep + ablations
    python -m benchmarks.synthetic --regime undertrained --quick --out runs/undertrained-quick

Two data regimes (:data:`benchmarks.synthetic.protocol.REGIMES`): ``fusion`` (the default, the
first benchmark: the gap to the ensemble comes from fusing a modality that is noise on a point)
and ``undertrained`` (joint training leaves the slow modality's encoder under-trained; measured
by a linear probe of its latent, see :func:`benchmarks.synthetic.training.slow_probe`).

For each sweep point (``u2`` fixed, ``u1`` growing, ``s = 1 - u1 - u2``) and each seed, every
method is trained with the same budget: the same encoders, epochs, patience, batch size and
``G`` tuning trials (the first ``G`` entries of :data:`benchmarks.harness.tuning.GRID`). The trial
with the best mean validation accuracy over the seeds is reported on the test set (mean and std
over seeds).

Outputs in ``--out``: ``results.json`` (:class:`benchmarks.synthetic.results.SweepResult`;
accuracies in [0, 1]), ``results.md`` (tables) and ``accuracy_vs_ratio.png`` (accuracy vs U1/S,
one line per method). Every run also records ``probe``: the test accuracy of a linear probe of
the slow modality's latent; ``probe_gap`` per method and point is the unimodal probe (the
ensemble's own encoder) minus that probe. Each finished training run is kept in
``--out``/runs, so the same command after a stop trains only what is missing
(``--no-resume``: all again).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.harness import sweep
from benchmarks.harness.paired_stats import mean_std
from benchmarks.harness.store import RunStore, add_resume_argument
from benchmarks.harness.tuning import GRID, Budget
from benchmarks.synthetic.generator import SyntheticSpec
from benchmarks.synthetic.protocol import ABLATIONS, BENCHMARK_METHODS, REGIMES
from benchmarks.synthetic.report import markdown, write_outputs
from benchmarks.synthetic.results import Ablations, AblationVariant, Point, Setup, SweepResult
from benchmarks.synthetic.summary import add_probe_gaps, check_claims, error_matrices, select_trial
from benchmarks.synthetic.training import Job, RunResult, job_spec, train_job
from examples.common.provenance import provenance

Key = tuple[Any, ...]  # a job's place in the sweep or the ablations


def _train(
    jobs: dict[Key, Job],
    group: Callable[[Key], Any],
    line: Any,
    desc: str,
    workers: int,
    store: RunStore | None,
    log: Any,
) -> dict[Key, RunResult]:
    """Train ``jobs`` (``{key: result}``) with a line per finished group, and a progress bar
    where stderr is a terminal (a log gets only the lines)."""
    return sweep.run_sweep(
        train_job,
        jobs,
        store=store,
        spec=job_spec,
        result_type=RunResult,
        group=group,
        line=line,
        desc=desc,
        workers=workers,
        progress=sys.stderr.isatty(),
        log=log,
    )


def _point_summary(u1: float, keys: list[Key], runs: list[RunResult]) -> str:
    """``U1=0.40: joint 71.2 | ensemble 75.0 | ...``: mean test % of the best-val trial."""
    by_method: dict[str, dict[int, list[RunResult]]] = {}
    for key, run in zip(keys, runs, strict=True):
        by_method.setdefault(key[2], {}).setdefault(key[3], []).append(run)
    cells = []
    for method, trials in by_method.items():
        best = max(trials.values(), key=lambda rs: statistics.fmean(r.val for r in rs))
        cells.append(f"{method} {100 * statistics.fmean(r.test for r in best):.1f}")
    return f"point U1={u1:.2f} test %: " + " | ".join(cells)


def _ablation_summary(family: str, keys: list[Key], runs: list[RunResult]) -> str:
    """``ablation components: none 70.1 | mipd 71.0 | ...`` (mean test % over seeds)."""
    by_variant: dict[str, list[float]] = {}
    for key, run in zip(keys, runs, strict=True):
        by_variant.setdefault(key[1], []).append(run.test)
    cells = [f"{v} {100 * statistics.fmean(accs):.1f}" for v, accs in by_variant.items()]
    return f"ablation {family} test %: " + " | ".join(cells)


def point_specs(spec: SyntheticSpec, u1_values: Sequence[float], u2: float) -> list[SyntheticSpec]:
    """The generator settings of each sweep point (``s = 1 - u1 - u2``).

    Raises:
        ValueError: for a point without shared points.
    """
    specs = []
    for u1 in u1_values:
        s = round(1.0 - u1 - u2, 10)
        if s < 0:
            raise ValueError(f"u1={u1} and u2={u2} leave no room for shared points (s={s})")
        specs.append(replace(spec, u1=u1, s=s, u2=u2))
    return specs


def train_sweep(
    *,
    u1_values: Sequence[float],
    u2: float,
    methods: Sequence[str],
    seeds: Sequence[int],
    grid_size: int,
    spec: SyntheticSpec,
    budget: Budget,
    workers: int,
    ablations: bool,
    log: Any = print,
    store: RunStore | None = None,
) -> SweepResult:
    """Train everything and return the result (without writing files).

    With a ``store``, runs that finished before are loaded instead of trained again.
    """
    specs = point_specs(spec, u1_values, u2)
    jobs: dict[Key, Job] = {
        ("sweep", pspec.u1, method, t, seed): (pspec, budget, method, trial, seed)
        for pspec in specs
        for method in methods
        for t, trial in enumerate(GRID[method][:grid_size])
        for seed in seeds
    }
    t0 = time.time()
    by_key = _train(jobs, lambda k: k[1], _point_summary, "sweep", workers, store, log)
    log(f"sweep trained in {time.time() - t0:.0f} s")
    result = SweepResult()
    for pspec in specs:
        point = Point(pspec.u1, pspec.s, u2, pspec.u1 / pspec.s if pspec.s else math.inf)
        chosen: dict[str, Sequence[RunResult]] = {}
        for method in methods:
            trials = GRID[method][:grid_size]
            runs_by_trial = [
                [by_key[("sweep", pspec.u1, method, t, sd)] for sd in seeds]
                for t in range(len(trials))
            ]
            point.methods[method], chosen[method] = select_trial(runs_by_trial, trials)
        point.error_matrices = error_matrices(chosen)
        add_probe_gaps(point)
        result.points.append(point)
    if ablations:
        result.ablations = run_ablations(result.points, specs, budget, seeds, workers, log, store)
    return result


def run_ablations(
    points: list[Point],
    specs: list[SyntheticSpec],
    budget: Budget,
    seeds: Sequence[int],
    workers: int,
    log: Any = print,
    store: RunStore | None = None,
) -> Ablations:
    """MCR variants (paper Tables 2-4) at the most imbalanced point.

    Each variant starts from the MCR trial selected on validation at that point and changes
    only the ablated setting.
    """
    index = max(range(len(points)), key=lambda i: points[i].u1)
    spec = specs[index]
    base = dict(points[index].methods["mcr"].trial)
    jobs: dict[Key, Job] = {
        (family, variant, seed): (spec, budget, "mcr", {**base, **overrides}, seed)
        for family, variants in ABLATIONS.items()
        for variant, overrides in variants.items()
        for seed in seeds
    }
    t0 = time.time()
    by_key = _train(
        jobs, lambda k: k[0], _ablation_summary, "ablations", workers, store,
        lambda text: log(f"ablations: {text}"),
    )  # fmt: skip
    log(f"{len(jobs)} ablation runs trained in {time.time() - t0:.0f} s")
    out = Ablations(
        point={"u1": spec.u1, "s": spec.s, "u2": spec.u2},
        base_trial=base,
        cpu_seconds=sum(r.cpu_seconds for r in by_key.values()),
    )
    ensemble = points[index].methods.get("ensemble")
    for family, variants in ABLATIONS.items():
        out.families[family] = {}
        for variant, overrides in variants.items():
            runs = [by_key[(family, variant, sd)] for sd in seeds]
            probes = [r.probe for r in runs]
            gap = None
            if ensemble is not None and ensemble.probe_per_seed is not None:
                gap = statistics.fmean(u - p for u, p in zip(ensemble.probe_per_seed, probes))
            out.families[family][variant] = AblationVariant(
                **mean_std([r.test for r in runs]),
                options={**base, **overrides},
                probe=statistics.fmean(probes),
                probe_gap=gap,
            )
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--regime", choices=sorted(REGIMES), default="fusion", help="data regime")
    p.add_argument("--quick", action="store_true", help="3 points, 3 seeds, 2 trials, no ablations")
    p.add_argument("--u1", type=float, nargs="+", default=None, help="U1 fractions of the sweep")
    p.add_argument("--u2", type=float, default=0.2, help="fixed U2 fraction")
    p.add_argument(
        "--methods", nargs="+", choices=BENCHMARK_METHODS, default=list(BENCHMARK_METHODS)
    )
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--grid", type=int, default=None, help="tuning trials per method (1-3)")
    p.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-eval", type=int, default=None, help="size of val and of test")
    add_resume_argument(p)
    return p


def settings(args: argparse.Namespace) -> tuple[SyntheticSpec, Budget]:
    """The regime's generator settings and the budget, with the command line's overrides."""
    budget = Budget()
    if args.max_epochs is not None or args.patience is not None:
        budget = replace(
            budget,
            max_epochs=args.max_epochs or budget.max_epochs,
            patience=args.patience or budget.patience,
        )
    spec = REGIMES[args.regime]
    if args.n_train is not None or args.n_eval is not None:
        spec = replace(
            spec,
            n_train=args.n_train or spec.n_train,
            n_val=args.n_eval or spec.n_val,
            n_test=args.n_eval or spec.n_test,
        )
    return spec, budget


def cpu_seconds(result: SweepResult) -> float:
    """Single-thread CPU time of all training runs: wall time on W idle cores ~ this / W."""
    sweep = sum(r.cpu_seconds or 0.0 for p in result.points for r in p.methods.values())
    ablations = result.ablations.cpu_seconds if result.ablations is not None else None
    return sweep + (ablations or 0.0)


def main(argv: Sequence[str] | None = None) -> SweepResult:
    started = time.time()
    args = build_parser().parse_args(argv)
    u1_values = args.u1 or ([0.1, 0.4, 0.7] if args.quick else [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    grid = args.grid or (2 if args.quick else 3)
    if not 1 <= grid <= 3:
        raise ValueError(f"expected --grid between 1 and 3, got {grid}")
    ablations = args.ablations if args.ablations is not None else not args.quick
    if ablations and "mcr" not in args.methods:
        raise ValueError("ablations need the mcr method")
    spec, budget = settings(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = train_sweep(
        u1_values=u1_values,
        u2=args.u2,
        methods=args.methods,
        seeds=list(range(args.seeds)),
        grid_size=grid,
        spec=spec,
        budget=budget,
        workers=args.workers,
        ablations=ablations,
        store=RunStore(str(out / "runs"), reuse=args.resume),
    )
    result.claims = check_claims(result)
    result.setup = Setup(
        regime=args.regime,
        spec=asdict(spec),
        budget=asdict(budget),
        seeds=args.seeds,
        grid={m: GRID[m][:grid] for m in args.methods},
        quick=args.quick,
        wall_time_s=time.time() - t0,
        cpu_seconds=cpu_seconds(result),
    )
    result.provenance = provenance(started, arguments=argv)
    write_outputs(result, out)
    print(markdown(result))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'accuracy_vs_ratio.png'}")
    return result
