"""The multi-view benchmark's report: ``results.md`` (protocol, tables, paired tests) and the
plots, from a ``results.json`` of :mod:`examples.multiview.run` or
:mod:`examples.multiview.combine`.

    python -m examples.multiview.report RUN/results.json --out DIR

reads a result of any schema version (:func:`examples.multiview.results.load_results`) and writes
``results.json`` (in the current version), ``results.md`` and the plots into ``DIR``.
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.common.checkpoint import atomic_write_json
from examples.common.result_files import redraw_main
from examples.multiview.results import MCR_KEYS, kind_group, load_results


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"


def _p(value: float) -> str:
    return f"{value:.3g}"


def _rho(value: float | None) -> str:
    return "undefined (fewer than 3 view sets, or a constant)" if value is None else f"{value:+.2f}"


def seed_list(result: dict[str, Any]) -> list[int]:
    """The seeds of the main runs (from the setup; else 0..n-1 from the per-seed results)."""
    setup = result.get("setup", {})
    seeds = setup.get("plan", {}).get("seeds", setup.get("seeds"))
    if seeds is not None:
        return list(seeds)
    first = next(iter(result["view_sets"][0]["methods"].values()))
    return list(range(len(first["per_seed"])))


def _seeds_text(seeds: Sequence[int]) -> str:
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def protocol_lines(result: dict[str, Any]) -> list[str]:
    """The head of results.md: which protocol ran, on which view sets, methods and seeds, and
    what a quick run's numbers are (not) evidence of."""
    setup = result.get("setup", {})
    sets = result["view_sets"]
    kinds = [kind_group(vs["kind"]) for vs in sets]
    counts = [
        f"{kinds.count(k)} {name}"
        for k, name in (("pair", "pairs"), ("triple", "triples"), ("six", "six-view set"))
        if k in kinds
    ]
    methods: list[str] = []
    for vs in sets:
        methods += [k for k in vs["methods"] if k not in methods]
    seeds = seed_list(result)
    grid = setup.get("plan", {}).get("grid", setup.get("grid"))
    quick = bool(setup.get("quick"))
    # (a combination of parts reads as the single run would: combine.py's promise)
    name = "quick run (`--quick`)" if quick else "the registered protocol's settings (no `--quick`)"
    lines = [
        f"# UCI Multiple Features multi-view benchmark: {name}",
        "",
        f"- View sets: {', '.join(counts)} ({len(sets)} in all).",
        f"- Methods: {', '.join(methods)}"
        + (
            f"; {grid} tuning trial{'s' if grid != 1 else ''} each, selected on validation."
            if grid
            else "."
        ),
        f"- Seeds: {_seeds_text(seeds)} ({len(seeds)} per view set and method): every entry below "
        "is the mean ± std over them, and a paired test has one pair per (view set, seed).",
    ]
    budget = setup.get("budget", {})
    parts = [
        text.format(budget[key])
        for key, text in (
            ("max_epochs", "at most {} epochs"),
            ("patience", "patience {}"),
            ("batch_size", "batch {}"),
            ("lr", "lr {:g}"),
        )
        if key in budget
    ]
    if parts:
        lines.append(f"- Budget of every run: {', '.join(parts)}.")
    if quick:
        lines += [
            "",
            "This is the quick run: a first look in minutes, not the evidence. With "
            f"{len(seeds)} seeds a difference of a few tenths of a point between two methods is "
            "within the seed-to-seed spread (see the ± columns), and its paired tests have "
            "little power. The verdicts rest on the registered protocol (`run.py` without "
            "`--quick`: 15 pairs, 3 triples and all six views, 5 seeds, every method with 2 "
            "tuning trials, ablations), whose results are in docs/examples/multiview.md; where "
            "the two disagree, the registered protocol's numbers are the ones to quote.",
        ]
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> str:
    """results.md: the protocol, then the tables."""
    sets = result["view_sets"]
    keys: list[str] = []
    for vs in sets:
        keys += [k for k in vs["methods"] if k not in keys]
    lines = protocol_lines(result)
    lines += ["## Test accuracy (%) per view set, mean ± std over seeds", ""]
    lines += ["| view set | kind | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for vs in sets:
        m = vs["methods"]
        best = max(r["mean"] for r in m.values())
        cells = []
        for k in keys:
            if k not in m:
                cells.append("–")
                continue
            text = _pct(m[k])
            cells.append(f"**{text}**" if m[k]["mean"] == best else text)
        lines.append(f"| {vs['name']} | {vs['kind']} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences over (view set, seed) pairs (test accuracy, points)", ""]
    lines += [
        "| comparison | n | mean diff | median diff | wins / ties / losses | sign test p | Wilcoxon p |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in result["paired"].items():
        lines.append(
            f"| {name.replace('-', ' − ')} | {c['n']} | {100 * c['mean_diff']:+.2f} | "
            f"{100 * c['median_diff']:+.2f} | {c['wins']} / {c['ties']} / {c['losses']} | "
            f"{_p(c['sign_p'])} | {_p(c['wilcoxon_p'])} |"
        )
    if result.get("paired_by_kind"):
        lines.append("")
    for group, tests in result.get("paired_by_kind", {}).items():
        cells = [
            f"{name.replace('-', ' − ')} {100 * c['mean_diff']:+.2f} "
            f"({c['wins']}/{c['ties']}/{c['losses']}, Wilcoxon p {_p(c['wilcoxon_p'])})"
            for name, c in tests.items()
        ]
        lines.append(f"- {group} only: " + "; ".join(cells))
    if "triple_rule" in result:
        tr = result["triple_rule"]
        lines += [
            "",
            "## Unimodal validation accuracy of the six-view ensemble (fixes the triples)",
            "",
        ]
        lines.append(
            "ranked: "
            + ", ".join(
                f"{v} {100 * tr['unimodal_val_of_six_view_ensemble'][v]:.1f}" for v in tr["ranked"]
            )
        )
        lines.append("")
        lines += [f"- {k}: {'+'.join(v)}" for k, v in tr["triples"].items()]
    lines += ["", "## Where competition is: linear probes of each encoder (test accuracy %)", ""]
    lines += [
        "Probe after unimodal training (the ensemble's encoders) / after joint / after MCR; "
        "under-training = unimodal probe − joint probe, mean over the set's views.",
        "",
        "| view set | unimodal acc per view | probe unimodal | probe joint | probe mcr | under-training (joint) | under-training (mcr) | mcr − joint |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for vs in sets:
        m = vs["methods"]
        if "ensemble" not in m or "probe" not in m["ensemble"]:
            continue

        def probes(key: str, m: dict[str, Any] = m, vs: dict[str, Any] = vs) -> str:
            if key not in m or "probe" not in m[key]:
                return "–"
            return " / ".join(f"{100 * m[key]['probe'][v]['mean']:.1f}" for v in vs["views"])

        uni = " / ".join(f"{v} {100 * vs['unimodal_test'][v]:.1f}" for v in vs["views"])
        ut = vs.get("undertraining", {})
        gain = (
            f"{100 * (m['mcr']['mean'] - m['joint']['mean']):+.1f}"
            if "mcr" in m and "joint" in m
            else "–"
        )
        lines.append(
            f"| {vs['name']} | {uni} | {probes('ensemble')} | {probes('joint')} | {probes('mcr')} | "
            + (f"{100 * ut['joint']['mean']:+.1f}" if "joint" in ut else "–")
            + " | "
            + (f"{100 * ut['mcr']['mean']:+.1f}" if "mcr" in ut else "–")
            + f" | {gain} |"
        )
    g = result.get("gain_vs_undertraining", {})
    if g.get("rows"):
        lines += [
            "",
            f"Spearman correlation of MCR's gain over joint with the joint encoders' under-training: "
            f"mean over views {_rho(g['spearman_mean'])}, largest view {_rho(g['spearman_max'])} "
            f"({len(g['rows'])} view sets).",
        ]
    if "ablations" in result:
        abl = result["ablations"]
        variants = list(abl["variants"])
        lines += [
            "",
            "## MCR ablations (test accuracy %), from MCR's selected trial per view set",
            "",
        ]
        lines += [
            "| view set | mcr | " + " | ".join(variants) + " |",
            "|---" * (len(variants) + 2) + "|",
        ]
        for name, row in abl["per_view_set"].items():
            lines.append(
                f"| {name} | {_pct(row['mcr'])} | "
                + " | ".join(_pct(row[v]) for v in variants)
                + " |"
            )
        lines += [
            "",
            "| variant − mcr | n | mean diff | wins / ties / losses | sign test p | Wilcoxon p |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for name, c in abl["paired"].items():
            lines.append(
                f"| {name} | {c['n']} | {100 * c['mean_diff']:+.2f} | {c['wins']} / {c['ties']} / "
                f"{c['losses']} | {_p(c['sign_p'])} | {_p(c['wilcoxon_p'])} |"
            )
    if "cost" in result:
        from examples.multiview.cost import markdown as cost_markdown

        lines += ["", cost_markdown(result["cost"])]
    return "\n".join(lines) + "\n"


def _paired_diffs(a: dict[str, Any], b: dict[str, Any]) -> list[float]:
    """Per-seed test accuracy of ``a`` minus ``b`` (points), seeds in the same order."""
    return [100 * (x - y) for x, y in zip(a["per_seed"], b["per_seed"], strict=True)]


def _protocol_tag(result: dict[str, Any]) -> str:
    n = len(seed_list(result))
    quick = "quick run" if result.get("setup", {}).get("quick") else "registered protocol"
    return f"{quick}, {n} seed{'s' if n != 1 else ''} per point"


def plot_accuracy(result: dict[str, Any], path: Path) -> None:
    """Test accuracy minus joint's, per view set (x) and method (markers): the mean over the
    seeds of the paired per-seed difference, with ± its standard deviation as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = result["view_sets"]
    keys: list[str] = []
    for vs in sets:
        keys += [k for k in vs["methods"] if k not in keys and k != "joint"]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.6 * len(sets)), 5.0))
    width = 0.7 / max(1, len(keys))
    for j, k in enumerate(keys):
        xs, ys, errs = [], [], []
        for i, vs in enumerate(sets):
            m = vs["methods"]
            if k in m and "joint" in m:
                diffs = _paired_diffs(m[k], m["joint"])
                xs.append(i + (j - (len(keys) - 1) / 2) * width)
                ys.append(statistics.fmean(diffs))
                errs.append(statistics.stdev(diffs) if len(diffs) > 1 else 0.0)
        star = k in (*MCR_KEYS, "mcr_singletons")
        ax.errorbar(
            xs,
            ys,
            yerr=errs,
            lw=0,
            elinewidth=0.8,
            capsize=1.5,
            marker="*" if star else "o",
            ms=9 if star else 4,
            zorder=5 if star else 3,
            label=k,
        )
    ax.axhline(0.0, color="grey", lw=0.8, label="joint (reference)")
    ax.set_xticks(
        range(len(sets)), [vs["name"] for vs in sets], rotation=60, ha="right", fontsize=7
    )
    ax.set_xlabel("view set")
    ax.set_ylabel("test accuracy − joint's (percentage points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=4)
    ax.set_title(
        f"UCI Multiple Features: each method against joint training ({_protocol_tag(result)})\n"
        "marker: mean of the per-seed differences; bars: ± their standard deviation",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gain(result: dict[str, Any], path: Path) -> None:
    """MCR − joint accuracy against the joint encoders' under-training, one point per view set
    (bars: ± the standard deviation of the per-seed gain), with Spearman's ρ in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gain = result["gain_vs_undertraining"]
    rows = gain["rows"]
    by_name = {vs["name"]: vs["methods"] for vs in result["view_sets"]}
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    for r in rows:
        m = by_name[r["view_set"]]
        diffs = _paired_diffs(m["mcr"], m["joint"])
        x, y = 100 * r["undertraining"], 100 * r["mcr_gain"]
        ax.errorbar(
            [x],
            [y],
            yerr=[statistics.stdev(diffs) if len(diffs) > 1 else 0.0],
            marker="o",
            ms=4,
            lw=0,
            elinewidth=0.8,
            capsize=2,
            color="tab:blue",
        )
        ax.annotate(r["view_set"], (x, y), xytext=(4, 3), textcoords="offset points", fontsize=6)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("under-training of the joint encoders\n(unimodal probe − joint probe, points)")
    ax.set_ylabel("MCR − joint test accuracy (percentage points)")
    ax.set_title(
        f"Does MCR gain most where joint training under-trains? ({_protocol_tag(result)})\n"
        f"{len(rows)} view sets; Spearman ρ = {_rho(gain['spearman_mean'])}; "
        "bars: ± std of the per-seed gain",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` and the plots of ``result`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, out / "results.json")
    (out / "results.md").write_text(markdown(result))
    plot_accuracy(result, out / "accuracy.png")
    if result["gain_vs_undertraining"]["rows"]:
        plot_gain(result, out / "gain_vs_undertraining.png")
    if "cost" in result:
        from examples.multiview.cost import plot_cost

        plot_cost(result["cost"], out / "cost.png")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    description = (__doc__ or "").split("\n")[0]
    return redraw_main(argv, description=description, load=load_results, write=write_outputs)


if __name__ == "__main__":
    main()
