"""Write ``results.md`` and the plots of an AV-MNIST benchmark again from its ``results.json``,
or join the results of parts of one protocol run separately.

    python -m examples.avmnist.report runs/avmnist-quick/results.json --out runs/avmnist-quick
    python -m examples.avmnist.report PART1/results.json PART2/results.json --out JOINED

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

from examples.avmnist.run import markdown, plot, resolution, summarise
from examples.common.checkpoint import atomic_write_json
from examples.common.provenance import provenance


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
    summarise(result, resolution(first["pairs_per_class"]))
    setup = {k: v for k, v in first.items() if k not in ("wall_time_s", "load_average")}
    setup["plan"] = {**first["plan"], "methods": list(methods)}
    setup["grid"] = {k: v for p in parts for k, v in p["setup"]["grid"].items()}
    setup["parts"] = [{"file": n, **p["setup"]} for p, n in zip(parts, names, strict=True)]
    result["setup"] = setup
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument(
        "results", type=Path, nargs="+", help="results.json files written by examples.avmnist.run"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for results.md and the plots")
    args = p.parse_args(argv)
    started = time.time()
    parts = [read_result(path) for path in args.results]
    if len(parts) == 1:
        # the summaries are recomputed from the per-run results by the current rules
        result = parts[0]
        summarise(result, resolution(result["setup"]["pairs_per_class"]))
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
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, args.out / "results.json")
    (args.out / "results.md").write_text(markdown(result))
    plot(result, args.out)
    print(f"wrote {args.out}/results.json, results.md, accuracy.png and probes.png")


if __name__ == "__main__":
    main()
