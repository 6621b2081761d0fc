"""Find the fenced code blocks of Markdown files, with the directive written before each.

A directive is an HTML comment on the last non-blank line before the opening fence:

* ``<!-- skip: REASON -->``: the block cannot run in a test; it is still compiled.
* ``<!-- requires: MODULE -->``: the block runs only where ``MODULE`` can be imported.
* ``<!-- run: torchrun ARGS -->``: the block is a script, launched with ``torchrun ARGS``.

Only ``python``/``py`` blocks (run with ``exec``) and ``pycon`` blocks (run as doctests) are
executable; every other language (``bash``, ``text``, ``bibtex``, ...) is ignored.

Every block runs alone, as printed: a reader who copies one block gets a working program.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

PYTHON_LANGS = {"python", "py", "python3"}
DOCTEST_LANGS = {"pycon"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*(?P<kind>skip|requires|run)\s*:\s*(?P<arg>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block.

    Attributes:
        path: the Markdown file.
        line: 1-based line number of the first code line (the line after the opening fence).
        lang: the first word of the info string, lower-case (``""`` when absent).
        code: the block's text with the fence's indentation removed.
        directive: ``(kind, argument)`` from a directive comment, or ``None``.
    """

    path: Path
    line: int
    lang: str
    code: str
    directive: tuple[str, str] | None

    @property
    def where(self) -> str:
        try:
            rel = self.path.relative_to(ROOT)
        except ValueError:
            rel = self.path
        return f"{rel}:{self.line}"

    @property
    def kind(self) -> str:
        return self.directive[0] if self.directive else "run-inline"


def _lang(info: str) -> str:
    word = info.strip().split(" ")[0] if info.strip() else ""
    return word.strip("{}.").lower()


def parse_blocks(path: Path) -> list[Block]:
    """All fenced code blocks of ``path``, in order.

    Raises:
        ValueError: a fence that is never closed, or a directive with an empty argument.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"]
        directive = _directive_before(lines, i, path)
        body: list[str] = []
        j = i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while j < len(lines) and not closing.match(lines[j]):
            text = lines[j]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{i + 1}: code fence {fence!r} is never closed")
        blocks.append(Block(path, i + 2, _lang(info), "\n".join(body) + "\n", directive))
        i = j + 1
    return blocks


def _directive_before(lines: list[str], fence_index: int, path: Path) -> tuple[str, str] | None:
    k = fence_index - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0:
        return None
    m = _DIRECTIVE.match(lines[k])
    if not m:
        return None
    if not m["arg"]:
        raise ValueError(f"{path}:{k + 1}: directive {m['kind']!r} needs an argument (a reason)")
    return m["kind"], m["arg"]


def markdown_files() -> list[Path]:
    """Every page of the site and the README."""
    files = sorted(DOCS.rglob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        files.append(readme)
    return files


def executable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.lang in PYTHON_LANGS | DOCTEST_LANGS]
