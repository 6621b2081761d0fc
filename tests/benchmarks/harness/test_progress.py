"""benchmarks/harness/progress.py: results in job order, one summary line per finished group."""

import io
import time

import pytest

from benchmarks.harness.progress import GroupProgress, run_jobs


def _square_after(job: tuple[int, float]) -> int:
    """A run: sleep ``delay`` seconds, return ``value ** 2`` (module level so it pickles)."""
    value, delay = job
    time.sleep(delay)
    return value * value


def _fail_on_three(job: tuple[int, float]) -> int:
    if job[0] == 3:
        raise RuntimeError("run 3 failed")
    return _square_after(job)


def _summarize(group, runs):
    return f"group {group} sum={sum(runs)}"


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_job_order_and_one_line_per_group(workers):
    # the first job is the slowest, so with 2 workers the completion order differs from job order
    jobs = [(0, 0.4), (1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0)]
    groups = ["a", "b", "b", "a", "c"]
    bar, lines = io.StringIO(), io.StringIO()
    out = run_jobs(
        _square_after,
        jobs,
        groups=groups,
        workers=workers,
        summarize=_summarize,
        desc="sweep",
        file=bar,
        summary_file=lines,
    )
    assert out == [0, 1, 4, 9, 16]
    printed = lines.getvalue().splitlines()
    assert len(printed) == 3
    by_group = {g: next(line for line in printed if f"group {g} " in line) for g in "abc"}
    assert "sum=9 (2 runs" in by_group["a"]  # 0 + 9
    assert "sum=5 (2 runs" in by_group["b"]  # 1 + 4
    assert "sum=16 (1 runs" in by_group["c"]
    assert printed[-1].startswith("[3/3 groups")
    if workers == 2:  # group a waits for the slow first job, so it is reported last
        assert "group a " in printed[-1]
    text = bar.getvalue()
    assert "sweep" in text and "5/5" in text


def test_group_line_only_when_its_last_run_is_done():
    prog: GroupProgress[int] = GroupProgress(
        ["x", "y", "x"], summarize=_summarize, file=io.StringIO(), summary_file=io.StringIO()
    )
    assert prog.done(2, 10) is None  # x still has run 0 left
    line_y = prog.done(1, 5)
    assert line_y is not None and "group y sum=5" in line_y and line_y.startswith("[1/2 groups")
    line_x = prog.done(0, 1)
    assert line_x is not None and "group x sum=11" in line_x
    assert prog.results() == [1, 5, 10]
    assert prog.lines == [line_y, line_x]
    prog.close()


def test_default_summary_and_disabled_bar():
    bar, lines = io.StringIO(), io.StringIO()
    out = run_jobs(
        _square_after, [(2, 0.0)], progress=False, file=bar, summary_file=lines
    )
    assert out == [4]
    assert bar.getvalue() == ""
    assert "all: 1 runs done" in lines.getvalue()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="one group per job, got 1 groups for 2 jobs"):
        run_jobs(_square_after, [(1, 0.0), (2, 0.0)], groups=["a"], progress=False)
    with pytest.raises(ValueError, match="workers >= 1, got 0"):
        run_jobs(_square_after, [(1, 0.0)], workers=0, progress=False)
    prog: GroupProgress[int] = GroupProgress(["a"], enabled=False, summary_file=io.StringIO())
    with pytest.raises(ValueError, match=r"run index in \[0, 1\), got 5"):
        prog.done(5, 0)
    with pytest.raises(ValueError, match="every run to have finished, 1 did not"):
        prog.results()
    prog.done(0, 0)
    with pytest.raises(ValueError, match="run 0 was reported twice"):
        prog.done(0, 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_run_propagates(workers):
    jobs = [(i, 0.0) for i in range(6)]
    with pytest.raises(RuntimeError, match="run 3 failed"):
        run_jobs(
            _fail_on_three, jobs, workers=workers, progress=False, summary_file=io.StringIO()
        )
