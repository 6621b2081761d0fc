"""The package, the shared example code and the benchmark runners keep their functions short
enough to read in one screen (about 80 lines, docstring included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LIMIT = 80


def long_functions(folder: Path, limit: int = LIMIT) -> list[str]:
    """``path:line name (N lines)`` (path within ``folder``) of every function in ``folder`` longer than ``limit``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    where = path.relative_to(folder)
                    found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


@pytest.mark.parametrize(
    "folder", ["mcr_reg", "examples/common", "examples/multiview", "benchmarks/synthetic"]
)
def test_no_function_is_longer_than_the_limit(folder: str) -> None:
    assert long_functions(ROOT / folder) == []


def test_a_long_function_is_found(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert [line.split()[1] for line in long_functions(tmp_path)] == ["long"]
