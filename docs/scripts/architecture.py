"""Draw the house from the code: the import graph of ``mcr_reg/``, ``examples/`` and
``benchmarks/``, read with :mod:`ast`, grouped into layers, written into docs/architecture.md.

    python -m docs.scripts.architecture            # rewrites the page between its markers
    python -m docs.scripts.architecture --check    # exit 1 if the page is stale or an arrow
                                                   # points the wrong way; writes nothing

Every ``import`` and ``from ... import`` statement counts, wherever it stands (module level,
inside a function, under ``TYPE_CHECKING``): each is a dependency a reader has to know about.
Only imports of modules inside the three trees are drawn. A module belongs to a *unit* (a
subpackage such as ``mcr_reg.functional`` or ``examples.cremad``, or a module of its own such
as ``mcr_reg.regularizer``), and a unit to a *layer*:

1. package core: ``mcr_reg.functional`` (the maths) and the private modules ``mcr_reg._*``
   that import nothing above the core;
2. package public API: every other unit of ``mcr_reg`` (the regularizer, the terms, the
   checks, the diagnostics, and ``mcr_reg`` itself), and the private modules that import it
   (the regularizer's helpers; :func:`assign_layers`);
3. training kit: ``examples.common``, ``examples.av_common`` and ``examples`` itself;
4. pipelines: every other folder of ``examples``;
5. benchmarks: everything under ``benchmarks``.

An arrow points the wrong way when it goes up the layers (the package importing the examples,
the kit importing a pipeline or a benchmark) or sideways between two pipelines (a pipeline is a
folder a user copies with the kit alone); an arrow that closes an import cycle between modules
is reported too, whatever the layers.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
TREES = ("mcr_reg", "examples", "benchmarks")
BEGIN = "<!-- architecture:begin (written by python -m docs.scripts.architecture) -->"
END = "<!-- architecture:end -->"


@dataclass(frozen=True)
class Layer:
    """One floor of the house; ``rank`` 0 is the bottom."""

    rank: int
    key: str
    title: str


CORE = Layer(0, "core", "package core")
API = Layer(1, "api", "package public API")
KIT = Layer(2, "kit", "training kit")
PIPELINES = Layer(3, "pipelines", "pipelines")
BENCHMARKS = Layer(4, "benchmarks", "benchmarks")
LAYERS = (CORE, API, KIT, PIPELINES, BENCHMARKS)
KIT_UNITS = ("examples", "examples.common", "examples.av_common")


@dataclass(frozen=True)
class Arrow:
    """``source`` imports ``target`` (dotted module names)."""

    source: str
    target: str


@dataclass(frozen=True)
class Graph:
    """The modules found (dotted name -> path within the root), their import arrows and the
    layer of every unit (:func:`assign_layers`)."""

    modules: dict[str, str]
    arrows: tuple[Arrow, ...]
    layers: dict[str, Layer]

    def layer(self, module: str) -> Layer:
        """The layer of ``module``'s unit."""
        return self.layers[unit_of(module)]


def module_name(relative: Path) -> str:
    """``mcr_reg/functional/game.py`` -> ``mcr_reg.functional.game``; a package's
    ``__init__.py`` is the package itself."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, trees: Sequence[str] = TREES) -> dict[str, Path]:
    """Every ``.py`` file under the trees, by dotted module name."""
    found = {}
    for tree in trees:
        for path in sorted((root / tree).rglob("*.py")):
            found[module_name(path.relative_to(root))] = path
    return found


def imported_names(name: str, path: Path) -> set[str]:
    """The dotted names that the module ``name`` (its file at ``path``) imports: for
    ``from X import Y`` the name ``X.Y``, which :func:`_resolve` takes to the module ``X.Y``
    where ``Y`` is a module and to ``X`` otherwise; relative imports resolved against the
    module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _resolve(imported: str, modules: Iterable[str]) -> str | None:
    """The known module an imported dotted name lands in (its longest known prefix)."""
    known = set(modules)
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def build_graph(root: Path = ROOT, trees: Sequence[str] = TREES) -> Graph:
    """Read every module under ``trees`` and the imports between them."""
    paths = find_modules(root, trees)
    arrows = set()
    for name, path in paths.items():
        for imported in imported_names(name, path):
            target = _resolve(imported, paths)
            if target is not None and target != name:
                arrows.add(Arrow(name, target))
    modules = {n: p.relative_to(root).as_posix() for n, p in paths.items()}
    ordered = tuple(sorted(arrows, key=lambda a: (a.source, a.target)))
    return Graph(modules, ordered, assign_layers(modules, ordered))


def unit_of(module: str) -> str:
    """The unit a module is drawn in: its first two name parts (``mcr_reg.functional``,
    ``examples.common``, ``benchmarks.harness``, ``mcr_reg.regularizer``)."""
    return ".".join(module.split(".")[:2])


def named_layer(unit: str) -> Layer | None:
    """The layer a unit's name gives it; None for a private module of the package
    (``mcr_reg._*``), whose layer its imports decide (:func:`assign_layers`)."""
    top, _, second = unit.partition(".")
    if top == "mcr_reg":
        if second.startswith("_") and not second.startswith("__"):
            return None
        return CORE if second == "functional" else API
    if top == "examples":
        return KIT if unit in KIT_UNITS else PIPELINES
    if top == "benchmarks":
        return BENCHMARKS
    raise ValueError(f"expected a module of {', '.join(TREES)}, got {unit}")


def assign_layers(modules: Iterable[str], arrows: Iterable[Arrow]) -> dict[str, Layer]:
    """The layer of every unit: the one its name gives, and for a private module of the package
    the core, unless it imports (directly or through other private modules) a unit on a higher
    floor: then that floor. A helper of the regularizer stands with the regularizer; a helper of
    the maths stays in the core, and the maths reaching the public API through it is caught."""
    units = {unit_of(m) for m in modules}
    named = {u: named_layer(u) for u in units}
    layers = {u: layer or CORE for u, layer in named.items()}
    targets: dict[str, set[str]] = {}
    for arrow in arrows:
        targets.setdefault(unit_of(arrow.source), set()).add(unit_of(arrow.target))
    changed = True
    while changed:
        changed = False
        for unit in (u for u in units if named[u] is None):
            above = [layers[t] for t in targets.get(unit, ())]
            highest = max(above, key=lambda layer: layer.rank, default=CORE)
            if highest.rank > layers[unit].rank:
                layers[unit], changed = highest, True
    return dict(sorted(layers.items()))


def wrong_way(graph: Graph, arrow: Arrow) -> str | None:
    """Why ``arrow`` points the wrong way, or None when it is allowed."""
    source, target = graph.layer(arrow.source), graph.layer(arrow.target)
    if target.rank > source.rank:
        return f"{source.title} imports {target.title}"
    sideways = unit_of(arrow.source) != unit_of(arrow.target)
    if source is PIPELINES and target is PIPELINES and sideways:
        return "a pipeline imports another pipeline"
    return None


def in_cycles(graph: Graph) -> set[Arrow]:
    """The arrows that close an import cycle: ``a -> b`` where ``a`` is reachable from ``b``."""
    after: dict[str, set[str]] = {}
    for arrow in graph.arrows:
        after.setdefault(arrow.source, set()).add(arrow.target)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = {start}, [start]
        while todo:
            for nxt in after.get(todo.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    return {a for a in graph.arrows if reaches(a.target, a.source)}


def wrong_arrows(graph: Graph) -> list[str]:
    """``source -> target (reason)`` for every arrow that points the wrong way or closes an
    import cycle."""
    cycles = in_cycles(graph)
    found = []
    for arrow in graph.arrows:
        reason = wrong_way(graph, arrow) or ("an import cycle" if arrow in cycles else None)
        if reason is not None:
            found.append(f"{arrow.source} -> {arrow.target} ({reason})")
    return found


def unit_arrows(graph: Graph) -> dict[tuple[str, str], bool]:
    """Arrows between units (inside a unit left out): ``(source, target) -> wrong?`` (wrong
    when any of its module arrows points the wrong way or closes a cycle)."""
    cycles = in_cycles(graph)
    found: dict[tuple[str, str], bool] = {}
    for arrow in graph.arrows:
        key = (unit_of(arrow.source), unit_of(arrow.target))
        if key[0] != key[1]:
            wrong = wrong_way(graph, arrow) is not None or arrow in cycles
            found[key] = found.get(key, False) or wrong
    return dict(sorted(found.items()))


def _node(unit: str) -> str:
    return "n_" + re.sub(r"\W", "_", unit)


def mermaid(graph: Graph) -> list[str]:
    """A Mermaid flowchart: one subgraph per layer (top floor first), one node per unit, one
    arrow per importing pair of units; a wrong-way arrow is dotted and labelled."""
    units = sorted({unit_of(m) for m in graph.modules})
    lines = ["```mermaid", "flowchart TB"]
    for layer in reversed(LAYERS):
        members = [u for u in units if graph.layer(u) is layer]
        if members:
            lines.append(f'  subgraph {layer.key}["{layer.title}"]')
            lines += [f'    {_node(u)}["{u}"]' for u in members]
            lines.append("  end")
    for (source, target), wrong in unit_arrows(graph).items():
        arrow = "-. wrong way .->" if wrong else "-->"
        lines.append(f"  {_node(source)} {arrow} {_node(target)}")
    return [*lines, "```"]


def floors(graph: Graph) -> list[str]:
    """A Mermaid flowchart of the layers alone: one arrow per pair of layers where some module
    of the first imports some module of the second (same-floor arrows left out)."""
    pairs = {(graph.layer(a.source), graph.layer(a.target)) for a in graph.arrows}
    lines = ["```mermaid", "flowchart TB"]
    lines += [f'  {layer.key}["{layer.title}"]' for layer in reversed(LAYERS)]
    for source, target in sorted(pairs, key=lambda p: (-p[0].rank, -p[1].rank)):
        if source is not target:
            arrow = "-. wrong way .->" if target.rank > source.rank else "-->"
            lines.append(f"  {source.key} {arrow} {target.key}")
    return [*lines, "```"]


def unit_files(graph: Graph, unit: str) -> list[str]:
    """The files of a unit: a lone module's path, or a package's files within its folder."""
    paths = sorted(p for m, p in graph.modules.items() if unit_of(m) == unit)
    if len(paths) == 1 and not paths[0].endswith("__init__.py"):
        return paths
    folder = unit.replace(".", "/") + "/"
    return [p.removeprefix(folder) for p in paths]


def table(graph: Graph) -> list[str]:
    """A markdown table: per unit (layers top floor first) its files and the units it
    imports."""
    imports: dict[str, set[str]] = {}
    for source, target in unit_arrows(graph):
        imports.setdefault(source, set()).add(target)
    lines = ["| layer | unit | files | imports |", "|---|---|---|---|"]
    units = sorted({unit_of(m) for m in graph.modules}, key=lambda u: (-graph.layer(u).rank, u))
    for unit in units:
        names = ", ".join(f"`{f}`" for f in unit_files(graph, unit))
        used = ", ".join(sorted(imports.get(unit, ()))) or "—"
        lines.append(f"| {graph.layer(unit).title} | `{unit}` | {names} | {used} |")
    return lines


def render(graph: Graph) -> str:
    """The generated part of the page (markers included)."""
    wrong = wrong_arrows(graph)
    counts = (
        f"{len(graph.modules)} modules in {len({unit_of(m) for m in graph.modules})} units, "
        f"{len(graph.arrows)} import arrows between modules."
    )
    verdict = (
        ["No arrow points the wrong way."]
        if not wrong
        else [
            "Arrows that point the wrong way:",
            "",
            *[f"- `{w}`" for w in wrong],
        ]
    )
    body = [
        BEGIN,
        "",
        counts,
        "",
        "### The floors",
        "",
        *floors(graph),
        "",
        "### The units",
        "",
        *mermaid(graph),
        "",
        *table(graph),
        "",
        "### Wrong-way arrows",
        "",
        *verdict,
        "",
        END,
    ]
    return "\n".join(body)


def updated_page(text: str, block: str) -> str:
    """``text`` with everything between its markers replaced by ``block``.

    Raises:
        ValueError: unless the page holds each marker once, begin before end.
    """
    start, stop = text.find(BEGIN), text.find(END)
    if text.count(BEGIN) != 1 or text.count(END) != 1 or stop < start:
        raise ValueError(
            f"expected {PAGE.name} to hold the markers {BEGIN!r} and {END!r} once each, in "
            f"that order, got {text.count(BEGIN)} and {text.count(END)}"
        )
    return text[:start] + block + text[stop + len(END) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if stale or wrong way"
    )
    args = parser.parse_args(argv)
    graph = build_graph()
    text = PAGE.read_text(encoding="utf-8")
    page = updated_page(text, render(graph))
    wrong = wrong_arrows(graph)
    for line in wrong:
        print(f"wrong way: {line}")
    if args.check:
        if page != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run python -m docs.scripts.architecture")
        return int(page != text or bool(wrong))
    if page != text:
        PAGE.write_text(page, encoding="utf-8")
        print(f"wrote {PAGE.relative_to(ROOT)}")
    return int(bool(wrong))


if __name__ == "__main__":
    sys.exit(main())
