"""Write ``results.md`` and the plots of an AV-MNIST benchmark again from its ``results.json``,
or join the results of parts of one protocol run separately.

    python -m benchmarks.avmnist.report runs/avmnist-quick/results.json --out runs/avmnist-quick
    python -m benchmarks.avmnist.report PART1/results.json PART2/results.json --out JOINED

No training: the tables and figures come from the stored per-run results only; the probe gaps,
premise, repair and paired tests are computed again from them by the current rules, and
``results.json`` is written with them. Parts are runs of the
same protocol (data, budget, pairs, seeds, number of trials) on different methods, for example
the primary methods in one session and the context methods in another; the joined result has
every method of every part, and its probe gaps, premise, repair tests and paired tests are
computed again over all of them. Each part's
setup is kept under ``setup.parts``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.avmnist.protocol import MCR_KEYS, MODALITIES, add_comparisons, resolution
from examples.common.provenance import provenance
from examples.common.reporting import write_report


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"


def markdown(result: dict[str, Any]) -> str:
    """The tables of results.md."""
    m = result["methods"]
    lines = [
        "## Test accuracy (%), mean ± std over seeds, and linear probes of each encoder",
        "",
        "| method | test accuracy | selected trial | probe image | probe audio | probe gap image | probe gap audio |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in m.items():
        gap = r.get("probe_gap")
        gaps = [f"{100 * gap[x]['mean']:+.2f}" if gap else "–" for x in MODALITIES]
        lines.append(
            f"| {key} | {_pct(r)} | {r['trial']} | {_pct(r['probe']['image'])} | "
            f"{_pct(r['probe']['audio'])} | {gaps[0]} | {gaps[1]} |"
        )
    premise = result.get("premise")
    if premise:
        uni = premise["unimodal_test"] or {}
        c = premise["joint_minus_ensemble"]
        lines += [
            "",
            "## Premise",
            "",
            "Unimodal test accuracy (the ensemble's models): "
            + ", ".join(f"{x} {_pct(uni[x])}" for x in uni)
            + f". Joint − ensemble: {100 * c['mean_diff']:+.2f} points "
            f"({c['wins']} / {c['ties']} / {c['losses']}, Wilcoxon p {c['wilcoxon_p']:.3g}). "
            "Joint training's probe gap (ensemble probe − joint probe): "
            + ", ".join(
                f"{x} {100 * premise['joint_probe_gap'][x]['mean']:+.2f}" for x in MODALITIES
            )
            + " points.",
        ]
    repair = result.get("repair")
    if repair and len(repair) > 1:
        lines += ["", f"## Repair of the starved encoder ({repair['starved']})", ""]
        lines += [
            "| method | probe − joint's (points, W/T/L, Wilcoxon p) | probe − ensemble's | repaired | fully |",
            "|---|---|---|---|---|",
        ]
        for key in MCR_KEYS:
            if key in repair:
                r = repair[key]
                cells = [
                    f"{100 * c['mean_diff']:+.2f} ({c['wins']}/{c['ties']}/{c['losses']}, "
                    f"p {c['wilcoxon_p']:.3g})"
                    for c in (r["vs_joint"], r["vs_ensemble"])
                ]
                lines.append(
                    f"| {key} | {cells[0]} | {cells[1]} | {'yes' if r['repaired'] else 'no'} | "
                    f"{'yes' if r['fully'] else 'no'} |"
                )
    lines += [
        "",
        "## Paired differences over seeds (test accuracy, points)",
        "",
        "| comparison | n | mean diff | wins / ties / losses | sign test p | Wilcoxon p | verdict (α = 0.0125) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in result["paired"].items():
        lines.append(
            f"| {name.replace('-', ' − ')} | {c['n']} | {100 * c['mean_diff']:+.2f} | "
            f"{c['wins']} / {c['ties']} / {c['losses']} | {c['sign_p']:.3g} | "
            f"{c['wilcoxon_p']:.3g} | {c.get('verdict', 'context')} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out: Path) -> None:
    """``accuracy.png`` (per-seed test accuracy per method) and ``probes.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result["methods"]
    keys = list(m)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(keys)), 4.2))
    for i, k in enumerate(keys):
        ys = [100 * v for v in m[k]["per_seed"]]
        ax.scatter([i] * len(ys), ys, s=12, alpha=0.6, marker="*" if k in MCR_KEYS else "o")
        ax.hlines(100 * m[k]["mean"], i - 0.3, i + 0.3, color="black", lw=1.5)
    ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("AV-MNIST: test accuracy per method (points: seeds, bar: mean)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "accuracy.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(keys)), 4.2))
    width = 0.38
    for j, mod in enumerate(MODALITIES):
        means = [100 * m[k]["probe"][mod]["mean"] for k in keys]
        errs = [100 * m[k]["probe"][mod]["std"] for k in keys]
        ax.bar(
            [i + (j - 0.5) * width for i in range(len(keys))], means, width, yerr=errs, label=mod
        )
    ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_title("AV-MNIST: what each encoder's latent holds, per method")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "probes.png", dpi=110)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` and the plots of ``result`` in ``out``."""
    write_report(out, result, markdown(result))
    plot(result, out)


def read_result(path: Path) -> dict[str, Any]:
    """The ``results.json`` at ``path``, or a clear error."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"{path}: expected a results.json of the benchmark: {err}") from None
    if not isinstance(result, dict) or "methods" not in result or "paired" not in result:
        raise SystemExit(f"{path}: expected the keys 'methods' and 'paired', got another file")
    return result


def protocol(setup: dict[str, Any]) -> dict[str, Any]:
    """What two parts must share to be one protocol run in pieces."""
    return {
        "data": setup.get("data_digest"),
        "budget": setup.get("budget"),
        "pairs per class": setup.get("pairs_per_class"),
        "seeds": setup["plan"]["seeds"],
        "trials per method": setup["plan"]["grid"],
        "quick": setup.get("quick"),
    }


def join(parts: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """One result with the methods of every part; the tests are computed again.

    Raises:
        ValueError: when a part has no setup, the parts differ in data, budget, pairs, seeds
            or number of trials, or two parts report the same method.
    """
    for part, name in zip(parts, names, strict=True):
        if "setup" not in part:
            raise ValueError(f"{name}: expected a 'setup' to check the protocol, got none")
    reference = protocol(parts[0]["setup"])
    methods: dict[str, Any] = {}
    for part, name in zip(parts, names, strict=True):
        mine = protocol(part["setup"])
        for key, value in reference.items():
            if mine[key] != value:
                raise ValueError(
                    f"{name}: expected the same {key} as {names[0]} ({value!r}), got {mine[key]!r}"
                )
        for key, entry in part["methods"].items():
            if key in methods:
                raise ValueError(f"{name}: method {key!r} is already in an earlier part")
            methods[key] = entry
    result: dict[str, Any] = {"methods": methods}
    first = parts[0]["setup"]
    add_comparisons(result, resolution(first["pairs_per_class"]))
    setup = {k: v for k, v in first.items() if k not in ("wall_time_s", "load_average")}
    setup["plan"] = {**first["plan"], "methods": list(methods)}
    setup["grid"] = {k: v for p in parts for k, v in p["setup"]["grid"].items()}
    setup["parts"] = [{"file": n, **p["setup"]} for p, n in zip(parts, names, strict=True)]
    result["setup"] = setup
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument(
        "results", type=Path, nargs="+", help="results.json files written by benchmarks.avmnist"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for results.md and the plots")
    args = p.parse_args(argv)
    started = time.time()
    parts = [read_result(path) for path in args.results]
    if len(parts) == 1:
        # the summaries are recomputed from the per-run results by the current rules
        result = parts[0]
        add_comparisons(result, resolution(result["setup"]["pairs_per_class"]))
    else:
        try:
            result = join(parts, [str(path) for path in args.results])
        except ValueError as err:
            raise SystemExit(str(err)) from None
    if len(parts) == 1:
        result["report_provenance"] = provenance(started)
    else:
        result["provenance"] = {
            **provenance(started),
            "parts": {str(p): part.get("provenance") for p, part in zip(args.results, parts)},
        }
    write_outputs(result, args.out)
    print(f"wrote {args.out}/results.json, results.md, accuracy.png and probes.png")


if __name__ == "__main__":
    main()
