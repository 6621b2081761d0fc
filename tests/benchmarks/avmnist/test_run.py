"""The AV-MNIST benchmark end to end on the tiny real-format fixture, its flags, joining
parts, and the repair rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.avmnist import protocol, report, run
from examples.avmnist import train

#: 3 / 1 / 2 pairs per class, one epoch, one trial, two seeds, one worker.
TINY = ("--pairs", "3", "1", "2", "--max-epochs", "1", "--grid", "1", "--seeds", "2")


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--mnist", str(root / "mnist"), "--fsdd", str(root / "fsdd"), "--out", str(out)),
        *TINY,
        *("--workers", "1", "--no-progress"),
        *extra,
    ]


def test_the_trainer_config_is_the_benchmark_budget():
    config = json.loads(train.CONFIG.read_text())
    budget = protocol.Budget()
    for key in ("max_epochs", "patience", "batch_size", "lr", "weight_decay"):
        assert config[key] == getattr(budget, key), key
    assert config["method_options"]["mcr"] == protocol.MCR_PROJECTION


@pytest.mark.slow
def test_every_method_runs_and_the_report_has_its_parts(tmp_path, avmnist_root):
    out = tmp_path / "out"
    result = run.main(_argv(avmnist_root, out, "--seeds", "1", "--methods", *protocol.METHOD_KEYS))
    assert list(result["methods"]) == list(protocol.METHOD_KEYS)
    for key, entry in result["methods"].items():
        assert len(entry["per_seed"]) == 1 and 0.0 <= entry["mean"] <= 1.0
        assert entry["trial"] == protocol.GRID[key][0]
        assert set(entry["probe"]) == {"image", "audio"}
        assert set(entry["probe_gap"]) == {"image", "audio"}
    gap = result["methods"]["joint"]["probe_gap"]["audio"]
    joint, ens = result["methods"]["joint"]["probe"], result["methods"]["ensemble"]["probe"]
    assert gap["mean"] == pytest.approx(ens["audio"]["mean"] - joint["audio"]["mean"])
    assert set(result["premise"]["unimodal_test"]) == {"image", "audio"}
    assert result["repair"]["starved"] in ("image", "audio")
    assert {"vs_joint", "vs_ensemble", "repaired", "fully"} <= set(result["repair"]["mcr"])
    paired = result["paired"]
    assert {"mcr-joint", "mcr-ensemble", "mcr_uni_pre-joint", "mcr_uni_pre-ensemble"} <= set(paired)
    assert "ensemble-joint" in paired and "agm-joint" in paired and "agm-ensemble" not in paired
    c = paired["mcr-joint"]
    assert c["n"] == 1 and c["wins"] + c["ties"] + c["losses"] == 1 and "verdict" in c
    assert result["setup"]["recordings"] == 120 and result["setup"]["budget"]["max_epochs"] == 1
    text = (out / "results.md").read_text()
    assert "| mcr_uni_pre |" in text and "## Premise" in text and "mcr − ensemble" in text
    for name in ("accuracy.png", "probes.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "results.json").read_text())["paired"] == json.loads(
        json.dumps(paired)
    )
    report.main([str(out / "results.json"), "--out", str(tmp_path / "again")])
    assert (tmp_path / "again" / "results.md").read_text() == text  # the same tables, no training
    assert (tmp_path / "again" / "probes.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_stopped_benchmark_trains_only_the_missing_runs(tmp_path, avmnist_root, monkeypatch):
    out = tmp_path / "out"
    argv = _argv(avmnist_root, out, "--methods", "joint", "ensemble", "--seeds", "1")
    first = run.main(argv)
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == 2
    trained: list[protocol.Job] = []
    real = run.train
    monkeypatch.setattr(run, "train", lambda job: trained.append(job) or real(job))
    files[0].unlink()
    second = run.main(argv)
    assert len(trained) == 1
    drop = ("setup", "provenance")  # the times and the machine of each call
    strip = {k: v for k, v in first.items() if k not in drop}
    again = {k: v for k, v in second.items() if k not in drop}
    for entry in (*strip["methods"].values(), *again["methods"].values()):
        entry.pop("seconds")
    assert again == strip  # one thread, fixed seeds: the retrained run is the same
    run.main([*argv, "--no-resume"])
    assert len(trained) == 1 + 2


def test_flags_are_checked(tmp_path):
    args = run.build_parser().parse_args(
        ["--mnist", "m", "--fsdd", "f", "--out", "o", "--grid", "3"]
    )
    with pytest.raises(ValueError, match="expected --grid 1 or 2, got 3"):
        run.make_plan(args)
    quick = run.make_plan(
        run.build_parser().parse_args(["--mnist", "m", "--fsdd", "f", "--out", "o", "--quick"])
    )
    assert quick.methods == protocol.QUICK_METHODS and quick.seeds == (0, 1) and quick.grid == 1
    full = run.make_plan(
        run.build_parser().parse_args(["--mnist", "m", "--fsdd", "f", "--out", "o"])
    )
    assert full.methods == protocol.METHOD_KEYS and len(full.seeds) == 10 and full.grid == 2


def test_report_refuses_a_file_that_is_not_a_benchmark_result(tmp_path):
    other = tmp_path / "metrics.json"
    other.write_text(json.dumps({"method": "joint"}))
    with pytest.raises(SystemExit, match="expected the keys 'methods' and 'paired'"):
        report.main([str(other), "--out", str(tmp_path / "o")])


@pytest.mark.slow
def test_parts_joined_equal_one_run_of_all_their_methods(tmp_path, avmnist_root):
    whole = run.main(
        _argv(avmnist_root, tmp_path / "whole", "--methods", "joint", "ensemble", "mcr")
    )
    run.main(_argv(avmnist_root, tmp_path / "a", "--methods", "joint", "ensemble"))
    run.main(_argv(avmnist_root, tmp_path / "b", "--methods", "mcr"))
    parts = [str(tmp_path / name / "results.json") for name in ("a", "b")]
    report.main([*parts, "--out", str(tmp_path / "joined")])
    joined = json.loads((tmp_path / "joined" / "results.json").read_text())
    expected = json.loads(json.dumps(whole))
    for entry in (*joined["methods"].values(), *expected["methods"].values()):
        assert entry.pop("seconds") > 0  # training time: the only thing that differs
    for key in ("methods", "premise", "repair", "paired"):
        assert joined[key] == expected[key], key
    assert [p["file"] for p in joined["setup"]["parts"]] == parts
    assert joined["setup"]["plan"]["methods"] == ["joint", "ensemble", "mcr"]
    text = (tmp_path / "joined" / "results.md").read_text()
    assert "mcr − ensemble" in text and "## Premise" in text


def test_joining_refuses_parts_of_different_protocols(tmp_path):
    def part(methods, seeds, digest="d"):
        setup = {"data_digest": digest, "budget": {}, "pairs_per_class": {}, "quick": False}
        setup.update(plan={"seeds": seeds, "grid": 2, "methods": methods}, grid={})
        entry = {"per_seed": [0.5] * len(seeds), "probe": {}}
        return {"methods": {m: entry for m in methods}, "paired": {}, "setup": setup}

    paths = []
    for name, value in {
        "a": part(["joint"], [0, 1]),
        "b": part(["mcr"], [0, 1, 2]),
        "c": part(["joint"], [0, 1]),
        "d": part(["mcr"], [0, 1], digest="other"),
    }.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(value))
    a, b, c, d = (str(x) for x in paths)
    with pytest.raises(SystemExit, match=r"b\.json: expected the same seeds .*\[0, 1\]"):
        report.main([a, b, "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="method 'joint' is already in an earlier part"):
        report.main([a, c, "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match=r"d\.json: expected the same data"):
        report.main([a, d, "--out", str(tmp_path / "o")])


def _entry(probe_image: list[float], probe_audio: list[float]) -> dict:
    return {
        "probe": {
            "image": {"mean": sum(probe_image) / len(probe_image), "per_seed": probe_image},
            "audio": {"mean": sum(probe_audio) / len(probe_audio), "per_seed": probe_audio},
        }
    }


def test_repair_is_judged_on_the_modality_joint_training_starves():
    seeds = 8
    ens = _entry([0.60] * seeds, [0.95] * seeds)
    joint = _entry([0.50] * seeds, [0.94] * seeds)  # image gap 10 points, audio 1
    mcr = _entry([0.55 + 0.001 * i for i in range(seeds)], [0.90] * seeds)
    up = _entry([0.61 + 0.001 * i for i in range(seeds)], [0.95] * seeds)
    m = {"joint": joint, "ensemble": ens, "mcr": mcr, "mcr_uni_pre": up}
    for entry in m.values():
        entry["probe_gap"] = {
            mod: {"mean": ens["probe"][mod]["mean"] - entry["probe"][mod]["mean"]}
            for mod in ("image", "audio")
        }
    rep = protocol.repair_tests(m, 0.001)
    assert rep["starved"] == "image"
    assert rep["mcr"]["repaired"] and not rep["mcr"]["fully"]  # better than joint, below ensemble
    assert rep["mcr"]["vs_joint"]["wins"] == seeds
    assert rep["mcr_uni_pre"]["repaired"] and rep["mcr_uni_pre"]["fully"]
    m["mcr"] = _entry([0.50] * seeds, [0.99] * seeds)  # the audio probe does not count
    assert not protocol.repair_tests(m, 0.001)["mcr"]["repaired"]
