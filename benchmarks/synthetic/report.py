"""Tables and the plot of a synthetic sweep: ``results.md`` (accuracy per sweep point, the
ablations at the most imbalanced point, the claims) and ``accuracy_vs_ratio.png``, from a
:class:`~benchmarks.synthetic.results.SweepResult`.

``python -m benchmarks.synthetic.report RUN/results.json --out DIR`` redraws both (and rewrites
``results.json`` in the current version) from a result of any version
(:func:`benchmarks.synthetic.results.load_results`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness.result_files import redraw_main, to_json
from benchmarks.synthetic.results import MCR_KEYS, MethodResult, SweepResult, load_results
from examples.common import reporting
from examples.common.provenance import provenance
from examples.common.reporting import table


def accuracy_lines(result: SweepResult) -> list[str]:
    """Accuracy (mean ± std, %) per point and method, the best of each point in bold."""
    points = result.points
    header = [f"U1={p.u1:.2f} S={p.s:.2f} (U1/S={p.ratio_u1_s:.2f})" for p in points]
    rows = []
    for m in result.method_keys():
        cells = [m]
        for p in points:
            best = max(q.mean for q in p.methods.values())
            text = reporting.percent(p.methods[m].mean, p.methods[m].std)
            cells.append(f"**{text}**" if p.methods[m].mean == best else text)
        rows.append(cells)
    return ["## Test accuracy (%) along the U1/S sweep", "", *table(["method", *header], rows)]


def category_lines(result: SweepResult) -> list[str]:
    """Accuracy per kind of point at the most imbalanced point, and the chosen trials."""
    last = result.most_imbalanced()
    rows = []
    for m in result.method_keys():
        r = last.methods[m]
        pc = r.per_category
        cells = [
            f"{100 * v:.1f}" if (v := pc[k]) is not None else "–" for k in ("shared", "u1", "u2")
        ]
        rows.append([m, *cells, f"`{json.dumps(r.trial)}`"])
    header = ["method", "shared", "U1 only", "U2 only", "chosen trial"]
    return [
        "",
        f"## Accuracy (%) per data-point category at U1={last.u1:.2f}, S={last.s:.2f}",
        "",
        *table(header, rows),
    ]


def probe_lines(result: SweepResult) -> list[str]:
    """The slow encoder's probe and probe gap per point and method (when measured)."""
    points, methods = result.points, result.method_keys()
    if points[0].methods[methods[0]].probe_gap is None:
        return []

    def cell(r: MethodResult) -> str:
        return f"{100 * (r.probe or 0.0):.1f} (gap {100 * (r.probe_gap or 0.0):+.1f})"

    rows = [[m, *(cell(p.methods[m]) for p in points)] for m in methods]
    return [
        "",
        "## Slow encoder: linear probe (test %) and probe gap (unimodal − method, points)",
        "",
        *table(["method", *(f"U1/S={p.ratio_u1_s:.2f}" for p in points)], rows),
    ]


def ablation_lines(result: SweepResult) -> list[str]:
    """One table per ablation family at the most imbalanced point."""
    abl = result.ablations
    if abl is None:
        return []
    lines = [
        "",
        f"## MCR ablations at U1={abl.point['u1']:.2f}, S={abl.point['s']:.2f} (test accuracy %)",
        "",
    ]
    for family, variants in abl.families.items():
        rows = [
            [
                v,
                reporting.percent(r.mean, r.std),
                f"{100 * r.probe_gap:+.1f}" if r.probe_gap is not None else "–",
            ]
            for v, r in variants.items()
        ]
        lines += [f"**{family}**", "", *table(["variant", "accuracy", "probe gap"], rows), ""]
    return lines


def claim_lines(result: SweepResult) -> list[str]:
    """The claims at the most imbalanced point, one line each."""
    if result.claims is None:
        return []
    claims = [f"- {k}: {v}" for k, v in result.claims.items()]
    return ["", "## Claims at the most imbalanced point", "", *claims]


def markdown(result: SweepResult) -> str:
    """Tables: accuracy (mean ± std, %) per point and method; ablations; claims."""
    sections = (accuracy_lines, category_lines, probe_lines, ablation_lines, claim_lines)
    return reporting.sections_markdown(sections, result)


def plot(result: SweepResult, path: Path) -> None:
    """Figure 1 style: accuracy vs U1/S (log x), one line per method with ±std bars.

    A second panel shows each method's accuracy minus the ensemble's (paper Figure 4's view):
    below zero, multimodal training lost to unimodal models trained alone.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    plt = reporting.pyplot()
    points = result.points
    ratios = [p.ratio_u1_s for p in points]
    methods = result.method_keys()
    panels = 3 if "ensemble" in methods else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    for m in methods:
        style: dict[str, Any] = {"lw": 1.2}
        if m in MCR_KEYS:
            style = {"lw": 2.5, "color": "k", "zorder": 5, "ls": "-" if m == "mcr" else "--"}
        means = [100 * p.methods[m].mean for p in points]
        stds = [100 * p.methods[m].std for p in points]
        axes[0][0].errorbar(ratios, means, yerr=stds, marker="o", ms=3, capsize=2, label=m, **style)
        if panels == 3:
            ens = [100 * p.methods["ensemble"].mean for p in points]
            axes[0][1].plot(
                ratios, [a - e for a, e in zip(means, ens)], marker="o", ms=3, label=m, **style
            )
            gaps = [100 * (p.methods[m].probe_gap or 0.0) for p in points]
            axes[0][2].plot(ratios, gaps, marker="o", ms=3, label=m, **style)
    axes[0][0].set_ylabel("test accuracy (%)")
    if panels == 3:
        axes[0][1].axhline(0.0, color="grey", lw=0.8)
        axes[0][1].set_ylabel("accuracy − ensemble accuracy (points)")
        axes[0][2].axhline(0.0, color="grey", lw=0.8)
        axes[0][2].set_ylabel("slow-encoder probe gap: unimodal − method (points)")
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ratios))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.2g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("U1 / S")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    regime = (result.setup.regime if result.setup is not None else None) or "fusion"
    fig.suptitle(f"Synthetic competition benchmark, regime {regime} (U2 = {points[0].u2:.2f})")
    reporting.save_figure(fig, path)


def write_outputs(result: SweepResult, out: Path) -> None:
    """``results.json``, ``results.md`` and ``accuracy_vs_ratio.png`` of ``result`` in ``out``."""
    reporting.write_report(out, to_json(result), markdown(result))
    plot(result, out / "accuracy_vs_ratio.png")


def load_for_report(path: str | Path) -> SweepResult:
    """A stored result with the report's own provenance record added."""
    started = time.time()
    result = load_results(path)
    result.report_provenance = provenance(started)
    return result


def main(argv: Sequence[str] | None = None) -> SweepResult:
    description = (__doc__ or "").split("\n")[0]
    return redraw_main(argv, description=description, load=load_for_report, write=write_outputs)


if __name__ == "__main__":
    main()
