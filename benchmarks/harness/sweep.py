"""The run loop of every benchmark: jobs in, one result per job out, each trained at most once.

A benchmark names each training run by a *key* (its place in the protocol: method, trial,
seed, ...) and describes it by a *job*, a picklable value holding everything the run needs.
:func:`run_sweep` returns ``{key: result}``: the result a store kept from an earlier call when
the job's spec is there, else ``train(job)``, stored as soon as it is done. Jobs run in this
process or in ``workers`` processes, under a progress bar with one line per finished group
(:mod:`benchmarks.harness.progress`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from benchmarks.harness.progress import run_jobs
from benchmarks.harness.result_files import from_json, to_json
from benchmarks.harness.store import Store

J = TypeVar("J")
K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


@dataclass(frozen=True)
class StoredTraining(Generic[J, R]):
    """``train`` behind ``store``: the stored result of ``spec(job)``, else ``train(job)``.

    With a ``result_type`` (a dataclass) the result is stored as JSON (:func:`to_json`) and
    read back as that type, also when it was just trained, so a fresh and a resumed run give
    equal values. It pickles (for worker processes) when ``train`` and ``spec`` are
    module-level functions.
    """

    train: Callable[[J], R]
    spec: Callable[[J], Mapping[str, Any]]
    store: Store
    result_type: type | None = None

    def __call__(self, job: J) -> R:
        if self.result_type is None:
            result: R = self.store.result(self.spec(job), lambda: self.train(job))
            return result
        stored = self.store.result(self.spec(job), lambda: to_json(self.train(job)))
        typed: R = from_json(self.result_type, stored, "a stored run")
        return typed


def run_sweep(
    train: Callable[[J], R],
    jobs: Mapping[K, J],
    *,
    store: Store | None = None,
    spec: Callable[[J], Mapping[str, Any]] | None = None,
    result_type: type | None = None,
    workers: int = 1,
    progress: bool = True,
    desc: str = "runs",
    group: Callable[[K], Hashable] | None = None,
    line: Callable[[Hashable, list[K], list[R]], str] | None = None,
    on_result: Callable[[K, R], None] | None = None,
    log: Callable[[str], Any] | None = print,
) -> dict[K, R]:
    """Every job's result, keyed as ``jobs``.

    Args:
        train: one training run (a module-level function when ``workers > 1``).
        jobs: ``{key: job}`` in the order the runs start.
        store: where finished runs are kept (``None``: nowhere, every job trains).
        spec: everything that decides a job's result (the key of its stored file); needed
            with a ``store``.
        result_type: the dataclass ``train`` returns, stored as JSON (see
            :class:`StoredTraining`).
        workers: processes; 1 trains in this process.
        progress: draw a progress bar on stderr.
        desc: the bar's label.
        group: the group of a key (default: one group); when a group's last run is done,
            ``line(group, its keys, its results)`` is printed.
        on_result: called with a run's key and result as soon as it is done.
        log: gets the opening line (how many runs, how many were done before).

    Raises:
        ValueError: a store without ``spec``, or ``workers < 1``.
    """
    if store is not None and spec is None:
        raise ValueError("expected spec= with store= (the key a finished run is kept under)")
    keys, todo = list(jobs), list(jobs.values())
    run: Callable[[J], R] = train
    note = ""
    if store is not None and spec is not None:
        run = StoredTraining(train, spec, store, result_type)
        note = store.note(spec(j) for j in todo)
    if log is not None:
        log(f"{len(todo)} training runs, {workers} worker(s){note}")
    groups = [group(k) for k in keys] if group is not None else ["all"] * len(keys)
    keys_of: dict[Hashable, list[K]] = {}
    for key, name in zip(keys, groups, strict=True):
        keys_of.setdefault(name, []).append(key)
    results = run_jobs(
        run,
        todo,
        groups=groups,
        workers=workers,
        summarize=None if line is None else (lambda g, rs: line(g, keys_of[g], rs)),
        desc=desc,
        progress=progress,
        on_result=None if on_result is None else (lambda i, r: on_result(keys[i], r)),
    )
    return dict(zip(keys, results, strict=True))
