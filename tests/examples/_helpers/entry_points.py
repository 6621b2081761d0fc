"""Running an example's entry point the way a user does: ``python -m examples.x.run ...`` from
the repository root, with nothing on ``PYTHONPATH``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def entry_point(script: str) -> list[str]:
    """``["-m", module]`` for a script path such as ``examples/multiview/train.py``."""
    return ["-m", script.removesuffix(".py").replace("/", ".")]


def run_entry_point(target: Sequence[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *target *args`` in the repository root and check that it succeeded."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, *target, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc
