"""Every figure the README's headline sentences quote equals the committed results file it
comes from (and every p-value and two-decimal percentage of the README is one of them)."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


@cache
def result(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}-results.json").read_text(encoding="utf-8"))


def readme() -> str:
    """The README with every run of whitespace made one space (sentences wrap anywhere)."""
    return re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))


def pts(fraction: float, places: int = 2) -> str:
    """A difference of accuracies (fractions) in signed points, with a true minus sign."""
    text = f"{100 * fraction:+.{places}f}"
    return text.replace("-", "−")


def pct(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def pval(p: float) -> str:
    return f"p = {p:.2g}"


def _multiview_undertraining(kinds: tuple[str, ...], method: str) -> float:
    sets = [vs for vs in result("multiview-full")["view_sets"] if vs["kind"] in kinds]
    return statistics.fmean(vs["undertraining"][method]["mean"] for vs in sets)


def multiview_claims() -> list[str]:
    full = result("multiview-full")["paired"]["mcr-joint"]
    quick = result("multiview-quick")["paired"]["mcr-joint"]
    small = ("pair", "weakest3", "strongest3", "mixed3")
    six = ("all6",)
    return [
        f"{pts(full['mean_diff'])} points over 19 view sets × 5 seeds, {pval(full['wilcoxon_p'])}",
        f"the quick run's 30 pairs give {pts(quick['mean_diff'])}, {pval(quick['wilcoxon_p'])}",
        f"(joint {pts(_multiview_undertraining(small, 'joint'), 1)} points, "
        f"MCR {pts(_multiview_undertraining(small, 'mcr'))})",
        f"({pts(_multiview_undertraining(six, 'joint'), 1)} after joint and "
        f"{'after MCR' if round(_multiview_undertraining(six, 'mcr'), 3) == round(_multiview_undertraining(six, 'joint'), 3) else pts(_multiview_undertraining(six, 'mcr'), 1)})",
    ]


def avmnist_claims() -> list[str]:
    r = result("avmnist-full")
    m, paired, premise = r["methods"], r["paired"], r["premise"]
    joint_ens = premise["joint_minus_ensemble"]
    gap = premise["joint_probe_gap"]
    starved = max(gap, key=lambda k: gap[k]["mean"])
    up_j, up_e = paired["mcr_uni_pre-joint"], paired["mcr_uni_pre-ensemble"]
    assert up_j["wilcoxon_p"] == up_e["wilcoxon_p"]  # the sentence gives one p for both
    best = max(m, key=lambda k: m[k]["mean"])
    return [
        f"(joint − ensemble {pts(joint_ens['mean_diff'])} points, {pval(joint_ens['wilcoxon_p'])})",
        f"the {starved} one, is mildly under-trained: {100 * gap[starved]['mean']:.1f} points",
        f"(+{100 * paired['mcr-joint']['mean_diff']:.2f} points, {pval(paired['mcr-joint']['wilcoxon_p'])})",
        f"not detectably the ensemble ({pts(paired['mcr-ensemble']['mean_diff'])}, "
        f"{pval(paired['mcr-ensemble']['wilcoxon_p'])})",
        f"({pct(m['mcr']['mean'])} against {pct(m['multiloss']['mean'])})",
        f"MCR from unimodal initialisation has the highest mean ({pct(m[best]['mean'])})"
        if best == "mcr_uni_pre"
        else "(the README must not call mcr_uni_pre the best)",
        f"({pts(up_j['mean_diff'])} and {pts(up_e['mean_diff'])}, {pval(up_j['wilcoxon_p'])})",
        f"`uni_pre_frozen` ({pct(m['uni_pre_frozen']['mean'])}) or `multiloss` "
        f"({pct(m['multiloss']['mean'])})",
    ]


def ensemble_gap_claims() -> list[str]:
    s = result("ensemble-gap-rerun")["settings"]
    syn, und, av = (
        s[k]["tests"]["mcr_fused"]["ensemble"] for k in ("synthetic", "undertrained", "avmnist")
    )
    decision = result("ensemble-gap-rerun")["decision"]["remedies"]
    assert not any(r["becomes_default"] for r in decision.values())  # "none beats ... on all three"
    return [
        f"{pts(syn['mean_diff'])} points, {pval(syn['wilcoxon_p'])}, and "
        f"{pts(und['mean_diff'])}, {pval(und['wilcoxon_p'])}",
        f"on AV-MNIST it is above it, {pts(av['mean_diff'])}, {pval(av['wilcoxon_p'])}, "
        f"{'not detectably' if av['verdict'] != 'win' else 'a win'}",
    ]


def recipes_claims() -> list[str]:
    synthetic = result("recipes")
    multiview = result("recipes-multiview")
    avmnist = result("recipes-avmnist")
    for r in (
        synthetic,
        multiview,
        avmnist,
    ):  # "no recipe built on MCR beats both ... on any setting run"
        assert r["decision"]["winning_recipes"] == [] and r["decision"]["ten_seeds"]
        assert not any(any(s["wins_setting"].values()) for s in r["settings"].values())
    up = synthetic["settings"]["undertrained"]["tests"]["mcr_uni_pre"]["ensemble"]
    assert up["verdict"] != "win"  # "not detectably"
    syn = [
        synthetic["settings"][k]["context"]["multiloss − mcr"]
        for k in ("synthetic", "undertrained")
    ]
    mv = [s["context"]["multiloss − mcr"]["mean_diff"] for s in multiview["settings"].values()]
    assert all(c["mean_diff"] < 0 for c in syn) and all(d < 0 for d in mv)  # "below MCR"
    mv_tests = [s["tests"] for s in multiview["settings"].values()]
    av = avmnist["settings"]["avmnist"]
    assert all(t["ensemble"]["verdict"] == "win" for t in av["tests"].values())  # "all six"
    assert not any(t["multiloss"]["verdict"] == "win" for t in av["tests"].values())
    av_ml = av["context"]["multiloss − mcr"]["mean_diff"]
    assert av_ml < 0
    assert all(c["multiloss"]["verdict"] != "win" for t in mv_tests for c in t.values())
    near, far = sorted(mv, key=abs)[0], sorted(mv, key=abs)[-1]
    return [
        f"the under-training one, {pts(up['mean_diff'])} points, not detectably",
        f"({pts(syn[0]['mean_diff'])} and {pts(syn[1]['mean_diff'])} points on the synthetic "
        f"settings, {pts(av_ml)} on AV-MNIST, {pts(near)} to {pts(far)} on the multi-view pairs)",
    ]


CLAIMS: dict[str, Callable[[], list[str]]] = {
    "multiview": multiview_claims,
    "avmnist": avmnist_claims,
    "ensemble-gap": ensemble_gap_claims,
    "recipes": recipes_claims,
}


@pytest.mark.parametrize("source", list(CLAIMS))
def test_readme_quotes_the_results_files(source: str) -> None:
    text = readme()
    for claim in CLAIMS[source]():
        assert claim in text, f"README does not say {claim!r} (from {source}'s results file)"


def test_every_p_value_and_percentage_of_the_readme_is_checked() -> None:
    text = readme()
    for claims in CLAIMS.values():
        for claim in claims():
            text = text.replace(claim, "")
    left = re.findall(r"p = [0-9.]+|\d+\.\d\d %", text)
    assert left == [], f"README figures no test checks against a results file: {left}"
