"""The pipelines stand on one floor, and one of them runs when copied into another project.

* **layering:** a pipeline imports only itself, ``examples.common`` and ``examples.av_common``;
  ``av_common`` imports only ``common``, ``common`` nothing else of ``examples``; nothing under
  ``examples/`` imports ``benchmarks``.
* **the copy recipe** of docs/examples/training-loop.md: ``examples/__init__.py``,
  ``examples/common/`` and ``examples/multiview/`` copied into an empty folder build the
  pipeline's fixture and train MCR there, with the repository off the import path.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: What each shared folder may import: ``common`` is the floor, ``av_common`` stands on it.
SHARED: dict[str, set[str]] = {"common": {"common"}, "av_common": {"av_common", "common"}}


def imported_modules(path: Path) -> list[str]:
    """The absolute module names that ``import`` and ``from ... import`` lines of a file name."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_imported_modules_reads_both_import_forms(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import benchmarks.common\nfrom examples.ave.data import AUDIO\nfrom . import x\n"
    )
    assert imported_modules(source) == ["benchmarks.common", "examples.ave.data"]


@pytest.mark.parametrize(
    "folder", sorted(p.name for p in EXAMPLES.iterdir() if (p / "__init__.py").is_file())
)
def test_examples_import_no_other_pipeline_and_no_benchmark(folder: str) -> None:
    allowed = SHARED.get(folder, {folder, *SHARED})
    wrong = []
    for path in sorted((EXAMPLES / folder).rglob("*.py")):
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "benchmarks" or (
                parts[0] == "examples" and len(parts) > 1 and parts[1] not in allowed
            ):
                wrong.append(f"{path.relative_to(ROOT)}: {name}")
    assert not wrong, "imports across floors:\n" + "\n".join(wrong)


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_copied_multiview_pipeline_trains_in_an_empty_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    (project / "examples").mkdir(parents=True)
    shutil.copy(EXAMPLES / "__init__.py", project / "examples" / "__init__.py")
    for folder in ("common", "multiview"):
        shutil.copytree(EXAMPLES / folder, project / "examples" / folder, ignore=ignore)

    where = _python(["-c", "import examples.multiview.train as t; print(t.__file__)"], project)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(project)  # the copy, not the repository

    fixture = _python(
        ["-m", "examples.multiview.make_fixture", "data", "--layout", "csv", "--per-class", "12"],
        project,
    )
    assert fixture.returncode == 0, fixture.stderr
    argv = [
        "-m", "examples.multiview.train", "--data-root", "data", "--views", "fou,kar",
        "--method", "mcr", "--out", "runs/mv", "--max-epochs", "1", "--train-per-class", "6",
        "--val-per-class", "3", "--test-per-class", "3", "--smoke", "--no-progress",
    ]  # fmt: skip
    run = _python(argv, project)
    assert run.returncode == 0, run.stderr
    metrics = json.loads((project / "runs" / "mv" / "metrics.json").read_text())
    assert metrics["method"] == "mcr" and metrics["modalities"] == ["fou", "kar"]
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
