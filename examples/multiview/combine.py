"""Combine the results of several runs of the multi-view benchmark into one report.

    python -m examples.multiview.combine A/results.json B/results.json --out runs/combined

The full protocol is one command (``examples.multiview.run`` without ``--quick``), but it
takes hours on a laptop. It can be split by view set and method (``--pairs``, ``--no-triples``,
``--six``, ``--methods``) over several sessions or machines and the parts combined here. The
parts must come from the same protocol (seeds, grid, budget, split sizes, ablation seeds):
anything else is an error. Every run is deterministic (one CPU thread, fixed seeds), so where
two parts hold the same method on the same view set their results must agree; the combination
checks that they do (training times aside) and refuses otherwise. The combined report is what
the single command would have written: the paired tests, the probes, the gain against
under-training and the ablation tests are recomputed over the union.
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.multiview.report import markdown, write_outputs
from examples.multiview.results import SCHEMA_VERSION, load_results
from examples.multiview.run import (
    METHODS,
    TRIPLE_RANKS,
    ViewSet,
    ablation_tests,
    methods_for,
    pairs,
    summarise,
)

#: Setup entries that must be equal in every part (they define the protocol).
PROTOCOL_KEYS: tuple[str, ...] = ("budget", "split_per_class")
PLAN_KEYS: tuple[str, ...] = ("seeds", "grid")
#: Fields of a result that differ between identical runs (wall-clock time).
TIMING_KEYS: frozenset[str] = frozenset({"seconds"})


class CombineError(ValueError):
    """Parts that cannot be combined (different protocols, or results that disagree)."""


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _agree(what: str, a: Any, b: Any, names: tuple[str, str]) -> None:
    if _without_timing(a) != _without_timing(b):
        raise CombineError(
            f"{what}: {names[0]} and {names[1]} disagree; expected identical results "
            f"(the runs are deterministic), got {_without_timing(a)!r} and {_without_timing(b)!r}"
        )


def _order(name: str, kind: str) -> tuple[int, int]:
    """Report order of a view set: pairs (canonical), the triples, then the six views."""
    if kind == "pair":
        return (0, [vs.name for vs in pairs()].index(name))
    if kind == "all6":
        return (2, 0)
    return (1, list(TRIPLE_RANKS).index(kind))


def combine(parts: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The union of ``parts`` (``results.json`` contents), with every summary recomputed.

    ``names`` label the parts in error messages and in ``setup["combined_from"]``.
    """
    if len(parts) != len(names):
        raise ValueError(f"expected one name per part, got {len(parts)} parts, {len(names)} names")
    if not parts:
        raise CombineError("expected at least one results.json, got none")
    for part, name in zip(parts, names, strict=True):
        for key in ("view_sets", "setup"):
            if key not in part:
                raise CombineError(f"{name}: expected a results.json with {key!r}, it has none")
        if part["setup"].get("quick"):
            raise CombineError(f"{name}: expected a run of the full protocol, got a --quick run")
    first, first_name = parts[0], names[0]
    for part, name in zip(parts[1:], names[1:], strict=True):
        for key in PROTOCOL_KEYS:
            _agree(f"setup {key}", first["setup"][key], part["setup"][key], (first_name, name))
        for key in PLAN_KEYS:
            _agree(
                f"plan {key}",
                first["setup"]["plan"][key],
                part["setup"]["plan"][key],
                (first_name, name),
            )

    sets: dict[str, dict[str, Any]] = {}
    source: dict[tuple[str, str], str] = {}
    triple_rule: tuple[str, dict[str, Any]] | None = None
    for part, name in zip(parts, names, strict=True):
        if "triple_rule" in part:
            if triple_rule is not None:
                _agree(
                    "the triple rule", triple_rule[1], part["triple_rule"], (triple_rule[0], name)
                )
            else:
                triple_rule = (name, part["triple_rule"])
        for vs in part["view_sets"]:
            entry = sets.setdefault(
                vs["name"],
                {"name": vs["name"], "views": vs["views"], "kind": vs["kind"], "methods": {}},
            )
            if (entry["views"], entry["kind"]) != (vs["views"], vs["kind"]):
                raise CombineError(
                    f"view set {vs['name']}: expected views {entry['views']} ({entry['kind']}) "
                    f"as in the other parts, got {vs['views']} ({vs['kind']}) in {name}"
                )
            for key, res in vs["methods"].items():
                if key in entry["methods"]:
                    _agree(
                        f"{vs['name']} {key}",
                        entry["methods"][key],
                        res,
                        (source[(vs["name"], key)], name),
                    )
                else:
                    entry["methods"][key] = res
                    source[(vs["name"], key)] = name
    order = [*METHODS, "mcr_singletons"]
    for entry in sets.values():
        entry["methods"] = dict(sorted(entry["methods"].items(), key=lambda kv: order.index(kv[0])))
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "view_sets": sorted(sets.values(), key=lambda e: _order(e["name"], e["kind"])),
    }
    if triple_rule is not None:
        result["triple_rule"] = triple_rule[1]
    summarise(result)

    ablation_parts = [
        (p["ablations"], n) for p, n in zip(parts, names, strict=True) if "ablations" in p
    ]
    if ablation_parts:
        base, base_name = ablation_parts[0]
        per_set: dict[str, Any] = {}
        for abl, name in ablation_parts:
            _agree("ablation variants", base["variants"], abl["variants"], (base_name, name))
            _agree("ablation seeds", base["seeds"], abl["seeds"], (base_name, name))
            for vs_name, row in abl["per_view_set"].items():
                if vs_name in per_set:
                    _agree(f"ablations on {vs_name}", per_set[vs_name], row, (base_name, name))
                per_set[vs_name] = row
        for vs_name, row in per_set.items():
            main = sets[vs_name]["methods"].get("mcr") if vs_name in sets else None
            k = len(base["seeds"])
            if main is None or main["per_seed"][:k] != row["mcr"]["per_seed"]:
                raise CombineError(
                    f"ablations on {vs_name}: expected their mcr seeds to be the main mcr runs' "
                    f"first {k} seeds, got {row['mcr']['per_seed']}"
                )
        ordered = {
            e["name"]: per_set[e["name"]] for e in result["view_sets"] if e["name"] in per_set
        }
        result["ablations"] = {
            "variants": base["variants"],
            "seeds": base["seeds"],
            "per_view_set": ordered,
            "paired": ablation_tests(ordered),
        }
    costs = [(p["cost"], n) for p, n in zip(parts, names, strict=True) if "cost" in p]
    if len(costs) > 1:
        raise CombineError(
            f"expected the cost measurement in at most one part, got it in "
            f"{[n for _, n in costs]} (run the others with --no-cost)"
        )
    if costs:
        result["cost"] = costs[0][0]
    result["setup"] = {
        "combined_from": [
            {"file": n, "setup": p["setup"]} for p, n in zip(parts, names, strict=True)
        ],
        "budget": first["setup"]["budget"],
        "split_per_class": first["setup"]["split_per_class"],
        "seeds": first["setup"]["plan"]["seeds"],
        "grid": first["setup"]["plan"]["grid"],
    }
    return result


def coverage(result: dict[str, Any]) -> list[str]:
    """What the full protocol holds that ``result`` lacks, one line per gap (empty: complete)."""
    gaps = []
    sets_missing: dict[tuple[str, ...], list[str]] = {}  # the same methods missing: one line
    for vs in result["view_sets"]:
        wanted = methods_for(ViewSet(tuple(vs["views"]), vs["kind"]), METHODS)
        missing = tuple(k for k in wanted if k not in vs["methods"])
        if missing:
            sets_missing.setdefault(missing, []).append(vs["name"])
    for missing, names in sets_missing.items():
        gaps.append(f"{', '.join(names)}: no {', '.join(missing)}")
    kinds = {vs["kind"] for vs in result["view_sets"]}
    n_pairs = sum(vs["kind"] == "pair" for vs in result["view_sets"])
    if n_pairs < len(pairs()):
        gaps.append(f"{n_pairs} of {len(pairs())} pairs")
    for kind in (*TRIPLE_RANKS, "all6"):
        if kind not in kinds:
            gaps.append(f"no {kind} view set")
    done = set(result.get("ablations", {}).get("per_view_set", {}))
    lacking = [vs["name"] for vs in result["view_sets"] if vs["name"] not in done]
    if lacking:
        gaps.append(f"no ablations on {', '.join(lacking)}")
    if "cost" not in result:
        gaps.append("no cost measurement")
    return gaps


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="results.json of each part")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    args = p.parse_args(argv)
    parts = []
    for path in args.results:
        try:
            parts.append(load_results(path))
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
    result = combine(parts, [str(p) for p in args.results])
    gaps = coverage(result)
    result["setup"]["missing_from_the_protocol"] = gaps
    write_outputs(result, args.out)
    print(markdown(result))
    print(
        "complete: every view set, method, ablation and the cost"
        if not gaps
        else "not the whole protocol: " + "; ".join(gaps)
    )
    print(f"wrote {args.out}/results.json, results.md and the plots")
    return result


if __name__ == "__main__":
    main()
