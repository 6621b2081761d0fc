"""The multi-view benchmark's ``results.json``: its version, its names, and reading it back.

``results.json`` carries ``schema_version`` (:data:`SCHEMA_VERSION`). Files written before the
version field existed (version 1) named three MCR ablations after when their rule was the
package's default; :func:`load_results` reads both versions and returns the current names
(:data:`ABLATION_RENAMES`), so every committed result still renders with
``python -m examples.multiview.report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from examples.common.result_files import read_result, stamped

#: The version of the ``results.json`` layout that :mod:`examples.multiview.run` writes.
SCHEMA_VERSION = 2

#: Version-1 ablation names -> the names they have now (what each ablation sets).
ABLATION_RENAMES: dict[str, str] = {
    "old_head_gradient_sum": "head_gradient_sum",
    "old_contrastive_supcon": "contrastive_supcon",
    "old_rules": "head_gradient_sum_and_supcon",
}

#: The benchmark keys that are MCR (the paired tests compare each with every other method).
MCR_KEYS: tuple[str, ...] = ("mcr", "mcr_uni_pre")


def kind_group(kind: str) -> str:
    """``pair``, ``triple`` (weakest3, strongest3, mixed3) or ``six``."""
    return {"pair": "pair", "all6": "six"}.get(kind, "triple")


def _renamed(mapping: dict[str, Any], suffix: str = "") -> dict[str, Any]:
    renames = {old + suffix: new + suffix for old, new in ABLATION_RENAMES.items()}
    return {renames.get(key, key): value for key, value in mapping.items()}


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` in the current layout (a new dict; the ablation entries renamed).

    Raises:
        ValueError: for a ``schema_version`` newer than this code knows.
    """
    out = stamped(result, SCHEMA_VERSION)
    ablations = result.get("ablations")
    if ablations is not None:
        out["ablations"] = {
            **ablations,
            "variants": _renamed(ablations["variants"]),
            "per_view_set": {k: _renamed(row) for k, row in ablations["per_view_set"].items()},
            "paired": _renamed(ablations["paired"], "-mcr"),
        }
    setup = result.get("setup")
    if setup is not None and setup.get("ablations") is not None:
        out["setup"] = {**setup, "ablations": _renamed(setup["ablations"])}
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` of :mod:`examples.multiview.run` (any version) in the current
    layout.

    Raises:
        ValueError: when the file is not such a result, or of a newer version.
    """
    return upgrade(read_result(path, producer="examples.multiview.run", required="view_sets"))
