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

The model is used as published (the fusion head is called inline on a concatenation); MCR is
added with set-up lines and one line in the step.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import FusionInputs, MCRRegularizer, check_gradient_path

B, C, D = 16, 4, 8


class AVNet(nn.Module):
    """Audio and visual encoders, a fused head on their concatenation, one head per modality."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_net = nn.Sequential(nn.Linear(20, D), nn.ReLU(), nn.Linear(D, D))
        self.visual_net = nn.Sequential(nn.Linear(30, D), nn.ReLU(), nn.Linear(D, D))
        self.head = nn.Linear(2 * D, C)
        self.head_audio, self.head_video = nn.Linear(D, C), nn.Linear(D, C)

    def forward(self, xa: Tensor, xv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, v = self.audio_net(xa), self.visual_net(xv)
        out = self.head(torch.cat((a, v), 1))
        return out, self.head_audio(a), self.head_video(v)


def _setup() -> tuple[AVNet, FusionInputs, MCRRegularizer, tuple[Tensor, Tensor, Tensor]]:
    torch.manual_seed(0)
    model = AVNet()
    fusion_inputs = FusionInputs(model.head, split=(D, D))  # added
    mcr = MCRRegularizer(fusion_inputs.head, num_classes=C, latent_dims=(D, D), seed=0)  # added
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(B, 20, generator=g), torch.randn(B, 30, generator=g), torch.arange(B) % C)
    return model, fusion_inputs, mcr, data


def _min_norm(g1: Tensor, g2: Tensor) -> Tensor:
    """The minimum-norm point of the segment between two gradients (two-task MGDA)."""
    diff = g1 - g2
    alpha = ((g2 - g1) @ g2 / (diff @ diff).clamp_min(1e-20)).clamp(0.0, 1.0)
    return alpha * g1 + (1 - alpha) * g2


def pareto_step(
    model: AVNet, fusion_inputs: FusionInputs, mcr: MCRRegularizer, data, placement: str
):  # type: ignore[no-untyped-def]
    xa, xv, y = data
    model.zero_grad(set_to_none=True)
    mcr.zero_grad(set_to_none=True)
    out, out_a, out_v = model(xa, xv)
    loss_m = F.cross_entropy(out, y)
    loss_a, loss_v = F.cross_entropy(out_a, y), F.cross_entropy(out_v, y)
    reg = mcr(fusion_inputs, y).loss  # added
    if placement == "multimodal":
        loss_m = loss_m + reg
    total = loss_m + loss_a + loss_v
    if placement == "final":
        total = total + reg
    mixed, conflicts = {}, {}
    for encoder, loss_uni in ((model.audio_net, loss_a), (model.visual_net, loss_v)):
        params = list(encoder.parameters())
        g_m = torch.autograd.grad(loss_m, params, retain_graph=True)
        g_u = torch.autograd.grad(loss_uni, params, retain_graph=True)
        flat_m = torch.cat([g.reshape(-1) for g in g_m])
        flat_u = torch.cat([g.reshape(-1) for g in g_u])
        conflicts[encoder] = bool(F.cosine_similarity(flat_m, flat_u, dim=0) < 0)
        if not conflicts[encoder]:  # no conflict: the plain sum
            mixed[encoder] = flat_m + flat_u
        else:  # conflict: the min-norm combination, rescaled to the sum's size
            combined = _min_norm(flat_m, flat_u)
            mixed[encoder] = combined * (flat_m + flat_u).norm() / combined.norm().clamp_min(1e-20)
    total.backward()
    for encoder, flat in mixed.items():  # the encoders' gradients are overwritten
        start = 0
        for p in encoder.parameters():
            p.grad = flat[start : start + p.numel()].view_as(p).clone()
            start += p.numel()
    return conflicts


def modulation_step(model: AVNet, fusion_inputs: FusionInputs, mcr: MCRRegularizer, data):  # type: ignore[no-untyped-def]
    xa, xv, y = data
    model.zero_grad(set_to_none=True)
    mcr.zero_grad(set_to_none=True)
    out, _, _ = model(xa, xv)
    loss = F.cross_entropy(out, y) + mcr(fusion_inputs, y).loss  # added
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
    model, fusion_inputs, mcr, data = _setup()
    report = check_gradient_path(
        lambda: pareto_step(model, fusion_inputs, mcr, data, "final"),
        mcr,
        {"audio": model.audio_net, "visual": model.visual_net},
    )
    for path in report.values():
        assert not path.survives and path.ratio < 1e-6, str(path)
        assert "thrown away" in str(path) and "docs/integration.md" in str(path)


def test_added_to_the_multimodal_loss_mcr_joins_pareto_mixing() -> None:
    """Without a conflict the combination is the sum and MCR's gradient arrives unchanged; in a
    conflict the min-norm weights re-weight it (changed, not thrown away)."""
    model, fusion_inputs, mcr, data = _setup()
    conflicts = []
    report = check_gradient_path(
        lambda: conflicts.append(pareto_step(model, fusion_inputs, mcr, data, "multimodal")),
        mcr,
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
    model, fusion_inputs, mcr, data = _setup()
    report = check_gradient_path(
        lambda: modulation_step(model, fusion_inputs, mcr, data),
        mcr,
        {"audio": model.audio_net, "visual": model.visual_net},
    )
    for path in report.values():
        assert path.survives, str(path)
        assert 0 < path.ratio <= 1.0 + 1e-6, str(path)


def test_the_probe_leaves_gradients_and_randomness_as_they_were() -> None:
    model, fusion_inputs, mcr, data = _setup()
    pareto_step(model, fusion_inputs, mcr, data, "multimodal")
    before = [p.grad.clone() for p in model.audio_net.parameters()]
    rng = mcr.get_extra_state()
    check_gradient_path(
        lambda: pareto_step(model, fusion_inputs, mcr, data, "multimodal"),
        mcr,
        {"audio": model.audio_net},
    )
    for p, g in zip(model.audio_net.parameters(), before):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
    after = mcr.get_extra_state()
    assert after["seed"] == rng["seed"]
    for key, state in rng["generators"].items():
        assert torch.equal(after["generators"][key], state)
    assert mcr._probe is None


def test_a_step_without_mcr_is_an_error() -> None:
    model, _, mcr, data = _setup()
    xa, xv, y = data

    def plain() -> None:
        model.zero_grad()
        F.cross_entropy(model(xa, xv)[0], y).backward()

    with pytest.raises(RuntimeError, match="did not call MCR"):
        check_gradient_path(plain, mcr, {"audio": model.audio_net})
