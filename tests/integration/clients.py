"""Small stand-ins for published multimodal training codebases, one per family of client shape.

Each stand-in is written anew in the shape of the named codebase (how its model calls the fusion,
what the fusion returns, what the loop does with the gradients), at tiny sizes; no code is copied.
Every line that adding MCR takes is marked ``# added``; nothing else in the model or the loop
changes, except for LMF, whose fusion is inline code in ``forward``: there the smallest model edit
that MCR needs is made and marked ``# edit``. ``reference`` computes the same step by hand (the
latents taken directly, the fusion written as a function, an MCR with the same seed), so that the
suite can compare the encoders' gradients. ``tests/integration/test_conformance.py`` runs them and
docs/integration.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import FusionInputs, MCRRegularizer
from mcr_reg.terms import Contrastive

B, C, D = 8, 3, 6
SEED = 0  # MCR's seed in every stand-in, so that a reference MCR draws the same permutations


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def encoder_grads(modules: Sequence[nn.Module]) -> list[Tensor]:
    return [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for m in modules
        for p in m.parameters()
    ]


@dataclass
class Client:
    """One stand-in: how to build it, one training step (up to ``optimizer.step()``), a hand-made
    reference of that step, its encoders, and the mistakes a user plausibly makes on it."""

    name: str
    repository: str
    family: str
    setup: Callable[..., Any]
    step: Callable[..., Any]
    reference: Callable[[], list[Tensor]]
    encoders: Callable[[Any], list[nn.Module]]
    set_up_lines: int
    step_lines: int
    edit_lines: int = 0
    mistakes: dict[str, Callable[[], None]] = field(default_factory=dict)


# =========================================================================== MultiBench


class ListConcat(nn.Module):
    """Fusion of a list of modalities by flattening and concatenating (list-input library)."""

    def forward(self, modalities: list[Tensor]) -> Tensor:
        return torch.cat([torch.flatten(m, start_dim=1) for m in modalities], dim=1)


class ListLowRankTensorFusion(nn.Module):
    """Low-rank tensor fusion of a list of modalities: one factor per modality on ``[1; z]``,
    the product over modalities, a weighted sum over the rank."""

    def __init__(self, dims: Sequence[int], out: int, rank: int = 2) -> None:
        super().__init__()
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(rank, d + 1, out) * 0.3) for d in dims
        )
        self.rank_weights = nn.Parameter(torch.randn(1, rank) * 0.3)
        self.bias = nn.Parameter(torch.zeros(1, out))

    def forward(self, modalities: list[Tensor]) -> Tensor:
        fused: Tensor | None = None
        for z, factor in zip(modalities, self.factors):
            ones = torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
            part = torch.matmul(torch.cat([ones, z], dim=1), factor)  # (rank, B, out)
            fused = part if fused is None else fused * part
        assert fused is not None
        return torch.matmul(self.rank_weights, fused.permute(1, 0, 2)).squeeze(1) + self.bias


class MMDL(nn.Module):
    """Encoders (one per modality), a fusion module called on the list of their outputs, then a
    separate head: the training structure of the list-input fusion library."""

    def __init__(self, encoders: list[nn.Module], fuse: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.fuse, self.head = fuse, head

    def forward(self, inputs: list[Tensor]) -> Tensor:
        outs = [encoder(x) for encoder, x in zip(self.encoders, inputs)]
        return self.head(self.fuse(outs))


def _multibench_data() -> tuple[list[Tensor], Tensor]:
    g = _gen(1)
    return [torch.randn(B, 5, generator=g), torch.randn(B, 7, generator=g)], torch.arange(B) % C


def _multibench_model(kind: str) -> MMDL:
    torch.manual_seed(0)
    encoders = [
        nn.Sequential(nn.Linear(5, D), nn.ReLU()),
        nn.Sequential(nn.Linear(7, D), nn.ReLU()),
    ]
    if kind == "concat":
        return MMDL(
            encoders, ListConcat(), nn.Sequential(nn.Linear(2 * D, 8), nn.ReLU(), nn.Linear(8, C))
        )
    return MMDL(encoders, ListLowRankTensorFusion((D, D), 8), nn.Linear(8, C))


def multibench_setup(kind: str, with_mcr: bool = True) -> dict[str, Any]:
    model = _multibench_model(kind)
    state: dict[str, Any] = {"model": model}
    if with_mcr:
        captured = FusionInputs(model.fuse, then=model.head)  # added
        model.mcr = MCRRegularizer(
            captured.head, num_classes=C, latent_dims=(D, D), seed=SEED
        )  # added
        state["captured"] = captured
    state["optimizer"] = torch.optim.SGD(model.parameters(), lr=0.1)
    return state


def multibench_step(state: dict[str, Any]) -> None:
    model, optimizer = state["model"], state["optimizer"]
    inputs, y = _multibench_data()
    out = model(inputs)
    loss = F.cross_entropy(out, y)
    if "captured" in state:
        loss = loss + model.mcr(state["captured"], y).loss  # added
    optimizer.zero_grad()
    loss.backward()


def multibench_reference(kind: str) -> list[Tensor]:
    model = _multibench_model(kind)
    inputs, y = _multibench_data()
    zs = [encoder(x) for encoder, x in zip(model.encoders, inputs)]

    def head(*z: Tensor) -> Tensor:
        return model.head(model.fuse(list(z)))

    mcr = MCRRegularizer(head, num_classes=C, latent_dims=(D, D), seed=SEED)
    logits = head(*zs)
    (F.cross_entropy(logits, y) + mcr(zs, y, logits).loss).backward()
    return encoder_grads(list(model.encoders))


def multibench_mistake_fusion_as_head() -> None:
    """The fusion module given as the head, with the latents as a list: MCR calls it with the
    latents one by one, which its signature does not take."""
    model = _multibench_model("concat")
    captured = FusionInputs(model.fuse)
    mcr = MCRRegularizer(model.fuse, num_classes=C, seed=SEED)
    inputs, y = _multibench_data()
    out = model(inputs)
    mcr(captured.record().args[0], y, out)


def multibench_mistake_no_then() -> None:
    """Recorded without then=: the fusion module's output is features, not the prediction."""
    model = _multibench_model("concat")
    captured = FusionInputs(model.fuse)
    mcr = MCRRegularizer(captured.head, num_classes=C, seed=SEED)
    inputs, y = _multibench_data()
    model(inputs)
    mcr(captured, y)


def multibench_mistake_latents_property() -> None:
    """``captured.latents`` on a call that takes a list: only the object itself reads it."""
    model = _multibench_model("concat")
    captured = FusionInputs(model.fuse, then=model.head)
    model(_multibench_data()[0])
    captured.latents  # noqa: B018


# =========================================================================== LMF


class SubNet(nn.Module):
    """A modality's pre-fusion subnetwork (normalisation, two layers)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


LMF_IN, LMF_HIDDEN, RANK = (4, 5, 6), (6, 6, 6), 3


class LMFAsPublished(nn.Module):
    """Subnets, then the low-rank fusion written inline in ``forward`` with the model's own
    factor parameters; one regression output (a sentiment score)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_subnet, self.video_subnet, self.text_subnet = (
            SubNet(i, h) for i, h in zip(LMF_IN, LMF_HIDDEN)
        )
        self.audio_factor, self.video_factor, self.text_factor = (
            nn.Parameter(torch.randn(RANK, h + 1, 1) * 0.3) for h in LMF_HIDDEN
        )
        self.fusion_weights = nn.Parameter(torch.randn(1, RANK) * 0.3)
        self.fusion_bias = nn.Parameter(torch.zeros(1, 1))

    def forward(self, audio_x: Tensor, video_x: Tensor, text_x: Tensor) -> Tensor:
        hs = [self.audio_subnet(audio_x), self.video_subnet(video_x), self.text_subnet(text_x)]
        ones = torch.ones(audio_x.shape[0], 1)
        fused = torch.ones(())
        for h, factor in zip(hs, (self.audio_factor, self.video_factor, self.text_factor)):
            fused = fused * torch.matmul(torch.cat([ones, h], dim=1), factor)
        return (
            torch.matmul(self.fusion_weights, fused.permute(1, 0, 2)).squeeze(1) + self.fusion_bias
        )


class LowRankFusion(nn.Module):  # edit: the inline fusion code of forward, moved into a module
    def __init__(self) -> None:  # edit
        super().__init__()  # edit
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(RANK, h + 1, 1) * 0.3) for h in LMF_HIDDEN
        )  # edit
        self.fusion_weights = nn.Parameter(torch.randn(1, RANK) * 0.3)  # edit
        self.fusion_bias = nn.Parameter(torch.zeros(1, 1))  # edit

    def forward(self, *hs: Tensor) -> Tensor:  # edit
        ones, fused = torch.ones(hs[0].shape[0], 1), torch.ones(())  # edit
        for h, factor in zip(hs, self.factors):  # edit
            fused = fused * torch.matmul(torch.cat([ones, h], dim=1), factor)  # edit
        return (
            torch.matmul(self.fusion_weights, fused.permute(1, 0, 2)).squeeze(1) + self.fusion_bias
        )  # edit


class LMFEdited(nn.Module):
    """LMF with the smallest edit MCR needs: the fusion code is a module that forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_subnet, self.video_subnet, self.text_subnet = (
            SubNet(i, h) for i, h in zip(LMF_IN, LMF_HIDDEN)
        )
        self.fusion = LowRankFusion()  # edit

    def forward(self, audio_x: Tensor, video_x: Tensor, text_x: Tensor) -> Tensor:
        hs = [self.audio_subnet(audio_x), self.video_subnet(video_x), self.text_subnet(text_x)]
        return self.fusion(*hs)  # edit


def _lmf_data() -> tuple[list[Tensor], Tensor]:
    g = _gen(2)
    xs = [torch.randn(B, d, generator=g) for d in LMF_IN]
    return xs, torch.randn(B, generator=g).clamp(-3, 3)


def _lmf_model() -> LMFEdited:
    torch.manual_seed(0)
    return LMFEdited()


def lmf_setup(with_mcr: bool = True) -> dict[str, Any]:
    model = _lmf_model()
    state: dict[str, Any] = {"model": model}
    if with_mcr:
        captured = FusionInputs(model.fusion)  # added
        model.mcr = MCRRegularizer(
            captured.head, task="regression", latent_dims=LMF_HIDDEN, seed=SEED
        )  # added
        state["captured"] = captured
    state["optimizer"] = torch.optim.Adam(model.parameters(), lr=1e-3)
    return state


def lmf_step(state: dict[str, Any]) -> None:
    model, optimizer = state["model"], state["optimizer"]
    xs, y = _lmf_data()
    output = model(*xs)
    loss = F.l1_loss(output.squeeze(1), y)
    if "captured" in state:
        loss = loss + model.mcr(state["captured"], y).loss  # added
    optimizer.zero_grad()
    loss.backward()


def lmf_reference() -> list[Tensor]:
    model = _lmf_model()
    xs, y = _lmf_data()
    hs = [model.audio_subnet(xs[0]), model.video_subnet(xs[1]), model.text_subnet(xs[2])]
    mcr = MCRRegularizer(model.fusion, task="regression", latent_dims=LMF_HIDDEN, seed=SEED)
    output = model.fusion(*hs)
    (F.l1_loss(output.squeeze(1), y) + mcr(hs, y, output).loss).backward()
    return encoder_grads([model.audio_subnet, model.video_subnet, model.text_subnet])


def lmf_mistake_capture_a_subnet() -> None:
    """As published there is no fusion module: recording a subnet gives one input, and the
    message points to the smallest edit."""
    torch.manual_seed(0)
    model = LMFAsPublished()
    captured = FusionInputs(model.audio_subnet)
    mcr = MCRRegularizer(captured.head, task="regression", seed=SEED)
    xs, y = _lmf_data()
    output = model(*xs)
    mcr(captured, y, output)


# =========================================================================== MulT


class CrossModalBlock(nn.Module):
    """One cross-modal attention layer on sequence-first tensors ``(T, B, D)``: the target
    sequence attends to the source sequence, then a feed-forward layer."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads=2)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, target: Tensor, source: Tensor, source_mask: Tensor | None = None) -> Tensor:
        attended, _ = self.attention(target, source, source, key_padding_mask=source_mask)
        x = self.norm1(target + attended)
        return self.norm2(x + self.ff(x))


class CrossModalFusion(nn.Module):
    """Language attends to audio and audio to language; the last time step of each, then an
    output layer: the modalities meet before pooling (early, cross-modal fusion)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.l_with_a, self.a_with_l = CrossModalBlock(dim), CrossModalBlock(dim)
        self.out = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def forward(self, x_l: Tensor, x_a: Tensor, a_mask: Tensor) -> Tensor:
        h_l = self.l_with_a(x_l, x_a, a_mask)  # (T_l, B, D)
        h_a = self.a_with_l(x_a, x_l)  # (T_a, B, D)
        lengths = (~a_mask).sum(1)  # the last real step of each audio sequence
        last_a = h_a[lengths - 1, torch.arange(h_a.shape[1])]
        return self.out(torch.cat([h_l[-1], last_a], dim=-1))


T_L, T_A, MULT_D = 5, 7, 8


class MulTLike(nn.Module):
    """Temporal Conv1d projections of each modality's features, made sequence-first for the
    cross-modal layers, and a regression output."""

    def __init__(self) -> None:
        super().__init__()
        self.proj_l = nn.Conv1d(10, MULT_D, kernel_size=1)
        self.proj_a = nn.Conv1d(4, MULT_D, kernel_size=3, padding=1)
        self.crossmodal = CrossModalFusion(MULT_D)

    def forward(self, x_l: Tensor, x_a: Tensor, a_mask: Tensor) -> Tensor:
        p_l = self.proj_l(x_l.transpose(1, 2)).permute(2, 0, 1)  # (B, T, d) -> (T, B, D)
        p_a = self.proj_a(x_a.transpose(1, 2)).permute(2, 0, 1)
        return self.crossmodal(p_l, p_a, a_mask)


def _mult_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = _gen(3)
    lengths = torch.tensor([7, 3, 5, 1, 6, 7, 2, 4])
    mask = torch.arange(T_A)[None, :] >= lengths[:, None]  # True: padding
    return (
        torch.randn(B, T_L, 10, generator=g),
        torch.randn(B, T_A, 4, generator=g),
        mask,
        torch.randn(B, generator=g),
    )


def _mult_model() -> MulTLike:
    torch.manual_seed(0)
    return MulTLike()


def mult_setup(with_mcr: bool = True) -> dict[str, Any]:
    model = _mult_model()
    state: dict[str, Any] = {"model": model}
    if with_mcr:
        captured = FusionInputs(model.crossmodal)  # added
        model.mcr = MCRRegularizer(
            captured.head, task="regression", latent_dims=(MULT_D, MULT_D), seed=SEED
        )  # added
        state["captured"] = captured
    state["optimizer"] = torch.optim.Adam(model.parameters(), lr=1e-3)
    return state


def mult_step(state: dict[str, Any]) -> None:
    model, optimizer = state["model"], state["optimizer"]
    x_l, x_a, mask, y = _mult_data()
    preds = model(x_l, x_a, mask)
    loss = F.l1_loss(preds.squeeze(-1), y)
    if "captured" in state:
        loss = loss + model.mcr(state["captured"], y).loss  # added
    optimizer.zero_grad()
    loss.backward()


def mult_reference() -> list[Tensor]:
    """The latents batch-first with the padding mask carried as an extra channel of the audio
    latent (so that it moves with the audio rows), the fusion called sequence-first."""
    model = _mult_model()
    x_l, x_a, mask, y = _mult_data()
    p_l = model.proj_l(x_l.transpose(1, 2)).transpose(1, 2)  # (B, T, D)
    p_a = model.proj_a(x_a.transpose(1, 2)).transpose(1, 2)
    carried = torch.cat([p_a, mask.unsqueeze(-1).to(p_a.dtype)], dim=-1)

    def head(z_l: Tensor, z_a: Tensor) -> Tensor:
        return model.crossmodal(
            z_l.transpose(0, 1), z_a[..., :MULT_D].transpose(0, 1), z_a[..., MULT_D] > 0.5
        )

    mcr = MCRRegularizer(head, task="regression", seed=SEED, contrastive=False, unimodal=False)
    own = MCRRegularizer(
        lambda a, b: a, task="regression", latent_dims=(MULT_D, MULT_D), seed=SEED, mipd=False
    )  # the contrastive and unimodal terms on the plain latents
    preds = model.crossmodal(p_l.transpose(0, 1), p_a.transpose(0, 1), mask)
    loss = F.l1_loss(preds.squeeze(-1), y) + mcr([p_l, carried], y, preds).loss
    loss = loss + _own_terms(own, [p_l, p_a], y)
    loss.backward()
    return encoder_grads([model.proj_l, model.proj_a])


def _own_terms(own: MCRRegularizer, zs: list[Tensor], y: Tensor) -> Tensor:
    return own(zs, y).loss


def mult_mistake_latents_as_they_are() -> None:
    """Sequence-first latents passed as a plain list: MCR names both axes."""
    model = _mult_model()
    x_l, x_a, mask, y = _mult_data()
    p_l = model.proj_l(x_l.transpose(1, 2)).permute(2, 0, 1)
    p_a = model.proj_a(x_a.transpose(1, 2)).permute(2, 0, 1)
    mcr = MCRRegularizer(lambda a, b: model.crossmodal(a, b, mask), task="regression", seed=SEED)
    mcr([p_l, p_a], y)


def mult_mistake_ambiguous_mask() -> None:
    """Sequences of one length: the mask could belong to either, so it must be declared."""
    model = _mult_model()
    captured = FusionInputs(model.crossmodal)
    mcr = MCRRegularizer(captured.head, task="regression", latent_dims=(MULT_D, MULT_D), seed=SEED)
    x_l, x_a, mask, y = _mult_data()
    model(x_l[:, :1].expand(B, T_A, 10), x_a, mask)
    mcr(captured, y)


# =========================================================================== OGM-GE


class TupleConcatFusion(nn.Module):
    """Returns ``(x, y, output)``: the inputs and the prediction of a linear layer on their
    concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_out = nn.Linear(2 * D, C)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return x, y, self.fc_out(torch.cat((x, y), dim=1))


class AVClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio_net = nn.Sequential(nn.Linear(20, D), nn.ReLU())
        self.visual_net = nn.Sequential(nn.Linear(30, D), nn.ReLU())
        self.fusion_module = TupleConcatFusion()

    def forward(self, audio: Tensor, visual: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, v = self.audio_net(audio), self.visual_net(visual)
        a, v, out = self.fusion_module(a, v)
        return a, v, out


def _ogm_data() -> tuple[Tensor, Tensor, Tensor]:
    g = _gen(4)
    return torch.randn(B, 20, generator=g), torch.randn(B, 30, generator=g), torch.arange(B) % C


def _ogm_model() -> AVClassifier:
    torch.manual_seed(0)
    return AVClassifier()


def ogm_coefficients(model: AVClassifier, a: Tensor, v: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The on-the-fly modulation: the modality whose half of the head is more confident on the
    true class is slowed down."""
    with torch.no_grad():
        w, b = model.fusion_module.fc_out.weight, model.fusion_module.fc_out.bias
        out_a = a @ w[:, :D].T + b / 2
        out_v = v @ w[:, D:].T + b / 2
        score_a = torch.softmax(out_a, 1).gather(1, y[:, None]).sum()
        score_v = torch.softmax(out_v, 1).gather(1, y[:, None]).sum()
        ratio = score_a / score_v
        coeff_a = 1 - torch.tanh(0.1 * torch.relu(ratio - 1))
        coeff_v = 1 - torch.tanh(0.1 * torch.relu(1 / ratio - 1))
    return coeff_a, coeff_v


def ogm_setup(with_mcr: bool = True) -> dict[str, Any]:
    model = _ogm_model()
    state: dict[str, Any] = {"model": model, "noise": False}
    mcr = None
    if with_mcr:
        mcr = MCRRegularizer(
            model.fusion_module, output=-1, num_classes=C, latent_dims=(D, D), seed=SEED
        )  # added
    state["mcr"] = mcr
    state["optimizer"] = torch.optim.SGD(
        [*model.parameters(), *(mcr.parameters() if mcr else [])], lr=0.1
    )  # added
    return state


def ogm_step(state: dict[str, Any]) -> None:
    model, optimizer, mcr = state["model"], state["optimizer"], state["mcr"]
    audio, visual, y = _ogm_data()
    a, v, out = model(audio, visual)
    loss = F.cross_entropy(out, y)
    if mcr is not None:
        loss = loss + mcr([a, v], y, out).loss  # added
    optimizer.zero_grad()
    loss.backward()
    coeff_a, coeff_v = ogm_coefficients(model, a, v, y)
    for encoder, coeff in ((model.audio_net, coeff_a), (model.visual_net, coeff_v)):
        for p in encoder.parameters():
            p.grad = p.grad * coeff
            if state["noise"]:  # generalisation enhancement: Gaussian noise of the gradient's size
                p.grad = p.grad + torch.zeros_like(p.grad).normal_(0, float(p.grad.std()) + 1e-8)


def ogm_reference() -> list[Tensor]:
    model = _ogm_model()
    audio, visual, y = _ogm_data()
    a, v = model.audio_net(audio), model.visual_net(visual)
    mcr = MCRRegularizer(
        lambda x, z: model.fusion_module(x, z)[2], num_classes=C, latent_dims=(D, D), seed=SEED
    )
    out = model.fusion_module.fc_out(torch.cat((a, v), 1))
    (F.cross_entropy(out, y) + mcr([a, v], y, out).loss).backward()
    coeff_a, coeff_v = ogm_coefficients(model, a, v, y)
    return [g * coeff_a for g in encoder_grads([model.audio_net])] + [
        g * coeff_v for g in encoder_grads([model.visual_net])
    ]


def ogm_mistake_no_output() -> None:
    """The tuple-returning fusion module without output=."""
    model = _ogm_model()
    mcr = MCRRegularizer(model.fusion_module, num_classes=C, latent_dims=(D, D), seed=SEED)
    audio, visual, y = _ogm_data()
    a, v, out = model(audio, visual)
    mcr([a, v], y, out)


# =========================================================================== Lightning + GMU


class BimodalGMU(nn.Module):
    """Gated multimodal unit: each modality through tanh, a sigmoid gate from both decides, per
    unit, how much of each passes."""

    def __init__(self, d_text: int, d_audio: int, hidden: int) -> None:
        super().__init__()
        self.text_proj, self.audio_proj = nn.Linear(d_text, hidden), nn.Linear(d_audio, hidden)
        self.gate = nn.Linear(d_text + d_audio, hidden)

    def forward(self, text: Tensor, audio: Tensor) -> Tensor:
        z = torch.sigmoid(self.gate(torch.cat([text, audio], dim=-1)))
        return z * torch.tanh(self.text_proj(text)) + (1 - z) * torch.tanh(self.audio_proj(audio))


class LitLikeModule:
    """The interface of a LightningModule the stand-in uses (Lightning itself is not installed
    here): ``training_step`` returns the loss, ``configure_optimizers`` the optimizer."""


class TextAudioGMU(nn.Module, LitLikeModule):
    """A LightningModule shape: embedding tables as the two encoders, a GMU, dropout and a
    linear layer inline in forward, one logit, a binary target."""

    def __init__(self, with_mcr: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.text_embeddings, self.audio_embeddings = nn.Embedding(20, 7), nn.Embedding(20, 5)
        self.gmu = BimodalGMU(7, 5, 6)
        self.dropout, self.fc = nn.Dropout(dropout), nn.Linear(6, 1)
        self.criterion = nn.BCEWithLogitsLoss()
        if with_mcr:
            self.captured = FusionInputs(self.gmu)  # added
            self.mcr = MCRRegularizer(
                self.fused_logit,
                task="binary",
                latent_dims=(7, 5),
                seed=SEED,
                contrastive=Contrastive(projection_dim=6),
            )  # added

    def fused_logit(self, text: Tensor, audio: Tensor) -> Tensor:  # added
        return self.fc(self.dropout(self.gmu(text, audio))).squeeze(1)  # added

    def forward(self, ids: Tensor) -> Tensor:
        x = self.gmu(self.text_embeddings(ids), self.audio_embeddings(ids))
        return self.fc(self.dropout(x)).squeeze(1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        ids, y = batch
        pred = self(ids)
        loss = self.criterion(pred, y.float())
        if hasattr(self, "mcr"):
            loss = loss + self.mcr(self.captured.latents, y.float(), pred).loss  # added
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def _lit_data() -> tuple[Tensor, Tensor]:
    g = _gen(5)
    return torch.randint(0, 20, (B,), generator=g), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])


def lit_setup(with_mcr: bool = True) -> dict[str, Any]:
    torch.manual_seed(0)
    module = TextAudioGMU(with_mcr)
    return {"model": module, "optimizer": module.configure_optimizers()}


def lit_step(state: dict[str, Any]) -> None:
    """What Lightning's automatic optimisation does around training_step."""
    module, optimizer = state["model"], state["optimizer"]
    torch.manual_seed(7)  # the dropout masks of this step
    optimizer.zero_grad()
    loss = module.training_step(_lit_data(), 0)
    loss.backward()


def lit_reference() -> list[Tensor]:
    torch.manual_seed(0)
    module = TextAudioGMU(with_mcr=False)
    mcr = MCRRegularizer(
        module.fused_logit,
        task="binary",
        latent_dims=(7, 5),
        seed=SEED,
        contrastive=Contrastive(projection_dim=6),
    )
    torch.manual_seed(7)
    ids, y = _lit_data()
    zt, za = module.text_embeddings(ids), module.audio_embeddings(ids)
    pred = module.fused_logit(zt, za)
    (module.criterion(pred, y.float()) + mcr([zt, za], y.float(), pred).loss).backward()
    return encoder_grads([module.text_embeddings, module.audio_embeddings])


def lit_mistake_frozen_embeddings() -> None:
    """Pretrained embeddings frozen, as in the published module: the latents have no gradient
    and the audit says MCR cannot move those encoders."""
    state = lit_setup()
    state["model"].text_embeddings.weight.requires_grad_(False)
    state["model"].audio_embeddings.weight.requires_grad_(False)
    lit_step(state)


class GenreGMU(nn.Module):
    """Movie genres from text and poster features: an encoder each, a gated unit and a separate
    classifier with one logit per genre (several genres per film)."""

    def __init__(self) -> None:
        super().__init__()
        self.text_enc, self.image_enc = nn.Linear(10, 7), nn.Linear(12, 5)
        self.gmu, self.classifier = BimodalGMU(7, 5, 6), nn.Linear(6, 4)

    def forward(self, text: Tensor, image: Tensor) -> Tensor:
        return self.classifier(self.gmu(self.text_enc(text), self.image_enc(image)))  # type: ignore[no-any-return]


def _genre_data() -> tuple[Tensor, Tensor, Tensor]:
    g = _gen(6)
    text, image = torch.randn(B, 10, generator=g), torch.randn(B, 12, generator=g)
    return text, image, (torch.rand(B, 4, generator=g) > 0.5).float()


def genre_setup(with_mcr: bool = True) -> dict[str, Any]:
    torch.manual_seed(0)
    model = GenreGMU()
    state: dict[str, Any] = {"model": model}
    if with_mcr:
        state["captured"] = FusionInputs(model.gmu)  # added
        model.mcr = MCRRegularizer(lambda t, i: model.classifier(model.gmu(t, i)), task="multilabel", num_classes=4, latent_dims=(7, 5), contrastive=Contrastive(projection_dim=6), seed=SEED)  # added  # fmt: skip
    state["optimizer"] = torch.optim.Adam(model.parameters(), lr=1e-3)
    return state


def genre_step(state: dict[str, Any]) -> None:
    model, optimizer = state["model"], state["optimizer"]
    text, image, genres = _genre_data()
    logits = model(text, image)
    loss = F.binary_cross_entropy_with_logits(logits, genres)
    if hasattr(model, "mcr"):
        loss = loss + model.mcr(state["captured"], genres, logits).loss  # added
    optimizer.zero_grad()
    loss.backward()


def genre_reference() -> list[Tensor]:
    torch.manual_seed(0)
    model = GenreGMU()
    mcr = MCRRegularizer(
        lambda t, i: model.classifier(model.gmu(t, i)), task="multilabel", num_classes=4,
        latent_dims=(7, 5), contrastive=Contrastive(projection_dim=6), seed=SEED,
    )  # fmt: skip
    text, image, genres = _genre_data()
    zt, zi = model.text_enc(text), model.image_enc(image)
    logits = model.classifier(model.gmu(zt, zi))
    (F.binary_cross_entropy_with_logits(logits, genres) + mcr([zt, zi], genres, logits).loss).backward()
    return encoder_grads([model.text_enc, model.image_enc])


def genre_mistake_classification_task() -> None:
    """The genre head built as a classifier (the default task): MCR names the multi-label
    task."""
    state = genre_setup(with_mcr=False)
    model = state["model"]
    mcr = MCRRegularizer(lambda t, i: model.classifier(model.gmu(t, i)), num_classes=4, seed=SEED)
    text, image, genres = _genre_data()
    mcr([model.text_enc(text), model.image_enc(image)], genres)


# =========================================================================== Remix


class RemixAVClassifier(nn.Module):
    """Concatenation and a linear head inline in forward, one head per modality, and the
    latents returned with the predictions; ``mode`` zeroes one modality's features."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_net = nn.Sequential(nn.Linear(20, D), nn.ReLU())
        self.visual_net = nn.Sequential(nn.Linear(30, D), nn.ReLU())
        self.head = nn.Linear(2 * D, C)
        self.head_audio, self.head_video = nn.Linear(D, C), nn.Linear(D, C)

    def forward(self, audio: Tensor, visual: Tensor, mode: str | None = None) -> tuple[Tensor, ...]:
        a, v = self.audio_net(audio), self.visual_net(visual)
        if mode == "video":
            a = torch.zeros_like(a)
        elif mode == "audio":
            v = torch.zeros_like(v)
        out = self.head(torch.cat((a, v), 1))
        return out, self.head_audio(a), self.head_video(v), a, v


def _remix_model() -> RemixAVClassifier:
    torch.manual_seed(0)
    return RemixAVClassifier()


def remix_setup(with_mcr: bool = True) -> dict[str, Any]:
    model = _remix_model()
    state: dict[str, Any] = {"model": model}
    if with_mcr:
        model.mcr = MCRRegularizer(
            lambda a, v: model.head(torch.cat((a, v), 1)),
            num_classes=C,
            latent_dims=(D, D),
            seed=SEED,
        )  # added
    state["optimizer"] = torch.optim.SGD(model.parameters(), lr=0.1)
    return state


def remix_step(state: dict[str, Any]) -> None:
    model, optimizer = state["model"], state["optimizer"]
    audio, visual, y = _ogm_data()
    out, out_a, out_v, a, v = model(audio, visual)
    loss = F.cross_entropy(out, y) + F.cross_entropy(out_a, y) + F.cross_entropy(out_v, y)
    if hasattr(model, "mcr"):
        loss = loss + model.mcr([a, v], y, out).loss  # added
    optimizer.zero_grad()
    loss.backward()


def remix_reference() -> list[Tensor]:
    model = _remix_model()
    audio, visual, y = _ogm_data()
    a, v = model.audio_net(audio), model.visual_net(visual)
    mcr = MCRRegularizer(
        lambda x, z: model.head(torch.cat((x, z), 1)), num_classes=C, latent_dims=(D, D), seed=SEED
    )
    out = model.head(torch.cat((a, v), 1))
    loss = F.cross_entropy(out, y) + F.cross_entropy(model.head_audio(a), y)
    loss = loss + F.cross_entropy(model.head_video(v), y) + mcr([a, v], y, out).loss
    loss.backward()
    return encoder_grads([model.audio_net, model.visual_net])


def remix_mistake_zeroed_modality() -> None:
    """A step in one of the loop's single-modality modes: the zeroed latent has no gradient."""
    state = remix_setup()
    model = state["model"]
    audio, visual, y = _ogm_data()
    out, _, _, a, v = model(audio, visual, mode="audio")
    model.mcr([a, v], y, out)


# =========================================================================== MMPareto


def pareto_reference() -> list[Tensor]:
    """The Pareto step of ``tests/integration/loops.py`` with MCR's loss in the multimodal loss,
    the latents taken directly and the head written as a function."""
    from tests.integration import loops

    model, _, _ = loops.pareto_setup(with_mcr=False)
    xa, xv, y = next(loops.batches(1))
    a, v = model.audio_net(xa), model.visual_net(xv)
    mcr = MCRRegularizer(lambda x, z: model.head(torch.cat((x, z), 1)), **loops.OPTIONS)
    out = model.head(torch.cat((a, v), 1))
    loss_m = F.cross_entropy(out, y) + mcr([a, v], y, out).loss
    grads = []
    for encoder, head in (
        (model.audio_net, model.head_audio),
        (model.visual_net, model.head_video),
    ):
        params = list(encoder.parameters())
        feature = a if encoder is model.audio_net else v
        g_m = torch.cat(
            [g.reshape(-1) for g in torch.autograd.grad(loss_m, params, retain_graph=True)]
        )
        g_u = torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(
                    F.cross_entropy(head(feature), y), params, retain_graph=True
                )
            ]
        )
        if F.cosine_similarity(g_m, g_u, dim=0) >= 0:
            flat = g_m + g_u
        else:
            combined = loops.min_norm(g_m, g_u)
            flat = combined * (g_m + g_u).norm() / combined.norm().clamp_min(1e-20)
        grads += list(flat.split([p.numel() for p in params]))
    return [
        g.view_as(p)
        for g, p in zip(grads, [*model.audio_net.parameters(), *model.visual_net.parameters()])
    ]


def pareto_setup(with_mcr: bool = True) -> dict[str, Any]:
    from tests.integration import loops

    model, fusion_inputs, optimizer = loops.pareto_setup(with_mcr=with_mcr)
    return {"model": model, "fusion_inputs": fusion_inputs, "optimizer": optimizer}


def pareto_step(state: dict[str, Any]) -> None:
    from tests.integration import loops

    loops.pareto_step(state["model"], state["fusion_inputs"], next(loops.batches(1)))


# =========================================================================== the suite


CLIENTS = [
    Client(
        "list-input fusion, separate head (Concat)", "pliang279/MultiBench",
        "late fusion, list-input fusion library",
        lambda with_mcr=True: multibench_setup("concat", with_mcr), multibench_step,
        lambda: multibench_reference("concat"), lambda s: list(s["model"].encoders), 2, 1,
        mistakes={
            "the fusion module as the head": multibench_mistake_fusion_as_head,
            "the fusion module recorded without its head": multibench_mistake_no_then,
            "captured.latents of a list call": multibench_mistake_latents_property,
        },
    ),
    Client(
        "list-input low-rank tensor fusion, separate head", "pliang279/MultiBench",
        "tensor / low-rank fusion",
        lambda with_mcr=True: multibench_setup("lowrank", with_mcr), multibench_step,
        lambda: multibench_reference("lowrank"), lambda s: list(s["model"].encoders), 2, 1,
    ),
    Client(
        "low-rank fusion inline in forward, regression", "Justin1904/Low-rank-Multimodal-Fusion",
        "tensor / low-rank fusion, regression head",
        lmf_setup, lmf_step, lmf_reference,
        lambda s: [s["model"].audio_subnet, s["model"].video_subnet, s["model"].text_subnet], 2, 1,
        edit_lines=13,
        mistakes={"a subnet recorded (no fusion module as published)": lmf_mistake_capture_a_subnet},
    ),
    Client(
        "cross-modal attention on sequence-first latents with a padding mask, regression",
        "yaohungt/Multimodal-Transformer", "cross-modal transformer (early fusion), regression head",
        mult_setup, mult_step, mult_reference, lambda s: [s["model"].proj_l, s["model"].proj_a], 2, 1,
        mistakes={
            "sequence-first latents passed as they are": mult_mistake_latents_as_they_are,
            "a padding mask that fits both sequences": mult_mistake_ambiguous_mask,
        },
    ),
    Client(
        "tuple-returning fusion module, on-the-fly gradient modulation", "GeWu-Lab/OGM-GE_CVPR2022",
        "late fusion, gradient modulation loop",
        ogm_setup, ogm_step, ogm_reference, lambda s: [s["model"].audio_net, s["model"].visual_net], 2, 1,
        mistakes={"the tuple-returning module without output=": ogm_mistake_no_output},
    ),
    Client(
        "LightningModule with a gated unit, dropout in the head, binary target", "Tolsager/LANoire",
        "gated fusion, Lightning module, binary head",
        lit_setup, lit_step, lit_reference,
        lambda s: [s["model"].text_embeddings, s["model"].audio_embeddings], 4, 1,
        mistakes={"frozen pretrained embeddings": lit_mistake_frozen_embeddings},
    ),
    Client(
        "inline concatenation, the latents returned with the predictions", "MatthewMaxy/Remix_ICML2025",
        "late fusion, model returns its latents",
        remix_setup, remix_step, remix_reference, lambda s: [s["model"].audio_net, s["model"].visual_net], 1, 1,
        mistakes={"a single-modality step": remix_mistake_zeroed_modality},
    ),
    Client(
        "gated unit on movie genres, separate classifier, multi-label head",
        "IsaacRodgz/multimodal-transformers-movies", "gated fusion, multi-label head",
        genre_setup, genre_step, genre_reference, lambda s: [s["model"].text_enc, s["model"].image_enc], 2, 1,
        mistakes={"multi-label targets": genre_mistake_classification_task},
    ),
    Client(
        "inline concatenation, Pareto gradient mixing", "GeWu-Lab/MMPareto_ICML2024",
        "late fusion, Pareto gradient-modulation loop",
        pareto_setup, pareto_step, pareto_reference, lambda s: [s["model"].audio_net, s["model"].visual_net], 2, 1,
    ),
]  # fmt: skip

#: codebases whose shape MCR does not support yet, with the mistake that shows the message
UNSUPPORTED: dict[str, tuple[str, Callable[[], None]]] = {}
