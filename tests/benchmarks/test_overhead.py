"""benchmarks.overhead in --quick mode: runs end to end and writes the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.overhead import SCHEMA, check_targets, main, markdown, parse_args

STATS = {"median", "q1", "q3", "values"}


def _check_stats(s: dict) -> None:
    assert set(s) == STATS
    assert s["q1"] <= s["median"] <= s["q3"]
    assert all(v > 0 for v in s["values"])


@pytest.mark.slow
def test_quick_run_writes_the_documented_json_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "o.json", tmp_path / "o.png"
    returned = main(
        [
            "--quick",
            "--models",
            "mosei",
            "--mosei-variants",
            "joint",
            "mcr:2",
            "input:2",
            "--out",
            str(out),
            "--plot",
            str(png),
        ]
    )
    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    assert result["schema"] == SCHEMA
    meta = result["meta"]
    assert meta["quick"] is True and meta["command"].startswith("python -m benchmarks.overhead")
    assert meta["clock"].startswith("CPU time of the process")
    assert {"date", "torch", "cpu_count", "torch_threads", "device"} <= set(meta["environment"])
    mosei = result["models"]["mosei"]
    assert list(mosei["variants"]) == ["joint", "mcr@2", "input@2"]
    for entry in mosei["variants"].values():
        assert {
            "label",
            "method",
            "P",
            "time_s",
            "time_vs_joint",
            "wall_s",
            "wall_vs_joint",
            "memory",
        } <= set(entry)
        for name in ("time_s", "time_vs_joint", "wall_s", "wall_vs_joint"):
            _check_stats(entry[name])
        mem = entry["memory"]
        assert mem["method"] == "peak RSS (VmHWM) of a fresh process"
        assert mem["peak_bytes"] > mem["baseline_bytes"] > 0
        assert mem["step_bytes"] == mem["peak_bytes"] - mem["baseline_bytes"]
    assert mosei["variants"]["joint"]["time_vs_joint"]["values"] == [1.0, 1.0]
    assert mosei["variants"]["joint"]["memory"]["vs_joint"] == 1.0
    rows = result["scaling"]
    assert {(r["M"], r["P"], r["subsets"]) for r in rows} >= {(2, 1, "all"), (3, 2, "singletons")}
    for r in rows:
        _check_stats(r["time_s"])
        assert r["head_rows"] > 0
    assert result["targets"] == {}  # no ResNet-18 in this run
    assert png.stat().st_size > 10_000


@pytest.mark.slow
def test_quick_resnet_run_checks_the_targets(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = main(
        [
            "--quick",
            "--models",
            "resnet18",
            "--resnet-variants",
            "joint",
            "mcr:2",
            "input:2",
            "ogm_ge",
            "agm",
            "mlb",
            "--no-memory",
            "--no-scaling",
            "--out",
            str(out),
        ]
    )
    assert "scaling" not in result
    variants = result["models"]["resnet18"]["variants"]
    assert "memory" not in variants["joint"]
    targets = result["targets"]
    assert targets["input_vs_mcr_P"] == 2
    assert targets["input_vs_mcr_time"]["value"] > 0
    assert targets["mcr_time_vs_joint"]["value"] is None  # needs mcr:32
    assert targets["mcr_time_vs_joint"]["met"] is None
    text = markdown(result)
    assert "| OGM-GE |" in text and "not measured" in text


def test_check_targets_reads_the_resnet_results() -> None:
    def entry(method: str, p: int | None, times: list[float], mem: float) -> dict:
        return {
            "method": method,
            "P": p,
            "time_s": {"values": times},
            "time_vs_joint": {"median": times[0] / 1.0},
            "memory": {"vs_joint": mem},
        }

    models = {
        "resnet18": {
            "variants": {
                "joint": entry("joint", None, [1.0, 1.0], 1.0),
                "mcr@32": entry("mcr", 32, [1.02, 1.02], 1.2),
                "mcr@8": entry("mcr", 8, [1.0, 1.0], 1.0),
                "input@8": entry("input", 8, [9.0, 7.0], 3.0),
            }
        }
    }
    t = check_targets(models)
    assert t["mcr_time_vs_joint"]["met"] is True
    assert t["mcr_memory_vs_joint"]["met"] is False
    assert t["input_vs_mcr_time"]["value"] == 8.0 and t["input_vs_mcr_time"]["met"] is True


def test_first_variant_must_be_joint(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="must be 'joint'"):
        main(
            [
                "--quick",
                "--models",
                "mosei",
                "--mosei-variants",
                "mcr:2",
                "joint",
                "--out",
                str(tmp_path / "x.json"),
            ]
        )


def test_defaults_are_the_documented_run() -> None:
    args = parse_args([])
    assert (args.repeats, args.steps, args.threads, args.resnet_batch) == (7, 1, 1, 8)
    assert args.audio_shape == (1, 128, 94) and args.video_shape == (3, 3, 112, 112)
    assert args.resnet_variants == ["joint", "mcr:32", "mcr:8", "input:8", "ogm_ge", "agm", "mlb"]
    assert args.mosei_variants == ["joint", "mcr:32", "input:32", "ogm_ge", "agm", "mlb"]
