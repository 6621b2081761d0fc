"""No ``.py`` file in the package, the examples or the benchmarks is over 600 lines: a module
that long holds more than one idea. Every file is checked on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.common.code_size import OVERSIZED, ROOT, source_files, tree_files

LIMIT = 600


def line_count(path: Path) -> int:
    """The number of lines of ``path`` (a last line without a newline counts)."""
    return len(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("rel", source_files(OVERSIZED["lines"]))
def test_no_file_is_longer_than_the_limit(rel: str) -> None:
    assert line_count(ROOT / rel) <= LIMIT, f"{rel} has {line_count(ROOT / rel)} lines"


def test_line_count(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n" * LIMIT)
    (tmp_path / "b.py").write_text("x = 1\n" * LIMIT + "y = 2")
    assert [line_count(tmp_path / n) for n in ("a.py", "b.py")] == [LIMIT, LIMIT + 1]


def test_every_tree_is_scanned() -> None:
    files = tree_files()
    for expected in ("mcr_reg/__init__.py", "examples/common/trainer.py", "benchmarks/__init__.py"):
        assert expected in files


@pytest.mark.parametrize("limit", sorted(OVERSIZED))
def test_every_known_offender_exists(limit: str) -> None:
    """An entry of the xfail list outlives its file when the file moves or goes: drop it."""
    assert [rel for rel in OVERSIZED[limit] if not (ROOT / rel).is_file()] == []
