"""Tables and the plot of a synthetic sweep: ``results.md`` (accuracy per sweep point, the
ablations at the most imbalanced point, the claims) and ``accuracy_vs_ratio.png``.

``python -m examples.synthetic.report RUN/results.json --out DIR`` redraws both (and rewrites
``results.json`` in the current version) from a result of any version
(:func:`examples.synthetic.results.load_results`).
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.common.checkpoint import atomic_write_json
from examples.common.result_files import redraw_main
from examples.synthetic.results import MCR_KEYS, ablation_families, load_results


def markdown(result: dict[str, Any]) -> str:
    """Tables: accuracy (mean ± std, %) per point and method; ablations; claims."""
    points = result["points"]
    methods = list(points[0]["methods"])
    lines = ["## Test accuracy (%) along the U1/S sweep", ""]
    header = (
        "| method | "
        + " | ".join(
            f"U1={p['u1']:.2f} S={p['s']:.2f} (U1/S={p['ratio_u1_s']:.2f})" for p in points
        )
        + " |"
    )
    lines += [header, "|---" * (len(points) + 1) + "|"]
    for m in methods:
        cells = []
        for p in points:
            r = p["methods"][m]
            best = max(q["mean"] for q in p["methods"].values())
            text = f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"
            cells.append(f"**{text}**" if r["mean"] == best else text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    last = max(points, key=lambda p: p["u1"])
    lines += [
        "",
        f"## Accuracy (%) per data-point category at U1={last['u1']:.2f}, S={last['s']:.2f}",
        "",
    ]
    lines += ["| method | shared | U1 only | U2 only | chosen trial |", "|---|---|---|---|---|"]
    for m in methods:
        r = last["methods"][m]
        pc = r["per_category"]
        cells = [f"{100 * pc[k]:.1f}" if pc[k] is not None else "–" for k in ("shared", "u1", "u2")]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | `{json.dumps(r['trial'])}` |")
    if points[0]["methods"][methods[0]].get("probe_gap") is not None:
        lines += [
            "",
            "## Slow encoder: linear probe (test %) and probe gap (unimodal − method, points)",
            "",
            "| method | " + " | ".join(f"U1/S={p['ratio_u1_s']:.2f}" for p in points) + " |",
            "|---" * (len(points) + 1) + "|",
        ]
        for m in methods:
            cells = [
                f"{100 * p['methods'][m]['probe']:.1f} (gap {100 * p['methods'][m]['probe_gap']:+.1f})"
                for p in points
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if "ablations" in result:
        abl = result["ablations"]
        lines += [
            "",
            f"## MCR ablations at U1={abl['point']['u1']:.2f}, S={abl['point']['s']:.2f} (test accuracy %)",
            "",
        ]
        for family in ablation_families(abl):
            lines += [f"**{family}**", "", "| variant | accuracy | probe gap |", "|---|---|---|"]
            for variant, r in abl[family].items():
                gap = r.get("probe_gap")
                gap_text = f"{100 * gap:+.1f}" if gap is not None else "–"
                lines.append(
                    f"| {variant} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} | {gap_text} |"
                )
            lines.append("")
    if "claims" in result:
        lines += ["", "## Claims at the most imbalanced point", ""]
        for k, v in result["claims"].items():
            lines.append(f"- {k}: {v}")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Figure 1 style: accuracy vs U1/S (log x), one line per method with ±std bars.

    A second panel shows each method's accuracy minus the ensemble's (paper Figure 4's view):
    below zero, multimodal training lost to unimodal models trained alone.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    points = result["points"]
    ratios = [p["ratio_u1_s"] for p in points]
    methods = list(points[0]["methods"])
    panels = 3 if "ensemble" in methods else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    for m in methods:
        style: dict[str, Any] = {"lw": 1.2}
        if m in MCR_KEYS:
            style = {"lw": 2.5, "color": "k", "zorder": 5, "ls": "-" if m == "mcr" else "--"}
        means = [100 * p["methods"][m]["mean"] for p in points]
        stds = [100 * p["methods"][m]["std"] for p in points]
        axes[0][0].errorbar(ratios, means, yerr=stds, marker="o", ms=3, capsize=2, label=m, **style)
        if panels == 3:
            ens = [100 * p["methods"]["ensemble"]["mean"] for p in points]
            axes[0][1].plot(
                ratios, [a - e for a, e in zip(means, ens)], marker="o", ms=3, label=m, **style
            )
            gaps = [100 * p["methods"][m]["probe_gap"] for p in points]
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
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:.2g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("U1 / S")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    regime = result.get("setup", {}).get("regime", "fusion")
    fig.suptitle(f"Synthetic competition benchmark, regime {regime} (U2 = {points[0]['u2']:.2f})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` and ``accuracy_vs_ratio.png`` of ``result`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, out / "results.json")
    (out / "results.md").write_text(markdown(result))
    plot(result, out / "accuracy_vs_ratio.png")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    description = (__doc__ or "").split("\n")[0]
    return redraw_main(argv, description=description, load=load_results, write=write_outputs)


if __name__ == "__main__":
    main()
