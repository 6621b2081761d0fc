"""diagnose.py on a tiny setting: per-kind accuracy of the output and of each modality share."""

import pytest
import torch

from benchmarks.synthetic import diagnose


def test_tiny_diagnosis_reports_each_kind_and_share():
    rows = diagnose.main(
        [
            "--u1",
            "0.6",
            "--seeds",
            "0",
            "--max-epochs",
            "1",
            "--n-train",
            "50",
            "--option",
            'joint={"lr": 0.001}',
            "--option",
            'mcr_uni_pre={"mipd_weight": 0.1}',
        ]
    )
    assert [r["method"] for r in rows] == ["joint", "mcr_uni_pre"]
    for row in rows:
        assert set(row) == {"method", "seed", "shared", "u1", "u2"}
        for kind in ("shared", "u1", "u2"):
            values = row[kind]
            assert set(values) == {"output", "m1", "m2", "m1_spread", "m2_spread"}
            assert all(0.0 <= values[k] <= 1.0 for k in ("output", "m1", "m2"))
            assert values["m1_spread"] >= 0.0 and values["m2_spread"] >= 0.0


def test_shares_of_late_fusion_add_up_to_the_output():
    # the diagnosis reads W_m z_m + b/2 as modality m's share: the shares must sum to the output
    from benchmarks.synthetic.training import build_model
    from examples.common.methods import build_method
    from examples.common.methods.base import unimodal_outputs_from_fusion
    from examples.common.task import TaskSpec

    spec = diagnose.SyntheticSpec()
    m = build_method("joint", build_model(spec, diagnose.Budget()), TaskSpec("classification", 5))
    batch = {"m1": torch.randn(6, 64), "m2": torch.randn(6, 256)}
    latents = m.encode(batch)
    shares = unimodal_outputs_from_fusion(m.model, latents)
    assert torch.allclose(shares["m1"] + shares["m2"], m.model.fuse(latents), atol=1e-5)


def test_bad_option_raises():
    with pytest.raises(ValueError, match="METHOD=JSON"):
        diagnose.main(["--option", "joint"])
    with pytest.raises(ValueError, match="JSON object"):
        diagnose.main(["--option", "joint=[1]"])


def test_undertrained_regime_is_diagnosed_on_its_own_data():
    rows = diagnose.main(
        [
            *("--regime", "undertrained", "--u1", "0.7", "--seeds", "0"),
            *("--max-epochs", "1", "--n-train", "50", "--option", 'joint={"lr": 0.001}'),
        ]
    )
    assert [r["method"] for r in rows] == ["joint"]
    assert 0.0 <= rows[0]["u1"]["m1"] <= 1.0
