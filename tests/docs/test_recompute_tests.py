"""The committed results files hold the paired tests their stored runs give by the current
tie and zero rule, and a provenance record (docs/scripts/recompute_tests.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "recompute_tests", ROOT / "docs" / "scripts" / "recompute_tests.py"
)
assert SPEC is not None and SPEC.loader is not None
recompute_tests = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(recompute_tests)

RESULT_FILES = sorted(
    [
        *(ROOT / "docs" / "examples").glob("*.json"),
        *(ROOT / "benchmarks" / "results").glob("*.json"),
    ]
)


def test_every_committed_result_is_up_to_date_with_the_tie_rule():
    assert recompute_tests.main(["--check"]) == []


def test_every_file_with_paired_tests_is_recomputed():
    for rel in recompute_tests.RECOMPUTE:
        assert (ROOT / rel).is_file(), rel


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_every_committed_results_file_has_a_provenance_record(path: Path):
    record = json.loads(path.read_text())["provenance"]
    if record.get("kept_from_an_earlier_run"):
        assert record["note"] and "commit" not in record and "packages" not in record
    else:
        for key in ("command", "commit", "dirty", "packages", "cpu", "started", "ended"):
            assert key in record, f"{path.name}: provenance without {key!r}"


def test_a_kept_record_lists_only_what_the_file_recorded():
    result = {"setup": {"wall_time_s": 3.0, "load_average": [1.0]}, "paired": {}}
    kept = recompute_tests.with_kept_provenance(result)["provenance"]
    assert kept["known"] == {"wall_time_s": 3.0, "load_average": [1.0]}
    assert recompute_tests.with_kept_provenance({"provenance": {"x": 1}}) == {
        "provenance": {"x": 1}
    }
