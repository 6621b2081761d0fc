"""Every script runs the way it is documented: ``python -m package.module`` from the repository
root, with nothing on PYTHONPATH and no script putting anything on ``sys.path``.

Found by scanning for ``if __name__ == "__main__"``, so a new entry point is covered
automatically. Each is started with ``--help`` in a fresh interpreter whose environment has no
PYTHONPATH, from the repository root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("examples", "benchmarks", "docs/scripts")


def _entry_points() -> list[str]:
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if 'if __name__ == "__main__"' in path.read_text(encoding="utf-8"):
                found.append(path.relative_to(ROOT).as_posix())
    return found


ENTRY_POINTS = _entry_points()


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_scan_finds_the_known_entry_points() -> None:
    assert {"examples/cremad/train.py", "benchmarks/overhead.py"} <= set(ENTRY_POINTS)
    assert len(ENTRY_POINTS) >= 15


def test_no_script_changes_the_import_path() -> None:
    """Entry points rely on ``python -m`` from the repository root (or a user's project root
    holding a copied pipeline), never on ``sys.path`` edits of their own."""
    editing = [
        path.relative_to(ROOT).as_posix()
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "sys.path" in path.read_text(encoding="utf-8")
    ]
    assert editing == []


@pytest.mark.slow
@pytest.mark.parametrize("rel", ENTRY_POINTS)
def test_runs_as_a_module(rel: str) -> None:
    module = rel.removesuffix(".py").replace("/", ".")
    as_module = _run([sys.executable, "-m", module, "--help"])
    assert as_module.returncode == 0, as_module.stderr[-2000:]
    assert "usage" in as_module.stdout.lower()


@pytest.mark.slow
def test_torchrun_takes_the_module() -> None:
    run = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "1",
            "-m",
            "examples.sthsth.train",
            "--help",
        ]
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage" in run.stdout.lower()
