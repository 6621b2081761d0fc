"""Where a results file came from: the record every writer of a results file stores.

:func:`provenance` returns the command line, the commit and whether the working tree differed
from it, the Python, torch, numpy and other key package versions, torch's thread counts, the
CPU and GPU model, and the start and end time of the run. Runners call it when they write
their results, passing the time they started; report commands that rewrite a stored result
keep the run's record and add their own as ``report_provenance``.

A results file kept from a run made before this record existed gets :func:`kept_provenance`:
that it is kept from an earlier run, and only what is known of it (never a commit or a
version it was not produced by).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The repository root (where ``git`` is asked for the commit).
REPOSITORY = Path(__file__).resolve().parents[2]

#: Distributions whose versions are recorded (those that are installed).
PACKAGES: tuple[str, ...] = (
    "mcr-reg",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "einops",
    "av",
    "soundfile",
    "h5py",
    "matplotlib",
)


def utc_iso(seconds: float) -> str:
    """``seconds`` since the epoch as an ISO 8601 UTC time, to the second."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).isoformat(timespec="seconds")


def command_line() -> str:
    """This process's command as it was typed (``sys.orig_argv``: ``python -m module ARGS``)."""
    return shlex.join(getattr(sys, "orig_argv", sys.argv))


def git(root: Path, *args: str) -> str | None:
    """The output of ``git ARGS`` in ``root``, or ``None`` when git fails (no checkout)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def git_state(root: Path = REPOSITORY) -> dict[str, Any]:
    """``{"commit", "dirty", "changed"}``: the checked-out commit, whether tracked files
    differ from it, and which (``commit`` ``None`` outside a git checkout)."""
    head = git(root, "rev-parse", "HEAD")
    if head is None:
        return {"commit": None, "dirty": None, "changed": []}
    status = git(root, "status", "--porcelain", "--untracked-files=no") or ""
    changed = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"commit": head.strip(), "dirty": bool(changed), "changed": changed}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """The installed version of each of ``names`` (those not installed are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model() -> str | None:
    """The first CUDA device's name, or ``None`` without one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def provenance(
    started: float, *, arguments: Sequence[str] | None = None, ended: float | None = None
) -> dict[str, Any]:
    """The record of a run that started at ``started`` (``time.time()``) and ends now (or at
    ``ended``); ``arguments``: the argument list a runner's ``main`` was called with from
    Python (``None`` when it parsed the command line).

    Returns:
        ``command`` (the process's command line; ``arguments`` too when given), ``commit``, ``dirty`` and ``changed`` (tracked files that differ from
        the commit), ``python``, ``packages`` (versions), ``torch_threads`` and
        ``torch_interop_threads``, ``cpu``, ``cpu_count``, ``gpu`` (``None`` without one),
        ``platform``, ``started`` and ``ended`` (ISO 8601, UTC).

    Example:
        >>> import time
        >>> sorted(provenance(time.time()))[:3]
        ['changed', 'command', 'commit']
    """
    import numpy
    import torch

    end = ended if ended is not None else dt.datetime.now(dt.timezone.utc).timestamp()
    called = {} if arguments is None else {"arguments": list(arguments)}
    return {
        "command": command_line(),
        **called,
        **git_state(),
        "python": platform.python_version(),
        "packages": {**package_versions(), "torch": torch.__version__, "numpy": numpy.__version__},
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_model(),
        "platform": platform.platform(),
        "started": utc_iso(started),
        "ended": utc_iso(end),
    }


def kept_provenance(note: str, known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of a results file kept from a run made before :func:`provenance` existed:
    ``kept_from_an_earlier_run`` (true), ``note`` (what the file is and why it is kept) and
    ``known``: only facts of that run (for example the command or the load average it
    recorded itself), never a commit or a version it may not have been produced by."""
    return {"kept_from_an_earlier_run": True, "note": note, "known": dict(known or {})}
