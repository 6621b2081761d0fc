"""Reading a benchmark runner's versioned ``results.json`` back.

A runner writes ``schema_version`` into its ``results.json``; files written before the field
existed are version 1. Each runner's ``results`` module upgrades older layouts to its current
one; this module holds the part they share: reading the file and checking the version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def schema_version(result: dict[str, Any], current: int) -> int:
    """The ``schema_version`` of ``result`` (1 when absent).

    Raises:
        ValueError: for a version newer than ``current``, the newest this code knows.
    """
    version = int(result.get("schema_version", 1))
    if version > current:
        raise ValueError(f"expected a results.json of schema version <= {current}, got {version}")
    return version


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
