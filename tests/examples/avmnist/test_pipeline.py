"""The AV-MNIST pipeline's model and command line (the benchmark's tests are under
tests/benchmarks/avmnist)."""

from __future__ import annotations

import json

import pytest
import torch

from examples.avmnist import train
from examples.avmnist.model import LeNetEncoder, build_model
from tests.examples._helpers.entry_points import run_entry_point


def test_encoders_reduce_their_maps_to_vectors():
    model = build_model(32, channels=2)
    z = model.encode({"image": torch.zeros(3, 1, 28, 28), "audio": torch.zeros(3, 1, 32, 32)})
    assert z["image"].shape == (3, 16) and z["audio"].shape == (3, 32)
    assert model.latent_dims == {"image": 16, "audio": 32}
    with pytest.raises(ValueError, match="expected blocks >= 1"):
        LeNetEncoder(0, 6)


def test_train_says_what_data_it_needs():
    with pytest.raises(ValueError, match="expected --data-root"):
        train.main(["--method", "joint"])


@pytest.mark.slow
def test_one_mcr_run_from_the_command_line(tmp_path, avmnist_root):
    out = tmp_path / "mcr"
    run_entry_point(
        ["-m", "examples.avmnist.train"],
        *("--data-root", str(avmnist_root), "--method", "mcr", "--out", str(out)),
        *("--train-per-class", "3", "--val-per-class", "1", "--test-per-class", "2"),
        *("--smoke", "--no-progress"),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "mcr" and metrics["method_options"]["projection_dim"] == 64
    assert metrics["data"]["recordings"] == 120 and metrics["modalities"] == ["image", "audio"]
