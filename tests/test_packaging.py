"""Release readiness: the artefacts build, pass ``twine check``, install and import.

``test_release_artefacts`` (marked ``slow``, about 20-60 s) does what a release does:

1. ``python -m build`` makes an sdist and, from the sdist, a wheel. The build runs in build's
   isolated environment (pip installs the ``[build-system]`` requirements from the configured
   index); only when that *environment* cannot be set up — no index reachable — does it fall back
   to ``--no-isolation`` with the setuptools of the test environment, and it says so.
2. ``twine check --strict`` validates both (metadata, README rendering).
3. The wheel is installed with ``--no-deps`` into a **fresh** virtual environment made without
   pip and without system site packages. Its runtime dependencies are not downloaded again
   (torch is hundreds of megabytes): a ``.pth`` file appends a directory with this
   environment's copies of torch, einops and typing-extensions, *after* the fresh environment's
   own site-packages. A ``.pth`` line only appends a path, it does not process further ``.pth``
   files there, so an editable install of the project in this environment stays invisible.
   The directory holds symlinks to the files of the declared dependencies and of what they
   require (transitively) — nothing else — so an undeclared import fails.
4. In that environment a subprocess imports ``mcr_reg`` from a neutral working directory,
   checks that the module and its metadata come from the fresh environment (not the source
   tree) and runs one MCR step forward and backward.

The fast tests check that the version is single-sourced and that CITATION.cff is complete.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli", reason="needs tomli on Python 3.10")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DECLARED = {"torch", "einops", "typing-extensions"}


def _version_file() -> str:
    text = (ROOT / "mcr_reg" / "_version.py").read_text(encoding="utf-8")
    m = re.fullmatch(r'__version__ = "([^"]+)"\s*', text)
    assert m, f"mcr_reg/_version.py should hold only the version assignment, got {text!r}"
    return m.group(1)


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload, no-any-return]


def test_version_is_single_sourced() -> None:
    """pyproject reads the version from mcr_reg/_version.py; nothing else states it."""
    assert "version" not in PYPROJECT["project"], "pyproject.toml must not repeat the version"
    assert "version" in PYPROJECT["project"]["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "mcr_reg._version.__version__"
    version = _version_file()
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", version), version
    import mcr_reg

    assert mcr_reg.__version__ == version
    for path in (ROOT / "mcr_reg").rglob("*.py"):
        if path.name != "_version.py":
            assert "__version__ =" not in path.read_text(encoding="utf-8"), path


def test_project_metadata_is_complete() -> None:
    project = PYPROJECT["project"]
    assert project["readme"] == "README.md" and (ROOT / "README.md").exists()
    assert (ROOT / "LICENSE").exists()
    for key in ("Homepage", "Documentation", "Source", "Changelog", "Paper"):
        assert key in project["urls"], f"[project.urls] lacks {key}"
    classifiers = project["classifiers"]
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Development Status") for c in classifiers)
    for minor in range(10, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    names = {re.split(r"[<>=!~; \[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert names == DECLARED


def test_citation_cff_cites_the_paper() -> None:
    yaml = pytest.importorskip("yaml", reason="needs PyYAML (installed with the docs extra)")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "authors", "preferred-citation"):
        assert key in cff, f"CITATION.cff lacks {key}"
    assert "version" not in cff, "the version is single-sourced in mcr_reg/_version.py"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Balancing Multimodal Training Through Game-Theoretic Regularization"
    assert [a["family-names"] for a in paper["authors"]][:1] == ["Kontras"]
    assert len(paper["authors"]) == 6 and paper["year"] == 2025
    assert "2411.07335" in paper["url"]


# --------------------------------------------------------------------------- the release


def _build(outdir: Path) -> str:
    """Build sdist + wheel into ``outdir``; return how (``isolated`` or ``no-isolation``)."""
    isolated = _run([sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)])
    if isolated.returncode == 0:
        return "isolated"
    log = isolated.stdout + isolated.stderr
    setup_failed = "Installing packages in isolated environment" in log and (
        "Failed to install" in log or "No matching distribution" in log or "pip" in log.lower()
    )
    if not setup_failed:
        pytest.fail(f"python -m build failed:\n{log}")
    shutil.rmtree(outdir, ignore_errors=True)
    plain = _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)]
    )
    assert plain.returncode == 0, f"build failed with and without isolation:\n{log}\n{plain.stderr}"
    return "no-isolation"


def _link_dependencies(dest: Path) -> list[str]:
    """Symlink the installed files of the allowed distributions (only those) into ``dest``."""
    dest.mkdir()
    linked: list[str] = []
    for name in sorted(_allowed_distributions()):
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional or platform-specific requirement not installed here
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops):
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (dest / top).exists():
                (dest / top).symlink_to(source)
        linked.append(name)
    return linked


def _allowed_distributions() -> set[str]:
    """The declared dependencies and, transitively, what they require."""
    seen: set[str] = set()
    todo = list(DECLARED)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[<>=!~; \[(]", req, maxsplit=1)[0])
    return seen


PROBE = textwrap.dedent(
    """
    import importlib.metadata as md, json, sys
    import torch
    import mcr_reg
    from mcr_reg import MCRRegularizer

    head = torch.nn.Linear(8, 3)
    fusion = lambda a, b: head(torch.cat([a, b], dim=-1))
    mcr = MCRRegularizer(fusion, num_classes=3, latent_dims=(4, 4))
    zs = [torch.randn(6, 4, requires_grad=True) for _ in range(2)]
    out = mcr(zs, torch.tensor([0, 1, 2, 0, 1, 2]), fusion(*zs))
    out.loss.backward()
    assert torch.isfinite(out.loss) and zs[0].grad is not None

    dist = md.distribution("mcr-reg")
    mapping = md.packages_distributions()
    top = {name.split(".")[0] for name in list(sys.modules)}
    used = sorted({d.lower().replace("_", "-") for t in top for d in mapping.get(t, [])})
    print(json.dumps({
        "module": mcr_reg.__file__,
        "version": mcr_reg.__version__,
        "metadata_version": md.version("mcr-reg"),
        "dist_path": str(dist.locate_file("")),
        "requires": dist.requires,
        "distributions": used,
    }))
    """
)


@pytest.mark.slow
def test_release_artefacts(tmp_path: Path) -> None:
    dist_dir = tmp_path / "dist"
    how = _build(dist_dir)
    version = _version_file()
    sdists = list(dist_dir.glob("*.tar.gz"))
    wheels = list(dist_dir.glob("*.whl"))
    assert [p.name for p in sdists] == [f"mcr_reg-{version}.tar.gz"], (how, sdists)
    assert [p.name for p in wheels] == [f"mcr_reg-{version}-py3-none-any.whl"], (how, wheels)

    check = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, sdists + wheels)])
    assert check.returncode == 0, check.stdout + check.stderr

    package = ROOT / "mcr_reg"
    sources = sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.suffix in {".py", ".typed"} and "__pycache__" not in p.parts
    )
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        metadata = whl.read(f"mcr_reg-{version}.dist-info/METADATA").decode()
    assert sorted(n.split("/", 1)[1] for n in names if n.startswith("mcr_reg/")) == sources
    assert not [n for n in names if n.startswith(("tests/", "examples/", "docs/", "benchmarks/"))]
    assert f"Version: {version}" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert "License-Expression: MIT" in metadata
    assert "Project-URL: Documentation," in metadata
    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for required in ("pyproject.toml", "README.md", "LICENSE", "mcr_reg/py.typed"):
        assert required in members, f"the sdist lacks {required}"

    # a fresh environment: no pip, no system site packages, nothing of ours
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    site_packages = Path(site.stdout.strip())
    install = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheels[0])]
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    linked = _link_dependencies(tmp_path / "deps")
    assert {"torch", "einops"} <= set(linked), linked
    (site_packages / "zz_test_dependencies.pth").write_text(f"{tmp_path / 'deps'}\n")

    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    probe = _run([str(python), "-c", PROBE], cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(report["module"]).is_relative_to(site_packages), report["module"]
    assert Path(report["dist_path"]).resolve() == site_packages.resolve(), report["dist_path"]
    assert report["version"] == report["metadata_version"] == version
    assert {re.split(r"[<>=!~; ]", r, maxsplit=1)[0] for r in report["requires"]} >= DECLARED
    assert "mcr-reg" in report["distributions"] and "torch" in report["distributions"]
