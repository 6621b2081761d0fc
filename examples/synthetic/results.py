"""What ``results.json`` of the synthetic sweep holds from one version to the next.

The file states its ``schema_version`` (:data:`SCHEMA_VERSION`; none means 1). In version 1 the
variants of the ``rules`` ablation were called after the release that made each rule the
default; :data:`RULE_RENAMES` gives their present names, which :func:`load_results` applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from examples.common.result_files import read_result, stamped

#: The version of the ``results.json`` layout that :mod:`examples.synthetic.run` writes.
SCHEMA_VERSION = 2

#: Version-1 names of the ``rules`` ablation's variants -> the names they have now.
RULE_RENAMES: dict[str, str] = {
    "new (mean head gradient, NT-Xent)": "mean head gradient, NT-Xent (defaults)",
    "old head gradient (sum)": "summed head gradient",
    "old contrastive (SupCon)": "SupCon contrastive",
    "both old": "summed head gradient, SupCon",
}

#: The benchmark keys that are MCR (the claims are checked for each, against the baselines only).
MCR_KEYS: tuple[str, ...] = ("mcr", "mcr_uni_pre")

#: Entries of ``results["ablations"]`` that are not an ablation family.
ABLATION_SETUP_KEYS: tuple[str, ...] = ("point", "base_trial", "cpu_seconds")


def ablation_families(ablations: dict[str, Any]) -> list[str]:
    """The ablation families of ``results["ablations"]``, in the order they were run."""
    return [key for key in ablations if key not in ABLATION_SETUP_KEYS]


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` in the current layout (a new dict; the ``rules`` variants renamed).

    Raises:
        ValueError: for a ``schema_version`` newer than this code knows.
    """
    out = stamped(result, SCHEMA_VERSION)
    ablations = result.get("ablations")
    if ablations is not None and "rules" in ablations:
        rules = {RULE_RENAMES.get(k, k): v for k, v in ablations["rules"].items()}
        out["ablations"] = {**ablations, "rules": rules}
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` of :mod:`examples.synthetic.run` (any version) in the current
    layout.

    Raises:
        ValueError: when the file is not such a result, or of a newer version.
    """
    return upgrade(read_result(path, producer="examples.synthetic.run", required="points"))
