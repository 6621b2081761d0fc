"""The tables of docs/examples/ensemble-gap.md, from a ``results.json``."""

from __future__ import annotations

from typing import Any


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def setting_tables(name: str, s: dict[str, Any]) -> list[str]:
    """The lines of one setting's section: predictors, paired tests, reliance, error overlap
    and, where kept, the fit on the training split."""
    lines = [f"### {name} (seeds {', '.join(map(str, s['seeds']))})", ""]

    has_cats = "per_category" in next(iter(s["predictors"].values()))
    head = "| predictor | test accuracy % | ECE | NLL |"
    rule = "|---|---|---|---|"
    if has_cats:
        head += " shared | U1 only | U2 only |"
        rule += "---|---|---|"
    lines += [head, rule]
    for k, e in s["predictors"].items():
        row = f"| {k} | {_pct(e['mean'])} ± {_pct(e['std'])} | {e['ece']:.3f} | {e['nll']:.3f} |"
        if has_cats:
            row += "".join(f" {_pct(v)} |" for v in e["per_category"].values())
        lines.append(row)
    lines += [
        "",
        "| comparison | mean diff (points) | wins / ties / losses | sign p | Wilcoxon p | verdict |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for k, against in s["tests"].items():
        for ref, c in against.items():
            lines.append(
                f"| {k} − {ref} | {100 * c['mean_diff']:+.2f} | {c['wins']} / {c['ties']} / "
                f"{c['losses']} | {c['sign_p']:.3g} | {c['wilcoxon_p']:.3g} | {c['verdict']} |"
            )
    rel = s["reliance"]
    mods = list(rel["mcr_fused"])
    lines += ["", f"| reliance | {' | '.join(mods)} |", "|---|" + "---|" * len(mods)]
    for kind, values in rel.items():
        fmt = _pct if kind.endswith("accuracy") else (lambda v: f"{v:.3f}")
        lines.append(f"| {kind} | {' | '.join(fmt(values[m]) for m in mods)} |")
    n_adv = s["ensemble_right_mcr_fused_wrong"]
    lines += [
        "",
        f"Error overlap with `mcr_fused` (test points, summed over seeds); the "
        f"ensemble is right and `mcr_fused` wrong on {n_adv} points, of which each "
        "predictor gets right the last column:",
        "",
        "| predictor | both wrong | only mcr_fused wrong | only it wrong | right where only the ensemble was |",
        "|---|---|---|---|---|",
    ]
    for k, o in s["overlap_with_mcr_fused"].items():
        lines.append(
            f"| {k} | {o['both_wrong']} | {o['only_a_wrong']} | {o['only_b_wrong']} | "
            f"{s['of_those_right'][k]} |"
        )
    if "training_fit" in s:
        fit = s["training_fit"]
        kinds = list(next(iter(fit.values())))
        lines += ["", "Training split, accuracy % (mean top probability):", ""]
        lines += [f"| predictor | {' | '.join(kinds)} |", "|---|" + "---|" * len(kinds)]
        for k, per_kind in fit.items():
            cells = [
                f"{_pct(per_kind[c]['accuracy'])} ({per_kind[c]['confidence']:.2f})" for c in kinds
            ]
            lines.append(f"| {k} | {' | '.join(cells)} |")
    lines.append("")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The tables of docs/examples/ensemble-gap.md for one ``results.json``."""
    lines = []
    for name, s in result["settings"].items():
        lines += setting_tables(name, s)
    d = result["decision"]
    lines += [
        "### Rule",
        "",
        f"All settings measured with enough seeds: {d['all_settings_measured']}.",
        "",
    ]
    for r, v in d["remedies"].items():
        wins = ", ".join(
            f"{k}: {'win' if w else 'no win'}" for k, w in v["wins_per_setting"].items()
        )
        lines.append(f"- `{r}`: {wins}; becomes a default: {v['becomes_default']}")
    return "\n".join(lines) + "\n"
