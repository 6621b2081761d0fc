"""Every error or warning message the documentation quotes is one the code still gives.

A page quotes output in three ways, and all three are checked:

* a ``text`` block right after a sentence that ends in a colon and names the output
  ("Without `output=` the call stops with:");
* a double-quoted string in prose after a word that names an error or warning
  (stops, raises, fails, warns, warning, error, message, aborted, refuses), within the same
  sentence ("a record made in eval mode raises ("the record is from an earlier step")");
* a code span of five or more words after such a word that is not code (no ``=``, not a
  comment, not a call).

A quote may elide with ``...``; the values a message carries at run time (numbers, shapes,
quoted names, lists) are placeholders. What is left, every fragment of at least
:data:`MIN_FRAGMENT` characters, must be covered by the string literals of ``mcr_reg/``,
``examples/`` and ``benchmarks/`` (an f-string's ``{...}`` fields and ``str.format`` fields are
placeholders there): read word by word, it is a chain of runs of at least :data:`MIN_RUN` words
that each stand in one literal, with at most one word (lone punctuation aside) between two runs (a value the check did not
recognise, such as a type name). Runs may come from different literals, because messages are
put together from parts (a hint appended to a description). Messages of other software are
listed in :data:`EXTERNAL` with where they come from.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from functools import cache
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, markdown_files

#: Where the messages are produced.
SOURCES = ("mcr_reg", "examples", "benchmarks")
#: Shorter runs of a quote between placeholders are not checked (too common to mean anything).
MIN_FRAGMENT = 12
#: The shortest run of words that must stand in one string literal.
MIN_RUN = 3
#: Quotes of other software's messages: the quote and the package whose source holds it
#: (``None``: no Python source to search, with the reason).
EXTERNAL: dict[str, tuple[str | None, str]] = {
    "Missing key(s)": ("torch", "torch.nn.Module.load_state_dict's error"),
    "terminate called without an active exception": (
        None,
        "the C++ runtime's message when a process aborts, printed by no Python code",
    ),
}

_TRIGGER = re.compile(
    r"\b(stop|stops|stopped|raise|raises|raised|fail|fails|failed|warn|warns|warned|warning|"
    r"error|errors|message|aborted|refuses)\b[^.;]{0,40}$",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*(```|~~~)\s*(?P<lang>\w*)")
# what a message carries at run time: numbers, shapes and lists, quoted names
_VALUE = re.compile(
    r"\((?:-?\d+, ?)*-?\d*\)"  # (5, 8, 8), ()
    r"|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?"  # 3, 0.128, 1e-3, 5.0%
    r"|'[^'\s]{0,40}'"  # 'audio'
    r"|\[[^\]]{0,80}\]"  # ['0', '1']
)
_ELISION = re.compile(r"\.\.\.|…")


def _prose_and_text_blocks(path: Path) -> tuple[str, list[str]]:
    """The page's prose on one line (code blocks blanked) and its quoted ``text`` blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    prose: list[str] = []
    quoted_blocks: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not _FENCE.match(lines[j]):
            j += 1
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        announced = previous.rstrip().endswith(":") and _TRIGGER.search(previous.rstrip()[:-1])
        if m["lang"] == "text" and announced:
            quoted_blocks.append(" ".join(lines[i + 1 : j]))
        prose.append("")
        i = j + 1
    return re.sub(r"\s+", " ", " ".join(prose)), quoted_blocks


def _looks_like_code(span: str) -> bool:
    return "=" in span or span.lstrip().startswith(("#", "(")) or len(span.split()) < 5


def quoted_messages(path: Path) -> list[str]:
    """Every quote of output on the page (see the module docstring for the three forms)."""
    prose, quotes = _prose_and_text_blocks(path)
    # double quotes inside code spans are code, not quotes: blank the spans first
    no_code = re.sub(r"`[^`]*`", lambda m: "C" * len(m.group()), prose)
    for m in re.finditer(r'"([^"]{8,}?)"', no_code):
        if _TRIGGER.search(no_code[max(0, m.start() - 80) : m.start()]):
            quotes.append(m.group(1))
    for m in re.finditer(r"`([^`]+)`", prose):
        if not _looks_like_code(m.group(1)) and _TRIGGER.search(
            prose[max(0, m.start() - 80) : m.start()]
        ):
            quotes.append(m.group(1))
    return quotes


def fragments(quote: str) -> list[str]:
    """The parts of ``quote`` that must stand in the code: elisions and values removed."""
    parts: list[str] = []
    for piece in _ELISION.split(re.sub(r"\s+", " ", quote)):
        parts.extend(_VALUE.split(piece))
    return [p.strip() for p in parts if len(p.strip()) >= MIN_FRAGMENT]


def uncovered(fragment: str, templates: str) -> list[str]:
    """The stretches of ``fragment`` that the code's literals do not cover (see the docstring)."""
    words = fragment.split()
    missing: list[str] = []
    gap: list[str] = []
    i = 0
    while i < len(words):
        end = i
        while end < len(words) and " ".join(words[i : end + 1]) in templates:
            end += 1
        if end - i >= min(MIN_RUN, len(words) - i):
            if len(gap) > 1:
                missing.append(" ".join(gap))
            gap, i = [], end
        else:
            if re.search(r"\w", words[i]):  # lone punctuation is no word
                gap.append(words[i])
            i += 1
    if len(gap) > 1 or (gap and len(gap) == len(words)):
        missing.append(" ".join(gap))
    return missing


def _template(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.sub(r"\{[^{}]*\}|%[sdrf]", "\x00", node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "\x00"
            for v in node.values
        )
    return None


@cache
def message_templates() -> str:
    """Every string literal of :data:`SOURCES`, placeholders as NUL, whitespace folded."""
    found: list[str] = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                text = _template(node)
                if text:
                    found.append(re.sub(r"\s+", " ", text))
    return "\x01".join(found)


@cache
def _package_source(package: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed"
    root = Path(spec.origin).parent
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*.py"))


QUOTES = [(page, quote) for page in markdown_files() for quote in quoted_messages(page)]


def test_the_collector_finds_the_quotes_we_know() -> None:
    """Guards the collector: a text block, a double-quoted message and a torch message."""
    found = {q for _, q in QUOTES}
    assert any(q.startswith("the fusion head returned a tuple of 3") for q in found)
    assert "the record is from an earlier step" in found
    assert "Missing key(s)" in found


def test_fragments_drop_values_and_elisions() -> None:
    quote = "latent '0' of shape (5, 8, 8) has its axis 0 of size 5 ... FusionCall(layout=...)"
    assert fragments(quote) == ["has its axis", "FusionCall(layout="]


def test_a_stale_message_is_caught() -> None:
    """The check can fail: a reworded message is not covered, the message as given is."""
    given = "the fusion head returned a tuple of 3 (Tensor (2112, 4), Tensor (2112, 4))"
    assert [uncovered(f, message_templates()) for f in fragments(given)] == [[]]
    stale = "the fusion head returned a tuple; pass output= to pick the logits"
    assert uncovered(stale, message_templates()) == ["tuple; pass output= to pick"]


@pytest.mark.parametrize(
    ("page", "quote"),
    QUOTES,
    ids=[f"{p.relative_to(ROOT)}:{q[:40]}" for p, q in QUOTES],
)
def test_quoted_message_is_given_by_the_code(page: Path, quote: str) -> None:
    if quote in EXTERNAL:
        package, origin = EXTERNAL[quote]
        if package is None:
            pytest.skip(f"{origin}: not a message of any Python source")
        assert quote in _package_source(package), f"{quote!r} is no longer {origin}"
        return
    parts = fragments(quote)
    assert parts, f"{page.name}: the quote {quote!r} has nothing left to check: quote more of it"
    templates = message_templates()
    missing = [gap for f in parts for gap in uncovered(f, templates)]
    assert not missing, (
        f"{page.relative_to(ROOT)} quotes {quote!r}, but the code gives no message with "
        f"{missing}: quote the message the code gives now"
    )
