"""The Figure-5 error matrix of a method without unimodal heads, against a reference run."""

import json

import pytest
import torch

from examples.common.cli import build_parser, parse_args, train_config
from examples.common.metrics import error_matrix
from examples.common.task import TaskSpec
from examples.common.trainer import run_experiment
from tests.examples._helpers.tiny_models import tiny_model

TASK = TaskSpec("classification", num_classes=3)


def _run(out, tiny_data, *extra):
    argv = [
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--no-progress",
        "--max-epochs",
        "1",
    ]
    return run_experiment(
        train_config(parse_args(build_parser("t"), [*argv, *extra])),
        build_model=tiny_model,
        datasets=tiny_data,
        task=TASK,
    )


def test_joint_error_matrix_against_the_ensembles_unimodal_models(tmp_path, tiny_data):
    _run(tmp_path / "ens", tiny_data, "--method", "ensemble")
    ref_file = tmp_path / "ens" / "test_predictions.json"
    ref = json.loads(ref_file.read_text())
    assert set(ref["unimodal"]) == set(ref["modalities"]) and len(ref["labels"]) == len(
        ref["multimodal"]
    )

    plain = _run(tmp_path / "joint", tiny_data, "--method", "joint")
    assert plain["error_matrix"] is None  # joint has no unimodal predictions of its own

    metrics = _run(
        tmp_path / "joint_ref",
        tiny_data,
        "--method",
        "joint",
        "--unimodal-reference",
        str(ref_file),
    )
    mine = json.loads((tmp_path / "joint_ref" / "test_predictions.json").read_text())
    expected = error_matrix(
        torch.tensor(mine["multimodal"]),
        [torch.tensor(ref["unimodal"][m]) for m in ref["modalities"]],
        torch.tensor(mine["labels"]),
    )
    assert metrics["error_matrix"]["counts"] == expected.counts.tolist()
    assert metrics["error_matrix"]["unimodal_source"] == str(ref_file)


def test_reference_from_another_test_set_is_refused(tmp_path, tiny_data):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "modalities": ["a", "b"],
                "labels": [0, 1],
                "multimodal": [0, 1],
                "unimodal": {"a": [0, 1], "b": [1, 1]},
            }
        )
    )
    with pytest.raises(ValueError, match="made on another test set"):
        _run(tmp_path / "x", tiny_data, "--method", "joint", "--unimodal-reference", str(bad))
    empty = tmp_path / "none.json"
    empty.write_text(json.dumps({"labels": [], "unimodal": None}))
    with pytest.raises(ValueError, match="with unimodal predictions"):
        _run(tmp_path / "y", tiny_data, "--method", "joint", "--unimodal-reference", str(empty))
