"""Combine the results of several runs of the multi-view benchmark into one report.

    python -m benchmarks.multiview.combine A/results.json B/results.json --out runs/combined

The full protocol is one command (``benchmarks.multiview.run`` without ``--quick``), but it
takes hours on a laptop. It can be split by view set and method (``--pairs``, ``--no-triples``,
``--six``, ``--methods``) over several sessions or machines and the parts combined here. The
parts must come from the same protocol (seeds, grid, budget, split sizes, ablation seeds):
anything else is an error. Every run is deterministic (one CPU thread, fixed seeds), so where
two parts hold the same method on the same view set their results must agree; the combination
checks that they do (training times aside) and refuses otherwise. The combined report is what
the single command would have written: the paired tests, the probes, the gain against
under-training and the ablation tests are recomputed over the union.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness.result_files import to_json
from benchmarks.multiview.protocol import METHODS
from benchmarks.multiview.report import markdown, write_outputs
from benchmarks.multiview.results import (
    Ablations,
    BenchmarkResult,
    Part,
    PlanRecord,
    SeedAccuracies,
    Setup,
    ViewSetResult,
    load_results,
)
from benchmarks.multiview.summary import ablation_tests, add_comparisons, resolution
from benchmarks.multiview.view_sets import TRIPLE_RANKS, ViewSet, methods_for, pairs, report_order
from examples.common.provenance import provenance

#: Setup entries that must be equal in every part (they define the protocol).
PROTOCOL_KEYS: tuple[str, ...] = ("budget", "split_per_class")
PLAN_KEYS: tuple[str, ...] = ("seeds", "grid")


def _setup(part: BenchmarkResult, name: str) -> tuple[Setup, PlanRecord]:
    """The setup and plan of a single full-protocol run.

    Raises:
        CombineError: for a part without them, or a ``--quick`` run.
    """
    if part.setup is None:
        raise CombineError(f"{name}: expected a results.json with 'setup', it has none")
    if part.quick:
        raise CombineError(f"{name}: expected a run of the full protocol, got a --quick run")
    if part.setup.plan is None:
        raise CombineError(f"{name}: expected a single run's results.json with a plan, got none")
    return part.setup, part.setup.plan


#: Fields of a result that differ between identical runs (wall-clock time).
TIMING_KEYS: frozenset[str] = frozenset({"seconds"})


class CombineError(ValueError):
    """Parts that cannot be combined (different protocols, or results that disagree)."""


def without_timing(value: Any) -> Any:
    """``value`` (a result, or JSON-ready data) as JSON without its wall-clock times."""
    value = to_json(value)
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def _agree(what: str, a: Any, b: Any, names: tuple[str, str]) -> None:
    if without_timing(a) != without_timing(b):
        raise CombineError(
            f"{what}: {names[0]} and {names[1]} disagree; expected identical results "
            f"(the runs are deterministic), got {without_timing(a)!r} and {without_timing(b)!r}"
        )


def _check_protocols(parts: Sequence[BenchmarkResult], names: Sequence[str]) -> None:
    """Every part is a full-protocol run with the same budget, split, seeds and grid."""
    setups = [_setup(part, name) for part, name in zip(parts, names, strict=True)]
    (first, first_plan), first_name = setups[0], names[0]
    for (setup, plan), name in zip(setups[1:], names[1:], strict=True):
        for key in PROTOCOL_KEYS:
            a, b = getattr(first, key), getattr(setup, key)
            _agree(f"setup {key}", a, b, (first_name, name))
        for key in PLAN_KEYS:
            a, b = getattr(first_plan, key), getattr(plan, key)
            _agree(f"plan {key}", a, b, (first_name, name))


def _merge_view_sets(parts: Sequence[BenchmarkResult], names: Sequence[str]) -> list[ViewSetResult]:
    """The union of the parts' view sets in report order, each method in table order; the
    same method on the same view set in two parts must agree."""
    sets: dict[str, ViewSetResult] = {}
    source: dict[tuple[str, str], str] = {}
    for part, name in zip(parts, names, strict=True):
        for vs in part.view_sets:
            entry = sets.setdefault(vs.name, ViewSetResult(vs.name, list(vs.views), vs.kind))
            if (entry.views, entry.kind) != (list(vs.views), vs.kind):
                raise CombineError(
                    f"view set {vs.name}: expected views {entry.views} ({entry.kind}) "
                    f"as in the other parts, got {vs.views} ({vs.kind}) in {name}"
                )
            for key, res in vs.methods.items():
                if key in entry.methods:
                    _agree(
                        f"{vs.name} {key}", entry.methods[key], res, (source[(vs.name, key)], name)
                    )
                else:
                    entry.methods[key] = res
                    source[(vs.name, key)] = name
    order = [*METHODS, "mcr_singletons"]
    for entry in sets.values():
        entry.methods = dict(sorted(entry.methods.items(), key=lambda kv: order.index(kv[0])))
    return sorted(sets.values(), key=lambda e: report_order(e.name, e.kind))


def _merge_ablations(
    parts: Sequence[BenchmarkResult],
    names: Sequence[str],
    result: BenchmarkResult,
    step: float,
) -> Ablations | None:
    """The parts' ablations on the union of their view sets, their tests recomputed
    (differences rounded to ``step``, one test item)."""
    found = [(p.ablations, n) for p, n in zip(parts, names, strict=True) if p.ablations]
    if not found:
        return None
    base, base_name = found[0]
    per_set: dict[str, dict[str, SeedAccuracies]] = {}
    for abl, name in found:
        _agree("ablation variants", base.variants, abl.variants, (base_name, name))
        _agree("ablation seeds", base.seeds, abl.seeds, (base_name, name))
        for vs_name, row in abl.per_view_set.items():
            if vs_name in per_set:
                _agree(f"ablations on {vs_name}", per_set[vs_name], row, (base_name, name))
            per_set[vs_name] = row
    k = len(base.seeds)
    for vs_name, row in per_set.items():
        names_here = [vs.name for vs in result.view_sets]
        main = result.view_set(vs_name).methods.get("mcr") if vs_name in names_here else None
        if main is None or main.per_seed[:k] != row["mcr"].per_seed:
            raise CombineError(
                f"ablations on {vs_name}: expected their mcr seeds to be the main mcr runs' "
                f"first {k} seeds, got {row['mcr'].per_seed}"
            )
    ordered = {e.name: per_set[e.name] for e in result.view_sets if e.name in per_set}
    return Ablations(
        variants=base.variants,
        seeds=base.seeds,
        per_view_set=ordered,
        paired=ablation_tests(ordered, list(base.variants), step),
    )


def _triple_rule(parts: Sequence[BenchmarkResult], names: Sequence[str]) -> Any:
    """The triple rule of the parts that hold one (they must agree)."""
    found = [(p.triple_rule, n) for p, n in zip(parts, names, strict=True) if p.triple_rule]
    for rule, name in found[1:]:
        _agree("the triple rule", found[0][0], rule, (found[0][1], name))
    return found[0][0] if found else None


def combine(parts: Sequence[BenchmarkResult], names: Sequence[str]) -> BenchmarkResult:
    """The union of ``parts``, with every summary recomputed.

    ``names`` label the parts in error messages and in ``setup["combined_from"]``.
    """
    if len(parts) != len(names):
        raise ValueError(f"expected one name per part, got {len(parts)} parts, {len(names)} names")
    if not parts:
        raise CombineError("expected at least one results.json, got none")
    _check_protocols(parts, names)
    result = BenchmarkResult(
        view_sets=_merge_view_sets(parts, names), triple_rule=_triple_rule(parts, names)
    )
    first, plan = _setup(parts[0], names[0])
    step = resolution(first.split_per_class)
    add_comparisons(result, step)
    result.ablations = _merge_ablations(parts, names, result, step)
    costs = [(p.cost, n) for p, n in zip(parts, names, strict=True) if p.cost is not None]
    if len(costs) > 1:
        raise CombineError(
            f"expected the cost measurement in at most one part, got it in "
            f"{[n for _, n in costs]} (run the others with --no-cost)"
        )
    if costs:
        result.cost = costs[0][0]
    result.setup = Setup(
        combined_from=[Part(n, s) for p, n in zip(parts, names, strict=True) if (s := p.setup)],
        budget=first.budget,
        split_per_class=first.split_per_class,
        seeds=plan.seeds,
        grid=plan.grid,
    )
    return result


def coverage(result: BenchmarkResult) -> list[str]:
    """What the full protocol holds that ``result`` lacks, one line per gap (empty: complete)."""
    gaps = []
    sets_missing: dict[tuple[str, ...], list[str]] = {}  # the same methods missing: one line
    for vs in result.view_sets:
        wanted = methods_for(ViewSet(tuple(vs.views), vs.kind), METHODS)
        missing = tuple(k for k in wanted if k not in vs.methods)
        if missing:
            sets_missing.setdefault(missing, []).append(vs.name)
    for missing, names in sets_missing.items():
        gaps.append(f"{', '.join(names)}: no {', '.join(missing)}")
    kinds = {vs.kind for vs in result.view_sets}
    n_pairs = sum(vs.kind == "pair" for vs in result.view_sets)
    if n_pairs < len(pairs()):
        gaps.append(f"{n_pairs} of {len(pairs())} pairs")
    for kind in (*TRIPLE_RANKS, "all6"):
        if kind not in kinds:
            gaps.append(f"no {kind} view set")
    done = set(result.ablations.per_view_set) if result.ablations is not None else set()
    lacking = [vs.name for vs in result.view_sets if vs.name not in done]
    if lacking:
        gaps.append(f"no ablations on {', '.join(lacking)}")
    if result.cost is None:
        gaps.append("no cost measurement")
    return gaps


def main(argv: Sequence[str] | None = None) -> BenchmarkResult:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="results.json of each part")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    args = p.parse_args(argv)
    started = time.time()
    parts = []
    for path in args.results:
        try:
            parts.append(load_results(path))
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
    result = combine(parts, [str(p) for p in args.results])
    gaps = coverage(result)
    if result.setup is not None:
        result.setup.missing_from_the_protocol = gaps
    result.provenance = {
        **provenance(started, arguments=argv),
        "parts": {str(path): part.provenance for path, part in zip(args.results, parts)},
    }
    write_outputs(result, args.out)
    print(markdown(result))
    print(
        "complete: every view set, method, ablation and the cost"
        if not gaps
        else "not the whole protocol: " + "; ".join(gaps)
    )
    print(f"wrote {args.out}/results.json, results.md and the plots")
    return result


if __name__ == "__main__":
    main()
