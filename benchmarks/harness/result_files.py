"""Reading a benchmark runner's versioned ``results.json`` back.

A runner writes ``schema_version`` into its ``results.json``; files written before the field
existed are version 1. Each runner's ``results`` module upgrades older layouts to its current
one; this module holds the part they share: reading the file and checking the version.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
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


Result = typing.TypeVar("Result")


def redraw_main(
    argv: Sequence[str] | None,
    *,
    description: str,
    load: Callable[[Path], Result],
    write: Callable[[Result, Path], None],
) -> Result:
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


# ----------------------------------------------------------------- typed results <-> JSON
#: Field metadata of the one field of a schema that holds every entry no other field names
#: (a JSON object whose keys are partly fixed, partly data).
REST: dict[str, bool] = {"rest": True}


def to_json(value: Any) -> Any:
    """``value`` as JSON-ready data: a dataclass becomes an object of its fields in their
    order; a field whose default is ``None`` is left out while it is ``None``; the field
    marked :data:`REST` is spread into its parent object."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("rest"):
                out.update(to_json(item))
            elif not (item is None and f.default is None):
                out[f.name] = to_json(item)
        return out
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(kind: Any, data: Any, where: str = "results.json") -> Any:
    """``data`` (parsed JSON) as an instance of ``kind``: a dataclass, ``dict[str, T]``,
    ``list[T]``, ``T | None`` or a plain type (taken as it is).

    Raises:
        ValueError: an object that lacks a field without default, or holds one the
            dataclass does not know; ``where`` names the place.
    """
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return from_json(inner[0], data, where) if len(inner) == 1 else data
    if origin is dict:
        value_kind = typing.get_args(kind)[1]
        return {
            k: from_json(value_kind, v, f"{where}.{k}") for k, v in _object(data, where).items()
        }
    if origin is list:
        (item_kind,) = typing.get_args(kind)
        return [from_json(item_kind, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass_from_json(kind, _object(data, where), where)
    return data


def _object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def _dataclass_from_json(kind: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(kind)
    fields = dataclasses.fields(kind)
    named = {f.name for f in fields if not f.metadata.get("rest")}
    rest = [f for f in fields if f.metadata.get("rest")]
    unknown = [k for k in data if k not in named]
    if unknown and not rest:
        raise ValueError(f"{where}: expected the fields of {kind.__name__}, got also {unknown}")
    values: dict[str, Any] = {}
    for f in fields:
        if f.metadata.get("rest"):
            values[f.name] = from_json(hints[f.name], {k: data[k] for k in unknown}, where)
        elif f.name in data:
            values[f.name] = from_json(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: expected {kind.__name__} field {f.name!r}, it is missing")
    return kind(**values)
