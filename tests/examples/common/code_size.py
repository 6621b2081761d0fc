"""What the size tests (test_function_length.py, test_file_length.py) check: every ``.py`` file
of the package, the examples and the benchmarks, each a test of its own, and the files that
are known to be over a limit while their owners split them (an explicit, dated list)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TREES = ("mcr_reg", "examples", "benchmarks")

#: Files over a limit today, each with who is splitting it. Each entry is a strict xfail: once
#: the file is within the limit the test XPASSes and fails, and the entry has to go; an entry
#: naming a file that no longer exists fails ``test_every_known_offender_exists``.
OVERSIZED: dict[str, dict[str, str]] = {
    "functions": {},
    "lines": {
        "benchmarks/recipes.py": (
            "2026-12-06: 893 lines; owner: the recipes benchmark's engineer (its port onto the "
            "harness); remove this entry once it is within the limit"
        ),
    },
}


def tree_files() -> list[str]:
    """Every ``.py`` file under the trees, as a path from the repository root."""
    return [p.relative_to(ROOT).as_posix() for t in TREES for p in sorted((ROOT / t).rglob("*.py"))]


def source_files(known: Mapping[str, str]) -> list[object]:
    """:func:`tree_files` as test parameters, those in ``known`` as strict xfails with their
    reason."""
    return [
        pytest.param(rel, marks=pytest.mark.xfail(reason=known[rel], strict=True))
        if rel in known
        else rel
        for rel in tree_files()
    ]
