"""MCR in loops that rewrite the encoders' gradients after ``backward``, and the probe that says
whether MCR's gradient survives them (``mcr_reg.check_gradient_path``).

Two loops are written here anew in the shape of published balancing code:

* Pareto mixing (as MMPareto): per-modality heads and losses; each encoder's gradient is
  replaced by a min-norm combination of the gradients of the multimodal loss and of its own
  unimodal loss, computed separately. ``mcr(...).loss`` must join the multimodal loss: added to
  the final loss only, it never enters the combination and is thrown away.
* Gradient modulation (as OGM-GE): after ``backward`` each encoder's gradient is scaled by a
  coefficient that slows the dominant modality, plus Gaussian noise; MCR's gradient, part of
  the total, is scaled with it and survives.

The loops live in ``tests/integration/loops.py``; the model is used as published (the fusion
head is called inline on a concatenation); MCR is added with set-up lines and one line in the
step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mcr_reg import FusionInputs, check_gradient_path
from tests.integration.loops import D, InlineAVNet, batches, pareto_setup, pareto_step


def _setup() -> tuple[InlineAVNet, FusionInputs, tuple[Tensor, Tensor, Tensor]]:
    model, fusion_inputs, _ = pareto_setup(with_mcr=True)
    assert fusion_inputs is not None
    return model, fusion_inputs, next(batches(1))


def modulation_step(model: InlineAVNet, fusion_inputs: FusionInputs, data) -> None:  # type: ignore[no-untyped-def]
    xa, xv, y = data
    model.zero_grad(set_to_none=True)
    out, _, _ = model(xa, xv)
    loss = F.cross_entropy(out, y) + model.mcr(fusion_inputs, y).loss  # added
    loss.backward()
    with torch.no_grad():  # confidence of each modality's half of the linear head
        w = model.head.weight
        a, v = fusion_inputs.latents
        score_a = torch.softmax(a @ w[:, :D].T, 1).gather(1, y[:, None]).sum()
        score_v = torch.softmax(v @ w[:, D:].T, 1).gather(1, y[:, None]).sum()
        ratio = score_a / score_v
        coefficients = {
            model.audio_net: 1 - torch.tanh(0.5 * torch.relu(ratio - 1)),
            model.visual_net: 1 - torch.tanh(0.5 * torch.relu(1 / ratio - 1)),
        }
        for encoder, coefficient in coefficients.items():
            for p in encoder.parameters():
                p.grad = p.grad * coefficient + torch.randn_like(p.grad) * p.grad.std() * 1e-3


def test_added_to_the_final_loss_mcr_is_thrown_away_by_pareto_mixing() -> None:
    model, fusion_inputs, data = _setup()
    report = check_gradient_path(
        lambda: pareto_step(model, fusion_inputs, data, "final"),
        model.mcr,
        {"audio": model.audio_net, "visual": model.visual_net},
    )
    for path in report.values():
        assert not path.survives and path.ratio < 1e-6, str(path)
        assert "thrown away" in str(path) and "docs/integration.md" in str(path)


def test_added_to_the_multimodal_loss_mcr_joins_pareto_mixing() -> None:
    """Without a conflict the combination is the sum and MCR's gradient arrives unchanged; in a
    conflict the min-norm weights re-weight it (changed, not thrown away)."""
    model, fusion_inputs, data = _setup()
    conflicts = []
    report = check_gradient_path(
        lambda: conflicts.append(pareto_step(model, fusion_inputs, data, "multimodal")),
        model.mcr,
        {"audio": model.audio_net, "visual": model.visual_net},
    )
    found = conflicts[-1]
    assert sorted(found.values()) == [False, True]  # this batch has one case of each
    for encoder, name in ((model.audio_net, "audio"), (model.visual_net, "visual")):
        path = report[name]
        if found[encoder]:
            assert not path.survives and path.ratio > 0.1, str(path)
            assert "re-weights" in str(path)
        else:
            assert path.survives and abs(path.ratio - 1) < 1e-6, str(path)


def test_mcr_survives_gradient_modulation() -> None:
    model, fusion_inputs, data = _setup()
    report = check_gradient_path(
        lambda: modulation_step(model, fusion_inputs, data),
        model.mcr,
        {"audio": model.audio_net, "visual": model.visual_net},
    )
    for path in report.values():
        assert path.survives, str(path)
        assert 0 < path.ratio <= 1.0 + 1e-6, str(path)


def test_the_probe_leaves_gradients_and_randomness_as_they_were() -> None:
    model, fusion_inputs, data = _setup()
    pareto_step(model, fusion_inputs, data, "multimodal")
    before = [p.grad.clone() for p in model.audio_net.parameters()]
    rng = model.mcr.get_extra_state()
    check_gradient_path(
        lambda: pareto_step(model, fusion_inputs, data, "multimodal"),
        model.mcr,
        {"audio": model.audio_net},
    )
    for p, g in zip(model.audio_net.parameters(), before):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
    after = model.mcr.get_extra_state()
    assert after["seed"] == rng["seed"]
    for key, state in rng["generators"].items():
        assert torch.equal(after["generators"][key], state)
    assert model.mcr._probe is None


def test_a_step_without_mcr_is_an_error() -> None:
    model, _, data = _setup()
    xa, xv, y = data

    def plain() -> None:
        model.zero_grad()
        F.cross_entropy(model(xa, xv)[0], y).backward()

    with pytest.raises(RuntimeError, match="did not call MCR"):
        check_gradient_path(plain, model.mcr, {"audio": model.audio_net})
