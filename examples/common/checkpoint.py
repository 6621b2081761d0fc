"""Atomic checkpoint files: write to a temporary file in the same folder, then ``os.replace``.

A crash while saving leaves the previous checkpoint intact, because ``os.replace`` swaps the
file in one step on POSIX and Windows. A write that fails (a full disk makes ``torch.save``
raise ``RuntimeError: ... unexpected pos``) removes its temporary file and, on Python 3.11+,
adds a note to the error naming the file, the bytes written and the free space on its disk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _default_mode())  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written = 0
        if os.path.exists(tmp):
            written = os.path.getsize(tmp)
            os.unlink(tmp)
        add_note = getattr(err, "add_note", None)  # Python >= 3.11
        if isinstance(err, Exception) and add_note is not None:
            add_note(_failure_note(path, written))
        raise


def _failure_note(path: Path, written: int) -> str:
    free = shutil.disk_usage(path.parent).free
    kept = f"the previous {path.name} is untouched" if path.exists() else "nothing was written"
    return (
        f"while writing {path}: {written / 2**20:.1f} MiB written before the error, "
        f"{free / 2**20:.0f} MiB free on that disk; {kept}"
    )


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """``torch.save(obj, path)`` that never leaves a half-written file at ``path``."""
    _atomic_write(Path(path), lambda handle: torch.save(obj, handle))


def atomic_write_json(obj: Any, path: Path | str) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    data = json.dumps(obj, indent=2, sort_keys=False).encode()
    _atomic_write(Path(path), lambda handle: handle.write(data))


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint written by :func:`atomic_torch_save`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; run without --resume first")
    return torch.load(path, map_location=map_location, weights_only=False)
