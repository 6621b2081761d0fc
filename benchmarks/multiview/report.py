"""The multi-view benchmark's report: ``results.md`` (protocol, tables, paired tests) and the
plots, from a :class:`~benchmarks.multiview.results.BenchmarkResult` of
:mod:`benchmarks.multiview.run` or :mod:`benchmarks.multiview.combine`.

    python -m benchmarks.multiview.report RUN/results.json --out DIR

reads a result of any schema version (:func:`benchmarks.multiview.results.load_results`), computes
its summaries and paired tests again from the per-run accuracies (:func:`load_and_recompute`)
and writes ``results.json`` (in the current version), ``results.md`` and the plots into ``DIR``.
``results.md`` is written one section at a time (:data:`SECTIONS`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness.result_files import redraw_main, to_json
from benchmarks.multiview.results import (
    MCR_KEYS,
    BenchmarkResult,
    MethodResult,
    PairedTest,
    SeedAccuracies,
    ViewSetResult,
    kind_group,
    load_results,
)
from benchmarks.multiview.summary import ablation_tests, add_comparisons, resolution
from examples.common.provenance import provenance
from examples.common.reporting import (
    percent,
    pyplot,
    save_figure,
    sections_markdown,
    table,
    write_report,
)


def _pct(r: MethodResult | SeedAccuracies) -> str:
    return percent(r.mean, r.std)


def _p(value: float) -> str:
    return f"{value:.3g}"


def _rho(value: float | None) -> str:
    return "undefined (fewer than 3 view sets, or a constant)" if value is None else f"{value:+.2f}"


def _seeds_text(seeds: Sequence[int]) -> str:
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _wins(c: PairedTest) -> str:
    return f"{c.wins} / {c.ties} / {c.losses}"


QUICK_CAVEAT = (
    "This is the quick run: a first look in minutes, not the evidence. With "
    "{n} seeds a difference of a few tenths of a point between two methods is "
    "within the seed-to-seed spread (see the ± columns), and its paired tests have "
    "little power. The verdicts rest on the registered protocol (`run.py` without "
    "`--quick`: 15 pairs, 3 triples and all six views, 5 seeds, every method with 2 "
    "tuning trials, ablations), whose results are in docs/examples/multiview.md; where "
    "the two disagree, the registered protocol's numbers are the ones to quote."
)


def protocol_lines(result: BenchmarkResult) -> list[str]:
    """The head of results.md: which protocol ran, on which view sets, methods and seeds, and
    what a quick run's numbers are (not) evidence of."""
    kinds = [kind_group(vs.kind) for vs in result.view_sets]
    counts = [
        f"{kinds.count(k)} {name}"
        for k, name in (("pair", "pairs"), ("triple", "triples"), ("six", "six-view set"))
        if k in kinds
    ]
    seeds = result.seeds()
    grid = result.trials_per_method()
    trials = f"; {grid} tuning trial{'s' if grid != 1 else ''} each, selected on validation."
    # (a combination of parts reads as the single run would: combine.py's promise)
    name = (
        "quick run (`--quick`)"
        if result.quick
        else "the registered protocol's settings (no `--quick`)"
    )
    lines = [
        f"# UCI Multiple Features multi-view benchmark: {name}",
        "",
        f"- View sets: {', '.join(counts)} ({len(result.view_sets)} in all).",
        f"- Methods: {', '.join(result.method_keys())}" + (trials if grid else "."),
        f"- Seeds: {_seeds_text(seeds)} ({len(seeds)} per view set and method): every entry below "
        "is the mean ± std over them, and a paired test has one pair per (view set, seed).",
    ]
    budget = result.setup.budget if result.setup is not None else {}
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
    if result.quick:
        lines += ["", QUICK_CAVEAT.format(n=len(seeds))]
    return [*lines, ""]


def accuracy_lines(result: BenchmarkResult) -> list[str]:
    """Test accuracy per view set and method (the best of each view set in bold)."""
    keys = result.method_keys()

    def row(vs: ViewSetResult) -> list[str]:
        best = max(r.mean for r in vs.methods.values())
        cells = [vs.name, vs.kind]
        for k in keys:
            r = vs.methods.get(k)
            cells.append("–" if r is None else f"**{_pct(r)}**" if r.mean == best else _pct(r))
        return cells

    rows = [row(vs) for vs in result.view_sets]
    return [
        "## Test accuracy (%) per view set, mean ± std over seeds",
        "",
        *table(["view set", "kind", *keys], rows),
    ]


def paired_lines(result: BenchmarkResult) -> list[str]:
    """The paired tests over every (view set, seed) pair, then within each kind of view set."""
    header = ["comparison", "n", "mean diff", "median diff", "wins / ties / losses"]

    def row(name: str, c: PairedTest) -> list[str]:
        diffs = [f"{100 * c.mean_diff:+.2f}", f"{100 * c.median_diff:+.2f}"]
        return [
            name.replace("-", " − "),
            str(c.n),
            *diffs,
            _wins(c),
            _p(c.sign_p),
            _p(c.wilcoxon_p),
        ]

    rows = [row(name, c) for name, c in result.paired.items()]
    lines = ["", "## Paired differences over (view set, seed) pairs (test accuracy, points)", ""]
    lines += table([*header, "sign test p", "Wilcoxon p"], rows)
    if result.paired_by_kind:
        lines.append("")
    for group, tests in result.paired_by_kind.items():
        cells = [
            f"{name.replace('-', ' − ')} {100 * c.mean_diff:+.2f} "
            f"({c.wins}/{c.ties}/{c.losses}, Wilcoxon p {_p(c.wilcoxon_p)})"
            for name, c in tests.items()
        ]
        lines.append(f"- {group} only: " + "; ".join(cells))
    return lines


def triple_rule_lines(result: BenchmarkResult) -> list[str]:
    """The six-view ensemble's unimodal accuracies that fixed the triples."""
    rule = result.triple_rule
    if rule is None:
        return []
    accuracy = rule.unimodal_val_of_six_view_ensemble
    return [
        "",
        "## Unimodal validation accuracy of the six-view ensemble (fixes the triples)",
        "",
        "ranked: " + ", ".join(f"{v} {100 * accuracy[v]:.1f}" for v in rule.ranked),
        "",
        *[f"- {k}: {'+'.join(v)}" for k, v in rule.triples.items()],
    ]


def _probe_row(vs: ViewSetResult) -> list[str]:
    m = vs.methods

    def probes(key: str) -> str:
        probe = m[key].probe if key in m else None
        return "–" if probe is None else " / ".join(f"{100 * probe[v].mean:.1f}" for v in vs.views)

    def gap(key: str) -> str:
        found = (vs.undertraining or {}).get(key)
        return "–" if found is None else f"{100 * found.mean:+.1f}"

    unimodal = vs.unimodal_test or {}
    gain = f"{100 * (m['mcr'].mean - m['joint'].mean):+.1f}" if "mcr" in m and "joint" in m else "–"
    return [
        vs.name,
        " / ".join(f"{v} {100 * unimodal[v]:.1f}" for v in vs.views),
        *(probes(k) for k in ("ensemble", "joint", "mcr")),
        gap("joint"),
        gap("mcr"),
        gain,
    ]


def probe_lines(result: BenchmarkResult) -> list[str]:
    """Linear probes of each encoder per view set, under-training, and its correlation with
    MCR's gain over joint."""
    header = ["view set", "unimodal acc per view", "probe unimodal", "probe joint", "probe mcr"]
    header += ["under-training (joint)", "under-training (mcr)", "mcr − joint"]
    probed = [
        vs
        for vs in result.view_sets
        if "ensemble" in vs.methods and vs.methods["ensemble"].probe is not None
    ]
    lines = [
        "",
        "## Where competition is: linear probes of each encoder (test accuracy %)",
        "",
        "Probe after unimodal training (the ensemble's encoders) / after joint / after MCR; "
        "under-training = unimodal probe − joint probe, mean over the set's views.",
        "",
        *table(header, [_probe_row(vs) for vs in probed]),
    ]
    g = result.gain_vs_undertraining
    if g is not None and g.rows:
        lines += [
            "",
            f"Spearman correlation of MCR's gain over joint with the joint encoders' under-training: "
            f"mean over views {_rho(g.spearman_mean)}, largest view {_rho(g.spearman_max)} "
            f"({len(g.rows)} view sets).",
        ]
    return lines


def ablation_lines(result: BenchmarkResult) -> list[str]:
    """MCR's ablations per view set, and each variant against MCR over (view set, seed) pairs."""
    abl = result.ablations
    if abl is None:
        return []
    variants = list(abl.variants)
    rows = [
        [name, *(_pct(row[v]) for v in ("mcr", *variants))]
        for name, row in abl.per_view_set.items()
    ]
    tests = [
        [name, str(c.n), f"{100 * c.mean_diff:+.2f}", _wins(c), _p(c.sign_p), _p(c.wilcoxon_p)]
        for name, c in abl.paired.items()
    ]
    header = ["variant − mcr", "n", "mean diff", "wins / ties / losses", "sign test p"]
    return [
        "",
        "## MCR ablations (test accuracy %), from MCR's selected trial per view set",
        "",
        *table(["view set", "mcr", *variants], rows),
        "",
        *table([*header, "Wilcoxon p"], tests),
    ]


def cost_lines(result: BenchmarkResult) -> list[str]:
    """The cost run's section (:func:`benchmarks.multiview.cost.markdown`)."""
    if result.cost is None:
        return []
    from benchmarks.multiview.cost import markdown as cost_markdown

    return ["", cost_markdown(result.cost)]


#: The sections of results.md, in order.
SECTIONS: tuple[Callable[[BenchmarkResult], list[str]], ...] = (
    protocol_lines,
    accuracy_lines,
    paired_lines,
    triple_rule_lines,
    probe_lines,
    ablation_lines,
    cost_lines,
)


def markdown(result: BenchmarkResult) -> str:
    """results.md: the protocol, then the tables."""
    return sections_markdown(SECTIONS, result)


def _paired_diffs(a: MethodResult, b: MethodResult) -> list[float]:
    """Per-seed test accuracy of ``a`` minus ``b`` (points), seeds in the same order."""
    return [100 * (x - y) for x, y in zip(a.per_seed, b.per_seed, strict=True)]


def _spread(diffs: Sequence[float]) -> float:
    return statistics.stdev(diffs) if len(diffs) > 1 else 0.0


def _protocol_tag(result: BenchmarkResult) -> str:
    n = len(result.seeds())
    quick = "quick run" if result.quick else "registered protocol"
    return f"{quick}, {n} seed{'s' if n != 1 else ''} per point"


def plot_accuracy(result: BenchmarkResult, path: Path) -> None:
    """Test accuracy minus joint's, per view set (x) and method (markers): the mean over the
    seeds of the paired per-seed difference, with ± its standard deviation as bars."""
    plt = pyplot()
    sets = result.view_sets
    keys = [k for k in result.method_keys() if k != "joint"]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.6 * len(sets)), 5.0))
    width = 0.7 / max(1, len(keys))
    for j, k in enumerate(keys):
        xs, ys, errs = [], [], []
        for i, vs in enumerate(sets):
            m = vs.methods
            if k in m and "joint" in m:
                diffs = _paired_diffs(m[k], m["joint"])
                xs.append(i + (j - (len(keys) - 1) / 2) * width)
                ys.append(statistics.fmean(diffs))
                errs.append(_spread(diffs))
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
    ax.set_xticks(range(len(sets)), [vs.name for vs in sets], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("view set")
    ax.set_ylabel("test accuracy − joint's (percentage points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=4)
    ax.set_title(
        f"UCI Multiple Features: each method against joint training ({_protocol_tag(result)})\n"
        "marker: mean of the per-seed differences; bars: ± their standard deviation",
        fontsize=10,
    )
    save_figure(fig, path)


def plot_gain(result: BenchmarkResult, path: Path) -> None:
    """MCR − joint accuracy against the joint encoders' under-training, one point per view set
    (bars: ± the standard deviation of the per-seed gain), with Spearman's ρ in the title."""
    plt = pyplot()
    gain = result.gain_vs_undertraining
    rows = gain.rows if gain is not None else []
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    for r in rows:
        m = result.view_set(r.view_set).methods
        x, y = 100 * r.undertraining, 100 * r.mcr_gain
        ax.errorbar(
            [x],
            [y],
            yerr=[_spread(_paired_diffs(m["mcr"], m["joint"]))],
            marker="o",
            ms=4,
            lw=0,
            elinewidth=0.8,
            capsize=2,
            color="tab:blue",
        )
        ax.annotate(r.view_set, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=6)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("under-training of the joint encoders\n(unimodal probe − joint probe, points)")
    ax.set_ylabel("MCR − joint test accuracy (percentage points)")
    rho = _rho(gain.spearman_mean if gain is not None else None)
    ax.set_title(
        f"Does MCR gain most where joint training under-trains? ({_protocol_tag(result)})\n"
        f"{len(rows)} view sets; Spearman ρ = {rho}; bars: ± std of the per-seed gain",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def write_outputs(result: BenchmarkResult, out: Path) -> None:
    """``results.json``, ``results.md`` and the plots of ``result`` in ``out``."""
    write_report(out, to_json(result), markdown(result))
    plot_accuracy(result, out / "accuracy.png")
    if result.gain_vs_undertraining is not None and result.gain_vs_undertraining.rows:
        plot_gain(result, out / "gain_vs_undertraining.png")
    if result.cost is not None:
        from benchmarks.multiview.cost import plot_cost

        plot_cost(result.cost, out / "cost.png")


def load_and_recompute(path: str | Path) -> BenchmarkResult:
    """A stored result with its summaries and paired tests computed again from its per-run
    accuracies by the current rules, and the report's own provenance record."""
    started = time.time()
    result = load_results(path)
    if result.setup is not None:
        step = resolution(result.setup.split_per_class)
        add_comparisons(result, step)
        if result.ablations is not None:
            variants = list(result.ablations.variants)
            result.ablations.paired = ablation_tests(result.ablations.per_view_set, variants, step)
    result.report_provenance = provenance(started)
    return result


def main(argv: Sequence[str] | None = None) -> BenchmarkResult:
    description = (__doc__ or "").split("\n")[0]
    return redraw_main(argv, description=description, load=load_and_recompute, write=write_outputs)


if __name__ == "__main__":
    main()
