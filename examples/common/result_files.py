"""Reading a benchmark runner's versioned ``results.json`` back.

A runner writes ``schema_version`` into its ``results.json``; files written before the field
existed are version 1. Each runner's ``results`` module upgrades older layouts to its current
one; this module holds the part they share: reading the file and checking the version.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def stamped(result: dict[str, Any], current: int) -> dict[str, Any]:
    """A copy of ``result`` marked as version ``current`` (its own version is 1 when absent);
    the caller then brings its entries up to date.

    Raises:
        ValueError: for a version newer than ``current``, the newest this code knows.
    """
    version = int(result.get("schema_version", 1))
    if version > current:
        raise ValueError(f"expected a results.json of schema version <= {current}, got {version}")
    return {**result, "schema_version": current}


def read_result(path: str | Path, *, producer: str, required: str) -> dict[str, Any]:
    """The JSON object in ``path``, a ``results.json`` of the module ``producer`` that holds
    the entry ``required``.

    Raises:
        ValueError: when the file cannot be read, is not JSON, or is not such a result.
    """
    expected = f"expected a results.json of {producer}"
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {expected}: {exc}") from exc
    if not isinstance(result, dict) or required not in result:
        raise ValueError(f"{path}: {expected} with {required!r}")
    return result


def redraw_main(
    argv: Sequence[str] | None,
    *,
    description: str,
    load: Callable[[Path], dict[str, Any]],
    write: Callable[[dict[str, Any], Path], None],
) -> dict[str, Any]:
    """The command line of a runner's report module: ``RESULTS --out DIR`` reads a
    ``results.json`` with ``load`` and writes it back, with its report, with ``write``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("results", type=Path, help="a results.json of the benchmark")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    args = p.parse_args(argv)
    try:
        result = load(args.results)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    write(result, args.out)
    print(f"wrote the results.json, results.md and plots of {args.results} to {args.out}")
    return result
