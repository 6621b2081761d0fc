"""Three training loops written anew in the shape of published audio-visual balancing code, each
taking MCR with set-up lines and one line in the step, and no change to the model.

Every line that adding MCR needs is marked ``# added`` (``tests/integration/test_loops.py``
counts them; docs/integration.md shows them). ``mcr=None`` runs the loop as published.

1. Tuple-returning fusion modules under ``nn.DataParallel`` (the shape of OGM-GE's code): the
   fusion module returns ``(x, y, output)`` and the model ``(a, v, out)``.
2. Inline concatenation with Pareto gradient mixing (the shape of MMPareto's code): the head is
   called as ``self.head(torch.cat((a, v), 1))``; per-modality heads and losses; each encoder's
   gradient is rebuilt from the multimodal and its unimodal loss's gradients.
3. Prototype-based rebalancing (the shape of PMR's code, on the same tuple-returning model
   with a sum fusion): class prototypes of each modality's features, refreshed every epoch, and
   prototype losses weighted by how far each modality is ahead.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import FusionInputs, MCRRegularizer

B, C, D = 16, 4, 8
# what a user writes in MCRRegularizer(...) for these models (a fixed seed for the tests)
OPTIONS = {"num_classes": C, "latent_dims": (D, D), "seed": 0}


def batches(steps: int, seed: int = 1) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """``steps`` batches of (audio features, visual features, labels), labels tied to both."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        y = torch.randint(0, C, (B,), generator=g)
        xa = torch.randn(B, 20, generator=g) + 2.0 * F.one_hot(y, 20)
        xv = torch.randn(B, 30, generator=g) + 1.0 * F.one_hot(y, 30)
        yield xa, xv, y


def update(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def encoders() -> tuple[nn.Module, nn.Module]:
    audio = nn.Sequential(nn.Linear(20, D), nn.ReLU(), nn.Linear(D, D))
    visual = nn.Sequential(nn.Linear(30, D), nn.ReLU(), nn.Linear(D, D))
    return audio, visual


# --------------------------------------------------------------------------- 1. tuple fusion


class ConcatFusion(nn.Module):
    """Returns its inputs and the fused prediction, ``(x, y, output)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_out = nn.Linear(2 * D, C)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return x, y, self.fc_out(torch.cat((x, y), dim=1))


class TupleAVClassifier(nn.Module):
    """Two encoders and a fusion module that returns ``(x, y, output)``."""

    def __init__(self, fusion_module: nn.Module | None = None) -> None:
        super().__init__()
        self.audio_net, self.visual_net = encoders()
        self.fusion_module = fusion_module if fusion_module is not None else ConcatFusion()

    def forward(self, xa: Tensor, xv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, v = self.audio_net(xa), self.visual_net(xv)
        a, v, out = self.fusion_module(a, v)
        return a, v, out


def train_tuple_fusion(steps: int, *, with_mcr: bool) -> tuple[nn.Module, list[float]]:
    """Train ``steps`` steps; returns the model and the task loss of every step."""
    torch.manual_seed(0)
    net = TupleAVClassifier()
    mcr = None
    if with_mcr:
        mcr = MCRRegularizer(net.fusion_module, output=-1, **OPTIONS)  # added
    model = nn.DataParallel(net)
    params = [*model.parameters(), *(mcr.parameters() if mcr else [])]  # added
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    losses = []
    for xa, xv, y in batches(steps):
        a, v, out = model(xa, xv)
        loss = F.cross_entropy(out, y)
        losses.append(float(loss.detach()))
        if mcr is not None:
            loss = loss + mcr([a, v], y, out).loss  # added
        update(optimizer, loss)
    return net, losses


# --------------------------------------------------------------------------- 2. Pareto mixing


class InlineAVNet(nn.Module):
    """Encoders, a head called inline on their concatenation, and one head per modality."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_net, self.visual_net = encoders()
        self.head = nn.Linear(2 * D, C)
        self.head_audio, self.head_video = nn.Linear(D, C), nn.Linear(D, C)

    def forward(self, xa: Tensor, xv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, v = self.audio_net(xa), self.visual_net(xv)
        out = self.head(torch.cat((a, v), 1))
        return out, self.head_audio(a), self.head_video(v)


def min_norm(g1: Tensor, g2: Tensor) -> Tensor:
    """The minimum-norm point of the segment between two gradients (two-task MGDA)."""
    diff = g1 - g2
    alpha = ((g2 - g1) @ g2 / (diff @ diff).clamp_min(1e-20)).clamp(0.0, 1.0)
    return alpha * g1 + (1 - alpha) * g2


def pareto_setup(
    *, with_mcr: bool
) -> tuple[InlineAVNet, FusionInputs | None, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = InlineAVNet()
    fusion_inputs = None
    if with_mcr:
        fusion_inputs = FusionInputs(model.head, split=(D, D))  # added
        model.mcr = MCRRegularizer(fusion_inputs.head, **OPTIONS)  # added
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, fusion_inputs, optimizer


def pareto_step(
    model: InlineAVNet,
    fusion_inputs: FusionInputs | None,
    batch: tuple[Tensor, Tensor, Tensor],
    placement: str = "multimodal",
) -> dict[nn.Module, bool]:
    """One step up to ``optimizer.step()``; returns, per encoder, whether its two gradients
    conflicted (then the min-norm weights re-weight them). ``placement="final"`` adds MCR's loss
    to the final loss instead of the multimodal one: the mistake the probe catches."""
    xa, xv, y = batch
    model.zero_grad(set_to_none=True)
    out, out_a, out_v = model(xa, xv)
    loss_m = F.cross_entropy(out, y)
    loss_a, loss_v = F.cross_entropy(out_a, y), F.cross_entropy(out_v, y)
    if fusion_inputs is not None and placement == "multimodal":
        loss_m = loss_m + model.mcr(fusion_inputs, y).loss  # added
    total = loss_m + loss_a + loss_v
    if fusion_inputs is not None and placement == "final":  # the mistake the probe catches
        total = total + model.mcr(fusion_inputs, y).loss
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
            combined = min_norm(flat_m, flat_u)
            mixed[encoder] = combined * (flat_m + flat_u).norm() / combined.norm().clamp_min(1e-20)
    total.backward()
    for encoder, flat in mixed.items():  # the encoders' gradients are overwritten
        start = 0
        for p in encoder.parameters():
            p.grad = flat[start : start + p.numel()].view_as(p).clone()
            start += p.numel()
    return conflicts


def train_pareto(steps: int, *, with_mcr: bool) -> tuple[nn.Module, list[float]]:
    model, fusion_inputs, optimizer = pareto_setup(with_mcr=with_mcr)
    losses = []
    for batch in batches(steps):
        pareto_step(model, fusion_inputs, batch)
        optimizer.step()
        with torch.no_grad():
            losses.append(float(F.cross_entropy(model(*batch[:2])[0], batch[2])))
    return model, losses


# --------------------------------------------------------------------------- 3. prototypes


class SumFusion(nn.Module):
    """``(x, y, fc_x(x) + fc_y(y))``: the prediction as a sum of per-modality linear heads."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_x, self.fc_y = nn.Linear(D, C), nn.Linear(D, C)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return x, y, self.fc_x(x) + self.fc_y(y)


def prototypes(model: TupleAVClassifier, steps: int) -> tuple[Tensor, Tensor]:
    """Each modality's class means of its features over a pass of the data (no gradient)."""
    sums = [torch.zeros(C, D), torch.zeros(C, D)]
    counts = torch.zeros(C)
    with torch.no_grad():
        for xa, xv, y in batches(steps, seed=2):
            a, v, _ = model(xa, xv)
            for s, f in zip(sums, (a, v)):
                s.index_add_(0, y, f)
            counts += torch.bincount(y, minlength=C)
    return sums[0] / counts.clamp_min(1)[:, None], sums[1] / counts.clamp_min(1)[:, None]


def train_prototypes(steps: int, *, with_mcr: bool) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(0)
    model = TupleAVClassifier(SumFusion())
    mcr = None
    if with_mcr:
        model.mcr = mcr = MCRRegularizer(model.fusion_module, output=-1, **OPTIONS)  # added
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step, (xa, xv, y) in enumerate(batches(steps)):
        if step % 4 == 0:  # a new "epoch": refresh the prototypes
            proto_a, proto_v = prototypes(model, 2)
        a, v, out = model(xa, xv)
        score_a = -(torch.cdist(a, proto_a) ** 2)  # (B, C)
        score_v = -(torch.cdist(v, proto_v) ** 2)
        with torch.no_grad():  # how far each modality is ahead, on the prototype scores
            conf_a = torch.softmax(score_a, 1).gather(1, y[:, None]).sum()
            conf_v = torch.softmax(score_v, 1).gather(1, y[:, None]).sum()
            rho_a = torch.tanh(torch.relu(conf_v / conf_a - 1))
            rho_v = torch.tanh(torch.relu(conf_a / conf_v - 1))
        loss = F.cross_entropy(out, y)
        losses.append(float(loss.detach()))
        loss = loss + rho_a * F.cross_entropy(score_a, y) + rho_v * F.cross_entropy(score_v, y)
        if mcr is not None:
            loss = loss + mcr([a, v], y, out).loss  # added
        update(optimizer, loss)
    return model, losses
