"""The table of the sampled-subsets result (docs/performance.md)."""

from __future__ import annotations

from typing import Any


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| arm | selected trial | test accuracy % (mean ± std) | per seed | seconds per run "
        "(median) | minus all (points) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, s in summary["arms"].items():
        vs = summary["against_all"].get(arm)
        diff = f"{vs['mean_diff']:+.2f}" if vs else ""
        lines.append(
            f"| {arm} | {s['trial']} | {s['test']['mean']:.2f} ± {s['test']['std']:.2f} | "
            f"{', '.join(f'{v:.1f}' for v in s['test_per_seed'])} | {s['seconds_median']:.0f} | "
            f"{diff} | {vs['verdict'] if vs else 'reference'} |"
        )
    return "\n".join(lines)
