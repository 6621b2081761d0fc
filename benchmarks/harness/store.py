"""Finished benchmark runs kept on disk, so that a stopped benchmark resumes where it stopped.

A benchmark is many short, deterministic training runs. :class:`RunStore` keeps each run's
result (JSON-able) in its own JSON file; :class:`TensorStore` keeps a result holding tensors in
its own ``torch.save`` file. Either names the file by a digest of the run's *spec*: a JSON-able
mapping of everything that decides the result (data, model budget, method, trial, seed). Running the
same benchmark again loads the finished runs and trains only the missing ones. The code is
not part of the spec: after changing the code, use a fresh folder or ``reuse=False``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from examples.common.checkpoint import atomic_write_json


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A digest of ``spec`` (key order does not matter)."""
    text = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Store(Protocol):
    """Where a sweep keeps finished runs (:class:`RunStore`, :class:`TensorStore`)."""

    def result(self, spec: Mapping[str, Any], train: Callable[[], Any]) -> Any: ...

    def note(self, specs: Iterable[Mapping[str, Any]]) -> str: ...


@dataclass(frozen=True)
class RunStore:
    """One JSON file per finished run in ``folder``; with ``reuse`` false nothing is loaded
    (every run trains again and overwrites its file)."""

    folder: str
    reuse: bool = True

    def path(self, spec: Mapping[str, Any]) -> Path:
        return Path(self.folder) / f"{spec_digest(spec)}.json"

    def load(self, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored result of ``spec``, or ``None`` (not run, unreadable, or not reusing)."""
        path = self.path(spec)
        if not self.reuse or not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # unreadable: train again (writes are atomic, so this is rare)
        if not isinstance(stored, dict) or stored.get("spec") != json.loads(json.dumps(spec)):
            return None
        return dict(stored["result"])

    def save(self, spec: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Store ``result`` of ``spec`` (atomically; the spec is kept beside it)."""
        atomic_write_json({"spec": spec, "result": result}, self.path(spec))

    def result(
        self, spec: Mapping[str, Any], train: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The stored result of ``spec``; else ``train()``, stored before it is returned."""
        done = self.load(spec)
        if done is not None:
            return done
        result = train()
        self.save(spec, result)
        return result

    def count_done(self, specs: Iterable[Mapping[str, Any]]) -> int:
        """How many of ``specs`` have a stored file (0 when not reusing); for the log line,
        so the files are not read here (:meth:`load` checks each one when it is used)."""
        return sum(self.path(s).is_file() for s in specs) if self.reuse else 0

    def note(self, specs: Iterable[Mapping[str, Any]]) -> str:
        """``", 12 of them finished before (kept in FOLDER)"``, or ``""`` when none are."""
        done = self.count_done(specs)
        return f", {done} of them finished before (kept in {self.folder})" if done else ""


@dataclass(frozen=True)
class TensorStore:
    """One ``torch.save`` file per finished run in ``folder``, for results that hold tensors
    (a trained model's outputs): ``FOLDER/<label(spec)>-<digest>.pt``. A file that exists is
    loaded as it is (its name carries the digest of its spec); ``label`` must be a
    module-level function when the sweep runs in worker processes."""

    folder: str
    label: Callable[[Mapping[str, Any]], str]

    def path(self, spec: Mapping[str, Any]) -> Path:
        return Path(self.folder) / f"{self.label(spec)}-{spec_digest(spec)}.pt"

    def result(self, spec: Mapping[str, Any], train: Callable[[], Any]) -> Any:
        """The stored result of ``spec``; else ``train()``, saved atomically before it is
        returned."""
        path = self.path(spec)
        if path.is_file():
            return torch.load(path, weights_only=False)
        result = train()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(result, tmp)
        os.replace(tmp, path)
        return result

    def note(self, specs: Iterable[Mapping[str, Any]]) -> str:
        """Like :meth:`RunStore.note`."""
        done = sum(self.path(s).is_file() for s in specs)
        return f", {done} of them finished before (kept in {self.folder})" if done else ""


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    """``--resume`` (the default) / ``--no-resume`` of a benchmark runner."""
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse the runs that finished before in OUT/runs (default); --no-resume trains "
        "every run again",
    )
