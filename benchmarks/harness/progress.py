"""Progress over many independent training runs (the harness's sweeps).

A benchmark runner hands a list of jobs to :func:`run_jobs`; each job belongs to a *group*
(a sweep point, a view set, ...). While the jobs run (in a ``ProcessPoolExecutor`` or in
this process), a tqdm bar on stderr counts finished runs and shows the ETA, and as soon as
the last run of a group finishes, one summary line for that group is printed above the bar.
Results come back in job order, whatever the completion order was.

    results = run_jobs(
        train_one, jobs, groups=[job_point(j) for j in jobs], workers=2,
        summarize=lambda group, runs: f"U1={group}: {len(runs)} runs", desc="sweep",
    )
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import IO, Any, Generic, TypeVar

from tqdm.auto import tqdm

J = TypeVar("J")
R = TypeVar("R")

#: ``summarize(group, results_of_the_group_in_job_order) -> one line`` (without the prefix).
Summarizer = Callable[[Hashable, list[Any]], str]


class GroupProgress(Generic[R]):
    """A tqdm bar over runs plus one summary line per finished group.

    Args:
        groups: the group of every run, in job order (its length is the bar's total).
        summarize: builds the summary line of a finished group from its results (job
            order); ``None`` prints ``"<group>: <n> runs done"``.
        desc: the bar's label.
        file: where the bar goes (default: ``sys.stderr``).
        summary_file: where the summary lines go (default: ``sys.stdout``).
        enabled: ``False`` draws no bar (summary lines are still printed).
        on_result: called with the run index and its result as soon as a run finishes
            (for a runner that saves its results file after every run).

    Raises:
        ValueError: when a run index is reported twice or is out of range.
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        *,
        summarize: Summarizer | None = None,
        desc: str = "runs",
        file: IO[str] | None = None,
        summary_file: IO[str] | None = None,
        enabled: bool = True,
        on_result: Callable[[int, R], None] | None = None,
    ) -> None:
        self.groups = list(groups)
        self.on_result = on_result
        self.summarize = summarize
        self.summary_file = summary_file
        self._left = Counter(self.groups)
        self._size = dict(self._left)
        self._results: dict[int, R] = {}
        self._started = time.time()
        self._group_started: dict[Hashable, float] = {}
        self.lines: list[str] = []
        self.bar = tqdm(
            total=len(self.groups),
            desc=desc,
            unit="run",
            file=file if file is not None else sys.stderr,
            disable=not enabled,
            dynamic_ncols=True,
            mininterval=1.0,
        )

    def start(self, index: int) -> None:
        """Note that run ``index`` started (the group's clock starts at its first run)."""
        self._group_started.setdefault(self.groups[index], time.time())

    def done(self, index: int, result: R) -> str | None:
        """Record run ``index``'s result; return (and print) its group's line if it is complete."""
        if not 0 <= index < len(self.groups):
            raise ValueError(f"expected a run index in [0, {len(self.groups)}), got {index}")
        if index in self._results:
            raise ValueError(f"run {index} was reported twice")
        self._results[index] = result
        if self.on_result is not None:
            self.on_result(index, result)
        group = self.groups[index]
        self._left[group] -= 1
        self.bar.update(1)
        if self._left[group]:
            return None
        runs = [self._results[i] for i, g in enumerate(self.groups) if g == group]
        text = self.summarize(group, runs) if self.summarize else f"{group}: {len(runs)} runs done"
        started = self._group_started.get(group, self._started)
        finished = sum(1 for n in self._left.values() if n == 0)
        line = (
            f"[{finished}/{len(self._size)} groups, {time.time() - self._started:.0f} s] "
            f"{text} ({self._size[group]} runs, {time.time() - started:.0f} s)"
        )
        self.lines.append(line)
        self.bar.write(line, file=self.summary_file if self.summary_file else sys.stdout)
        return line

    def results(self) -> list[R]:
        """All results in job order (every run must have finished)."""
        missing = [i for i in range(len(self.groups)) if i not in self._results]
        if missing:
            raise ValueError(f"expected every run to have finished, {len(missing)} did not")
        return [self._results[i] for i in range(len(self.groups))]

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> GroupProgress[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_jobs(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    *,
    groups: Sequence[Hashable] | None = None,
    workers: int = 1,
    summarize: Summarizer | None = None,
    desc: str = "runs",
    progress: bool = True,
    file: IO[str] | None = None,
    summary_file: IO[str] | None = None,
    on_result: Callable[[int, R], None] | None = None,
) -> list[R]:
    """Run ``fn(job)`` for every job, showing progress; results in job order.

    With ``workers > 1`` the jobs run in a ``ProcessPoolExecutor`` (``fn`` and the jobs must
    pickle); they are handed out as workers free up and reported in completion order. A job
    that raises cancels the jobs not yet started and the exception propagates.

    Args:
        fn: the run (a module-level function when ``workers > 1``).
        jobs: its arguments, one per run.
        groups: the group of each job (default: one group for all).
        workers: processes; 1 runs in this process.
        summarize, desc, file, summary_file, on_result: see :class:`GroupProgress`.
        progress: ``False`` draws no bar.

    Raises:
        ValueError: when ``groups`` and ``jobs`` differ in length or ``workers < 1``.
    """
    groups = list(groups) if groups is not None else ["all"] * len(jobs)
    if len(groups) != len(jobs):
        raise ValueError(
            f"expected one group per job, got {len(groups)} groups for {len(jobs)} jobs"
        )
    if workers < 1:
        raise ValueError(f"expected workers >= 1, got {workers}")
    with GroupProgress[R](
        groups,
        summarize=summarize,
        desc=desc,
        file=file,
        summary_file=summary_file,
        enabled=progress,
        on_result=on_result,
    ) as prog:
        if workers == 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                prog.start(i)
                prog.done(i, fn(job))
            return prog.results()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            _drain(pool, fn, jobs, prog, workers)
        return prog.results()


def _drain(
    pool: ProcessPoolExecutor,
    fn: Callable[[J], R],
    jobs: Sequence[J],
    prog: GroupProgress[R],
    workers: int,
) -> None:
    """Keep ``workers`` jobs in flight (so a group's clock starts when its first job does)."""
    pending = iter(enumerate(jobs))
    running: dict[Future[R], int] = {}

    def submit(items: Iterable[tuple[int, J]]) -> None:
        for i, job in items:
            prog.start(i)
            running[pool.submit(fn, job)] = i

    submit(_take(pending, workers))
    try:
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                prog.done(running.pop(fut), fut.result())
            submit(_take(pending, len(finished)))
    except BaseException:
        for fut in running:
            fut.cancel()
        raise


def _take(items: Iterable[tuple[int, J]], n: int) -> list[tuple[int, J]]:
    out: list[tuple[int, J]] = []
    if n <= 0:
        return out
    for item in items:
        out.append(item)
        if len(out) == n:
            break
    return out
