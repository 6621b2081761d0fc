"""What the multi-view report computes from the view sets' results: under-training per
method, the paired tests (all view sets, and per kind), MCR's gain against under-training and
the ablations' tests. The runner and the combiner of parts both call :func:`add_comparisons`."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from benchmarks.harness.paired_stats import item_resolution, paired_comparison
from benchmarks.multiview.results import (
    MCR_KEYS,
    BenchmarkResult,
    GainRow,
    GainVsUndertraining,
    PairedTest,
    SeedAccuracies,
    Undertraining,
    ViewSetResult,
    kind_group,
)
from benchmarks.multiview.stats import spearman
from examples.multiview.data import NUM_CLASSES


def resolution(split_per_class: Mapping[str, int]) -> float:
    """One test item as a fraction of the test split (``split_per_class["test"]`` items of
    each of the ten digits): the step every test accuracy moves by."""
    return item_resolution(split_per_class["test"] * NUM_CLASSES)


def paired(a: Sequence[float], b: Sequence[float], step: float) -> PairedTest:
    """:func:`benchmarks.harness.paired_stats.paired_comparison` of ``a`` against ``b``, the
    differences rounded to ``step`` (one test item)."""
    return PairedTest(**paired_comparison(a, b, resolution=step))


def undertraining(entry: ViewSetResult, method: str = "joint") -> Undertraining | None:
    """Per view: probe accuracy after unimodal training (ensemble) minus after ``method``.

    Positive = the encoder trained inside the multimodal model probes below its unimodal
    twin (under-trained). ``mean`` is the mean over the set's views, ``max`` the largest.
    """
    m = entry.methods
    if "ensemble" not in m or method not in m:
        return None
    alone, inside = m["ensemble"].probe, m[method].probe
    if alone is None or inside is None:
        return None
    gaps = {v: alone[v].mean - inside[v].mean for v in entry.views}
    return Undertraining(
        per_view=gaps, mean=statistics.fmean(gaps.values()), max=max(gaps.values())
    )


def paired_tests(view_sets: Sequence[ViewSetResult], step: float) -> dict[str, PairedTest]:
    """MCR keys against joint and ensemble over every (view set, seed) pair (differences
    rounded to ``step``)."""
    out: dict[str, PairedTest] = {}
    for key in (*MCR_KEYS, "mcr_singletons"):
        for ref in ("joint", "ensemble"):
            a: list[float] = []
            b: list[float] = []
            for vs in view_sets:
                if key in vs.methods and ref in vs.methods:
                    a += vs.methods[key].per_seed
                    b += vs.methods[ref].per_seed
            if a:
                out[f"{key}-{ref}"] = paired(a, b, step)
    return out


def paired_by_kind(
    view_sets: Sequence[ViewSetResult], step: float
) -> dict[str, dict[str, PairedTest]]:
    """:func:`paired_tests` within the pairs, the triples and the six-view set separately."""
    out = {}
    for group in ("pair", "triple", "six"):
        chosen = [vs for vs in view_sets if kind_group(vs.kind) == group]
        if chosen:
            out[group] = paired_tests(chosen, step)
    return out


def gain_vs_undertraining(view_sets: Sequence[ViewSetResult]) -> GainVsUndertraining:
    """Per view set: MCR - joint test accuracy against the joint encoders' under-training."""
    rows = []
    for vs in view_sets:
        m = vs.methods
        gap = (vs.undertraining or {}).get("joint")
        if gap is None or "mcr" not in m or "joint" not in m:
            continue
        rows.append(GainRow(vs.name, gap.mean, gap.max, m["mcr"].mean - m["joint"].mean))
    gains = [r.mcr_gain for r in rows]
    return GainVsUndertraining(
        rows=rows,
        spearman_mean=spearman([r.undertraining for r in rows], gains),
        spearman_max=spearman([r.undertraining_max for r in rows], gains),
    )


def add_comparisons(result: BenchmarkResult, step: float) -> None:
    """Fill in what is computed from the view sets' entries: under-training per method, each
    view's unimodal accuracy, the paired tests (all, and per kind; differences rounded to
    ``step``, one test item) and the gain against under-training."""
    for entry in result.view_sets:
        gaps = {key: undertraining(entry, key) for key in ("joint", *MCR_KEYS)}
        entry.undertraining = {k: g for k, g in gaps.items() if g is not None} or None
        ensemble = entry.methods.get("ensemble")
        if ensemble is not None and ensemble.unimodal_test is not None:
            entry.unimodal_test = ensemble.unimodal_test
    result.paired = paired_tests(result.view_sets, step)
    result.paired_by_kind = paired_by_kind(result.view_sets, step)
    result.gain_vs_undertraining = gain_vs_undertraining(result.view_sets)


def ablation_tests(
    per_set: dict[str, dict[str, SeedAccuracies]], variants: Sequence[str], step: float
) -> dict[str, PairedTest]:
    """Each ablation variant against ``mcr`` over every (view set, seed) pair of ``per_set``
    (differences rounded to ``step``)."""
    tests = {}
    for variant in variants:
        a = [x for row in per_set.values() for x in row[variant].per_seed]
        b = [x for row in per_set.values() for x in row["mcr"].per_seed]
        tests[f"{variant}-mcr"] = paired(a, b, step)
    return tests
