"""What the synthetic sweep computes from its training runs: the trial chosen on validation,
the Figure-5 error matrices, the slow-encoder probe gaps and the benchmark's claims."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.harness.paired_stats import mean_std
from benchmarks.harness.tuning import best_trial
from benchmarks.synthetic.protocol import PREMISE_GAP
from benchmarks.synthetic.results import MCR_KEYS, MethodResult, Point, SweepResult
from benchmarks.synthetic.training import RunResult
from examples.common.metrics import ErrorMatrix, error_matrix


def select_trial(
    runs_by_trial: Sequence[Sequence[RunResult]], trials: Sequence[dict[str, Any]]
) -> tuple[MethodResult, Sequence[RunResult]]:
    """The trial with the best mean validation accuracy, summarised over its seeds, and its
    runs."""
    val_means = [statistics.fmean(r.val for r in runs) for runs in runs_by_trial]
    best = best_trial(val_means)
    runs = runs_by_trial[best]
    per_cat = {}
    for name in ("shared", "u1", "u2"):
        vals = [v for r in runs if (v := r.per_category[name]) is not None]
        per_cat[name] = statistics.fmean(vals) if vals else None
    imps = [r.importance for r in runs if r.importance is not None]
    every = [r for rr in runs_by_trial for r in rr]
    accuracy = mean_std([r.test for r in runs])
    summary = MethodResult(
        mean=accuracy["mean"],
        std=accuracy["std"],
        val_mean=val_means[best],
        trial=trials[best],
        trials_val_mean=val_means,
        per_seed=[r.test for r in runs],
        probe=statistics.fmean(r.probe for r in runs),
        probe_per_seed=[r.probe for r in runs],
        per_category=per_cat,
        importance=[statistics.fmean(col) for col in zip(*imps)] if imps else None,
        seconds=sum(r.seconds for r in every),
        cpu_seconds=sum(r.cpu_seconds for r in every),
    )
    return summary, runs


def error_matrices(runs: dict[str, Sequence[RunResult]]) -> dict[str, dict[str, Any]]:
    """Figure-5 matrices per method (its selected trial's ``runs``, per seed), against the
    ensemble's unimodal models of the same seed; none without an ensemble."""
    if "ensemble" not in runs:
        return {}
    refs = [r.unimodal_pred for r in runs["ensemble"]]
    out = {}
    for name, method_runs in runs.items():
        total = None
        for run, ref in zip(method_runs, refs, strict=True):
            if ref is None:
                continue
            em = error_matrix(
                torch.tensor(run.pred),
                [torch.tensor(ref[k]) for k in sorted(ref)],
                torch.tensor(run.labels),
            )
            total = em.counts if total is None else total + em.counts
        if total is not None:
            out[name] = {
                **ErrorMatrix(total).as_dict(),
                "unimodal_source": "ensemble unimodal models",
            }
    return out


def add_probe_gaps(point: Point) -> None:
    """Set ``probe_gap`` (and per seed) of every method: unimodal probe minus its probe.

    The unimodal probe of a seed is that of the ensemble's slow-modality model (trained
    alone) on the same seed, with the ensemble's selected trial. Positive: the method left the
    slow encoder less linearly informative than training it alone does. ``None`` without an
    ensemble in the run.
    """
    ensemble = point.methods.get("ensemble")
    ref = ensemble.probe_per_seed if ensemble is not None else None
    for res in point.methods.values():
        if ref is None or res.probe_per_seed is None:
            res.probe_gap, res.probe_gap_per_seed = None, None
            continue
        gaps = [u - p for u, p in zip(ref, res.probe_per_seed, strict=True)]
        res.probe_gap = statistics.fmean(gaps)
        res.probe_gap_per_seed = gaps


def check_claims(result: SweepResult) -> dict[str, Any]:
    """The benchmark's claims at the most imbalanced point (largest U1/S).

    ``joint_below_ensemble``, and for ``mcr``: ``mcr_above_ensemble``, ``mcr_above_joint``,
    ``mcr_at_or_above_all`` (every baseline, i.e. every key not in :data:`MCR_KEYS`) and
    ``mcr_best_other`` (the best baseline); the same keys with the prefix ``mcr_uni_pre``
    when that variant was trained. With probe gaps: ``joint_probe_gap_per_seed``,
    ``seeds_with_joint_probe_gap_ge_3pt`` and ``undertrained_premise`` (at least 3
    seeds where joint training's slow-encoder probe is >= 3 points below the unimodal
    model's, and joint below the ensemble).
    """
    point = result.most_imbalanced()
    acc = {m: r.mean for m, r in point.methods.items()}
    claims: dict[str, Any] = {"point": {"u1": point.u1, "s": point.s, "u2": point.u2}}
    if "joint" in acc and "ensemble" in acc:
        claims["joint_below_ensemble"] = acc["joint"] < acc["ensemble"]
    joint = point.methods.get("joint")
    if joint is not None and joint.probe_gap is not None:
        gaps = joint.probe_gap_per_seed or []
        n_gap = sum(g >= PREMISE_GAP for g in gaps)
        claims["joint_probe_gap_per_seed"] = gaps
        claims["seeds_with_joint_probe_gap_ge_3pt"] = n_gap
        # the premise: >= 3 seeds with the gap, and joint below the ensemble
        claims["undertrained_premise"] = n_gap >= 3 and bool(claims.get("joint_below_ensemble"))
    baselines = {m: v for m, v in acc.items() if m not in MCR_KEYS}
    for key in MCR_KEYS:
        if key not in acc:
            continue
        if "ensemble" in acc:
            claims[f"{key}_above_ensemble"] = acc[key] > acc["ensemble"]
        if "joint" in acc:
            claims[f"{key}_above_joint"] = acc[key] > acc["joint"]
        if baselines:
            claims[f"{key}_at_or_above_all"] = acc[key] >= max(baselines.values())
            claims[f"{key}_best_other"] = max((v, m) for m, v in baselines.items())[1]
    return claims
