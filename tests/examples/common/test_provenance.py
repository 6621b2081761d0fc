"""The provenance record every results file stores."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import torch

from examples.common.provenance import git_state, kept_provenance, provenance

ROOT = Path(__file__).resolve().parents[3]
RESULT_FILES = sorted([*ROOT.glob("docs/examples/*.json"), *ROOT.glob("benchmarks/results/*.json")])


def test_the_record_names_command_code_versions_machine_and_times():
    started = time.time() - 3.0
    rec = provenance(started, arguments=["--quick"])
    assert rec["command"] and rec["arguments"] == ["--quick"]
    assert rec["packages"]["torch"] == torch.__version__
    assert "numpy" in rec["packages"] and rec["python"].count(".") == 2
    assert rec["torch_threads"] == torch.get_num_threads()
    assert rec["cpu"] and rec["cpu_count"] >= 1
    assert rec["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    assert rec["started"] < rec["ended"] and rec["ended"].endswith("+00:00")
    assert (rec["commit"] is None) == (rec["dirty"] is None)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_git_state_tells_a_clean_tree_from_a_changed_one(tmp_path: Path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "changed": []}
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["changed"] == []
    (tmp_path / "a.py").write_text("x = 2\n")
    (tmp_path / "untracked.txt").write_text("not code of the run\n")
    assert git_state(tmp_path) == {**clean, "dirty": True, "changed": ["a.py"]}


def test_a_kept_file_records_no_commit_or_version():
    rec = kept_provenance("kept from a run made before the record existed", {"load_average": [1]})
    assert rec["kept_from_an_earlier_run"] is True
    assert "commit" not in rec and "packages" not in rec and rec["known"] == {"load_average": [1]}
