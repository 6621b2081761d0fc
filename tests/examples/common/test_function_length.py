"""The package, the examples and the benchmarks keep their functions short enough to read in
one screen (about 80 lines, docstring included). Every ``.py`` file of the three trees is
checked on its own, so a new file is covered as soon as it exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.examples.common.code_size import OVERSIZED, ROOT, source_files

LIMIT = 80


def long_functions_in(path: Path, limit: int = LIMIT) -> list[str]:
    """``line name (N lines)`` of every function or method in ``path`` longer than ``limit``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append(f"{node.lineno} {node.name} ({length} lines)")
    return found


def long_functions(folder: Path, limit: int = LIMIT) -> list[str]:
    """``path:line name (N lines)`` (path within ``folder``) of every function in ``folder``
    longer than ``limit``."""
    return [
        f"{path.relative_to(folder)}:{found}"
        for path in sorted(folder.rglob("*.py"))
        for found in long_functions_in(path, limit)
    ]


@pytest.mark.parametrize("rel", source_files(OVERSIZED["functions"]))
def test_no_function_is_longer_than_the_limit(rel: str) -> None:
    assert long_functions_in(ROOT / rel) == []


def test_a_long_function_is_found(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert [line.split()[1] for line in long_functions(tmp_path)] == ["long"]


def test_a_long_method_and_a_nested_function_are_found(tmp_path: Path) -> None:
    body = "\n".join(f"            x{i} = {i}" for i in range(LIMIT))
    text = f"class C:\n    def method(self):\n        def inner():\n{body}\n"
    (tmp_path / "m.py").write_text(text)
    assert [line.split()[1] for line in long_functions(tmp_path)] == ["method", "inner"]
