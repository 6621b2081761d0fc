"""The synthetic benchmark's results.json reads back in every version, and its report redraws it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.harness.result_files import to_json
from benchmarks.synthetic import report
from benchmarks.synthetic.protocol import ABLATIONS
from benchmarks.synthetic.results import RULE_RENAMES, SCHEMA_VERSION, load_results, upgrade

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = sorted((ROOT / "docs/examples").glob("synthetic-*.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_every_committed_result_loads_in_the_current_names_and_renders(path: Path) -> None:
    raw = json.loads(path.read_text())
    loaded = load_results(path)
    assert loaded.schema_version == SCHEMA_VERSION
    result = to_json(loaded)  # written back, it is the file in the current names
    assert result == upgrade(raw)
    assert result["points"] == raw["points"]  # the numbers are untouched
    rules = raw.get("ablations", {}).get("rules")
    if rules is not None:
        assert list(result["ablations"]["rules"]) == [RULE_RENAMES.get(k, k) for k in rules]
        assert list(result["ablations"]["rules"].values()) == list(rules.values())
        assert list(result["ablations"]["rules"]) == list(ABLATIONS["rules"])
    text = report.markdown(loaded)
    assert text.startswith("## Test accuracy (%) along the U1/S sweep")
    assert not any(f"| {old} |" in text for old in RULE_RENAMES)


def test_a_result_of_a_newer_schema_or_another_runner_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"points": [], "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ValueError, match=f"schema version <= {SCHEMA_VERSION}, got"):
        load_results(path)
    path.write_text(json.dumps({"view_sets": []}))
    with pytest.raises(
        ValueError, match=r"results\.json of benchmarks\.synthetic with 'points'"
    ):
        load_results(path)


def test_the_report_command_rewrites_a_result_in_the_current_version(tmp_path: Path) -> None:
    source = ROOT / "docs/examples/synthetic-undertrained-quick-results.json"
    report.main([str(source), "--out", str(tmp_path)])
    written = json.loads((tmp_path / "results.json").read_text())
    report_record = written.pop("report_provenance")
    assert report_record["command"] and report_record["ended"] >= report_record["started"]
    assert written == json.loads(json.dumps(to_json(load_results(source))))
    assert (tmp_path / "results.md").read_text() == report.markdown(load_results(source))
    assert (tmp_path / "accuracy_vs_ratio.png").read_bytes()[:4] == b"\x89PNG"
