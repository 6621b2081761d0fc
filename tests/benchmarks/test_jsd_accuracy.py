"""benchmarks.jsd_accuracy: the float32 accuracy table and its results file."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.jsd_accuracy import SCALES, main


def test_writes_the_table_with_provenance(tmp_path: Path) -> None:
    out = tmp_path / "jsd.json"
    assert main(["--rows", "256", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["schema"] == "mcr-reg/jsd-accuracy/1"
    assert {"command", "commit", "packages", "cpu"} <= set(record["provenance"])
    rows = record["results"]
    assert [r["scale"] for r in rows[::2]] == list(SCALES)
    for r in rows:  # float32 keeps its accuracy at every scale (the semantics page's claim)
        assert r["mcr_reg"]["gradient"] < 2e-6, r
    small = [r for r in rows if r["scale"] <= 0.003 and r["pairs"] == "close"]
    assert all(r["release_0_2"]["gradient"] > 100 * r["mcr_reg"]["gradient"] for r in small)
