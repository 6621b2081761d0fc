"""Compute the paired tests of the committed results files again from their stored per-run
results, by the current tie and zero rule (docs/decisions.md, "Paired tests"), in place.

    python -m docs.scripts.recompute_tests            # rewrites the files below
    python -m docs.scripts.recompute_tests --check    # only says which files would change

No training. The multi-view files go through :func:`benchmarks.multiview.report.load_and_recompute`,
the AV-MNIST files through :func:`benchmarks.avmnist.protocol.add_comparisons`, the ensemble-gap files
through :func:`benchmarks.ensemble_gap.analysis.paired_tests` and the sampled-subsets file through
:func:`benchmarks.sampled_subsets.protocol.compare_arms`. Each rewritten file gets this command's
``report_provenance``; a file without a ``provenance`` record gets one saying it is kept from
an earlier run (:func:`examples.common.provenance.kept_provenance`), with what the file itself
recorded of that run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness.paired_stats import item_resolution
from benchmarks.harness.result_files import to_json
from examples.common.provenance import kept_provenance, provenance

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
BENCHMARK_RESULTS = ROOT / "benchmarks" / "results"

#: Test points per ensemble-gap setting (the protocol's split sizes).
ENSEMBLE_GAP_TEST_POINTS = {"synthetic": 2000, "undertrained": 2000, "avmnist": 1000}

KEPT_NOTE = (
    "kept from a run made before results files recorded their provenance: the commit, package "
    "versions and machine of that run are not known beyond what 'known' lists (what the file "
    "itself recorded)"
)


def known_of(result: dict[str, Any]) -> dict[str, Any]:
    """What a results file recorded of its own run (command, environment, times, load)."""
    known: dict[str, Any] = {}
    places = (result, result.get("meta") or {}, result.get("setup") or {})
    keys = (
        "command",
        "code_at_start",
        "environment",
        "wall_seconds",
        "wall_s",
        "wall_time_s",
        "training_wall_time_s",
        "load_average",
        "load_average_end",
        "cpu_seconds",
    )
    for place in places:
        for key in keys:
            if key in place and key not in known:
                known[key] = place[key]
    return known


def with_kept_provenance(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with a kept-from-an-earlier-run record when it has no provenance."""
    if "provenance" in result:
        return result
    return {**result, "provenance": kept_provenance(KEPT_NOTE, known_of(result))}


def multiview(path: Path) -> dict[str, Any]:
    from benchmarks.multiview.report import load_and_recompute

    return dict(to_json(load_and_recompute(path)))


def avmnist(path: Path) -> dict[str, Any]:
    from benchmarks.avmnist.protocol import add_comparisons, resolution

    started = time.time()
    result: dict[str, Any] = json.loads(path.read_text())
    add_comparisons(result, resolution(result["setup"]["pairs_per_class"]))
    result["report_provenance"] = provenance(started)
    return result


def ensemble_gap(path: Path) -> dict[str, Any]:
    from benchmarks.ensemble_gap.analysis import decide, paired_tests

    started = time.time()
    result: dict[str, Any] = json.loads(path.read_text())
    for name, setting in result["settings"].items():
        n_test = setting.get("n_test", ENSEMBLE_GAP_TEST_POINTS[name])
        acc = {k: v["per_seed"] for k, v in setting["predictors"].items()}
        setting["n_test"] = n_test
        setting["tests"] = paired_tests(acc, item_resolution(n_test))
    result["decision"] = decide(result["settings"])
    result["report_provenance"] = provenance(started)
    return result


def sampled_subsets(path: Path) -> dict[str, Any]:
    from benchmarks.sampled_subsets.protocol import compare_arms

    started = time.time()
    result: dict[str, Any] = json.loads(path.read_text())
    result["summary"] = compare_arms(result["runs"], argparse.Namespace(**result["settings"]))
    result["report_provenance"] = provenance(started)
    return result


#: The committed results files with paired tests, and how each is recomputed.
RECOMPUTE: dict[str, Callable[[Path], dict[str, Any]]] = {
    **{
        f"docs/examples/multiview-{name}-results.json": multiview
        for name in ("quick", "full", "full18", "six", "six-singletons", "baselines")
    },
    **{
        f"docs/examples/avmnist-{name}-results.json": avmnist
        for name in ("quick", "full", "full-primary")
    },
    **{
        f"docs/examples/ensemble-gap{name}-results.json": ensemble_gap
        for name in ("", "-rerun", "-training-fit")
    },
    "benchmarks/results/sampled_subsets.json": sampled_subsets,
}


def without_report_records(result: Any) -> Any:
    """``result`` without its report records (what two recomputations must agree on)."""
    if isinstance(result, dict):
        return {k: without_report_records(v) for k, v in result.items() if k != "report_provenance"}
    return result


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; list what would change")
    args = p.parse_args(argv)
    changed = []
    files = {ROOT / rel: fn for rel, fn in RECOMPUTE.items()}
    for path in [*sorted(EXAMPLES.glob("*.json")), *sorted(BENCHMARK_RESULTS.glob("*.json"))]:
        stored = json.loads(path.read_text())
        fresh = with_kept_provenance(files[path](path) if path in files else stored)
        if without_report_records(fresh) != without_report_records(stored):
            changed.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.write_text(json.dumps(fresh, indent=2) + "\n")
    print("\n".join(changed) if changed else "every results file is up to date")
    return changed


if __name__ == "__main__":
    main()
