"""The site builds strictly, every page is reachable, figures are reproducible, and the
docstring examples shown in the API reference run as doctests."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.blocks import DOCS, ROOT

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra (mkdocs)"
)


def _nav_pages(nav: object) -> list[str]:
    """Flatten mkdocs' nav (lists of str or {title: str | list}) into page paths."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in _nav_pages(v)]
    raise TypeError(f"unexpected nav entry {nav!r}")


@needs_mkdocs
def test_every_page_is_in_the_nav() -> None:
    """A page outside the nav is only reachable by accident; list it in mkdocs.yml."""
    from mkdocs.config import load_config

    config = load_config(str(ROOT / "mkdocs.yml"))
    in_nav = set(_nav_pages(config["nav"]))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - in_nav == set(), f"pages missing from the nav of mkdocs.yml: {pages - in_nav}"
    assert in_nav - pages == set(), f"nav entries without a page: {in_nav - pages}"


@pytest.mark.slow
@needs_mkdocs
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The command CI runs: any warning (broken link, anchor, API object) fails the build."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (tmp_path / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("MCRRegularizer", "MCROutput", "ImportanceTracker", "jensen_shannon", "mipd"):
        assert name in api, f"the API reference lost {name}"
    assert not re.search(r":(func|class|meth|attr|mod):", api), "a Sphinx role was left raw"
    changelog = (tmp_path / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog, "CHANGELOG.md was not included into the site"


def test_figures_are_reproducible(tmp_path: Path) -> None:
    """docs/scripts/make_figures.py redraws every committed figure."""
    spec = importlib.util.spec_from_file_location(
        "make_figures", DOCS / "scripts" / "make_figures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.main(["--out", str(tmp_path)])
    for path in written:
        assert path.stat().st_size > 10_000, path
        assert (DOCS / "img" / path.name).exists(), f"docs/img/{path.name} is not committed"


def test_images_referenced_by_pages_exist() -> None:
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page}: missing image {target}"


# The docstring examples the API reference renders run in tests/mcr_reg/test_docstrings.py, for
# every module of the package that has one (mcr_reg.functional is a package: its examples are
# in its modules, one per family of functions).


def test_everything_the_api_page_lists_is_exported() -> None:
    """Each ``::: module`` member list in docs/api.md names only what the module's ``__all__``
    exports (a documented function must be importable with ``from module import *``)."""
    text = (DOCS / "api.md").read_text()
    blocks = re.findall(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, flags=re.M)
    assert blocks
    checked = 0
    for target, options in blocks:
        members = re.findall(r"^        - (\w+)$", options, flags=re.M)
        module_name, _, attr = target.rpartition(".")
        if importlib.util.find_spec(module_name) and not _is_module(target):
            owner = importlib.import_module(module_name)
            assert attr in owner.__all__, f"{target} is documented but not in {module_name}.__all__"
            checked += 1
            continue
        module = importlib.import_module(target)
        for name in members:
            assert name in module.__all__, f"{target}.{name} is documented but not in __all__"
            checked += 1
    assert checked >= 10


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
