"""A tiny multi-view benchmark run's command line, and how its results are compared; shared by
the runner's and the combiner's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness.result_files import to_json
from benchmarks.multiview.combine import without_timing

#: One trial, one epoch, 6 / 3 / 3 digits per class, two seeds; no triples, six-view set or
#: cost run; one worker (in this process) and no progress bar. Later flags override these.
TINY_OPTIONS: tuple[str, ...] = (
    "--seeds",
    "2",
    "--grid",
    "1",
    "--max-epochs",
    "1",
    "--per-class",
    "6",
    "3",
    "3",
    "--no-triples",
    "--no-six",
    "--no-cost",
    "--workers",
    "1",
    "--no-progress",
)


def tiny_argv(data_root: Path, out: Path, *extra: str) -> list[str]:
    """``--data-root data_root --out out``, :data:`TINY_OPTIONS`, then ``extra``."""
    return ["--data-root", str(data_root), "--out", str(out), *TINY_OPTIONS, *extra]


def without_setup_or_times(result: Any) -> dict[str, Any]:
    """``result`` (a :class:`~benchmarks.multiview.results.BenchmarkResult` or its JSON) without
    its setup, provenance records and training times: what two runs of the same benchmark (or
    a combination of its parts) must agree on."""
    skip = ("setup", "provenance", "report_provenance")
    return without_timing({k: v for k, v in to_json(result).items() if k not in skip})
