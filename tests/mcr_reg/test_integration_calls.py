"""Any fusion call: the arguments read as a tree, the latents permuted, everything else passed
through (per sample, or moved with the latent it belongs to), any layout. Each route is checked
against a reference computation: the same MCR on batch-first latents with a head written out by
hand, the same permutations, equal gradients."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mcr_reg.calls
from mcr_reg import FusionInputs, MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.calls import FusionCall
from mcr_reg.terms import MIPD

B, C, D, T = 6, 3, 4, 5
EXACT = {"contrastive": False, "unimodal": False}  # MIPD alone, weight 1 (below)


def _perms(m: int = 2) -> Tensor:
    return MF.sample_permutations(3, m, B, generator=torch.Generator().manual_seed(0))


def _grads(*tensors: Tensor, module: nn.Module) -> list[Tensor]:
    params = [p for p in module.parameters()]
    return list(torch.autograd.grad(None, [*tensors, *params], allow_unused=True))  # type: ignore[arg-type]


def _mcr_grads(
    head: Callable[..., Tensor], latents: object, params: list[Tensor], **kw: object
) -> list[Tensor]:
    mcr = MCRRegularizer(
        head, num_classes=C, mipd=MIPD(weight=1.0, num_permutations=3), **EXACT, **kw
    )  # type: ignore[arg-type]
    out = mcr(latents, torch.arange(B) % C, permutations=_perms())  # type: ignore[arg-type]
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]


def _assert_same(got: list[Tensor], want: list[Tensor]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, msg=f"gradient {i}")


def _leaves(*shapes: tuple[int, ...], seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, requires_grad=True) for s in shapes]


class ListFusion(nn.Module):
    """Takes one list of latents (the form of fusion libraries that fuse any number)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * D, C)

    def forward(self, feats: list[Tensor]) -> Tensor:
        return self.fc(torch.tanh(torch.cat(feats, dim=-1)))


def test_a_list_of_latents_equals_the_positional_reference() -> None:
    torch.manual_seed(0)
    fusion, (za, zv) = ListFusion(), _leaves((B, D), (B, D))
    params = [za, zv, *fusion.parameters()]
    got = _mcr_grads(fusion, FusionCall().of([za, zv]), params)
    want = _mcr_grads(lambda a, v: fusion([a, v]), [za, zv], params)
    _assert_same(got, want)
    assert any(g.abs().sum() > 0 for g in got[:2])


class DictFusion(nn.Module):
    """A dict of latents and a per-sample weight passed by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_a, self.fc_v = nn.Linear(D, C), nn.Linear(D, C)

    def forward(self, inputs: dict[str, Tensor], *, weight: Tensor, scale: float = 1.0) -> Tensor:
        return scale * (self.fc_a(inputs["audio"]) * weight[:, None] + self.fc_v(inputs["video"]))


def test_a_dict_and_a_per_sample_keyword_equal_the_per_block_reference() -> None:
    """Per sample: every perturbed row keeps its own sample's weight, which is what a head
    called once per block of B rows sees."""
    torch.manual_seed(0)
    fusion, (za, zv) = DictFusion(), _leaves((B, D), (B, D))
    weight = torch.rand(B) + 0.5
    params = [za, zv, *fusion.parameters()]
    reading = FusionCall(per_sample=("weight",))
    call = reading.of({"audio": za, "video": zv}, weight=weight, scale=2.0)
    got = _mcr_grads(fusion, call, params)
    want = _mcr_grads(
        lambda a, v: fusion({"audio": a, "video": v}, weight=weight, scale=2.0),
        [za, zv], params, batched=False,
    )  # fmt: skip
    _assert_same(got, want)
    bound = call.bind(B)
    assert bound.names == ("audio", "video")


class MaskedSequenceFusion(nn.Module):
    """Audio is a padded sequence (B, T, D) with a padding mask; video a vector."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * D, C)

    def forward(self, audio: Tensor, video: Tensor, audio_mask: Tensor) -> Tensor:
        keep = audio_mask.unsqueeze(-1).to(audio.dtype)
        pooled = (audio * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.fc(torch.cat([pooled, video], dim=-1))


def _padding_mask() -> Tensor:
    lengths = torch.tensor([5, 3, 1, 4, 2, 5])
    return torch.arange(T)[None, :] < lengths[:, None]


@pytest.mark.parametrize("declared", [False, True])
def test_a_padding_mask_moves_with_its_latent(declared: bool) -> None:
    """Reference: the mask carried inside the latent as an extra channel, so that permuting the
    latent's rows moves it; the mask is inferred from its shape or declared with follows=."""
    torch.manual_seed(0)
    fusion, (za, zv) = MaskedSequenceFusion(), _leaves((B, T, D), (B, D))
    mask = _padding_mask()
    params = [za, zv, *fusion.parameters()]
    reading = FusionCall(follows={"audio_mask": "[0]"}) if declared else FusionCall()
    got = _mcr_grads(fusion, reading.of(za, zv, audio_mask=mask), params)
    carried = torch.cat([za, mask.unsqueeze(-1).float()], dim=-1)  # (B, T, D + 1)

    def reference(a: Tensor, v: Tensor) -> Tensor:
        return fusion(a[..., :D], v, audio_mask=a[..., D] > 0.5)

    want = _mcr_grads(reference, [carried, zv], params)
    _assert_same(got, want)
    # the tiled (per-sample) reading differs: the mask matters
    wrong = _mcr_grads(
        fusion, FusionCall(per_sample=("audio_mask",)).of(za, zv, audio_mask=mask), params
    )
    assert not torch.allclose(wrong[0], want[0])


class SequenceFirstFusion(nn.Module):
    """Sequences as nn.MultiheadAttention takes them by default: (T, B, D); conv features (B, C, T)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * D, C)

    def forward(self, audio_tbd: Tensor, video_bct: Tensor) -> Tensor:
        return self.fc(torch.cat([audio_tbd.mean(0), video_bct.amax(-1)], dim=-1))


def test_sequence_first_and_channels_first_layouts() -> None:
    torch.manual_seed(0)
    fusion = SequenceFirstFusion()
    za, zv = _leaves((T, B, D), (B, D, T + 2))
    params = [za, zv, *fusion.parameters()]
    call = FusionCall(layout={"[0]": "TBD", "[1]": "BCT"}).of(za, zv)
    got = _mcr_grads(fusion, call, params, latent_dims=(D, D))
    inferred = _mcr_grads(fusion, FusionCall().of(za, zv), params, latent_dims=(D, D))

    def reference(a: Tensor, v: Tensor) -> Tensor:  # a (B, T, D), v (B, T+2, D)
        return fusion(a.transpose(0, 1), v.transpose(1, 2))

    want = _mcr_grads(reference, [za.transpose(0, 1), zv.transpose(1, 2)], params)
    _assert_same(got, want)
    _assert_same(inferred, want)  # batch from the labels' length, features from latent_dims
    bound = call.bind(B, (D, D))
    assert [tuple(z.shape) for z in bound.latents] == [(B, T, D), (B, T + 2, D)]


def test_images_reach_mcr_as_positions_by_channels() -> None:
    z = torch.randn(B, D, 3, 2, requires_grad=True)
    v = torch.randn(B, D, requires_grad=True)
    bound = FusionCall().of(z, v).bind(B, (D, D))
    assert tuple(bound.latents[0].shape) == (B, 6, D)
    rows = torch.cat([bound.latents[0], bound.latents[0]])
    rebuilt = bound.call(lambda a, b: a, [rows, torch.cat([v, v])])
    torch.testing.assert_close(rebuilt, torch.cat([z, z]))


def test_a_wrong_layout_names_both_axes() -> None:
    za, zv = _leaves((T, B, D), (B, D))
    with pytest.raises(
        ValueError,
        match=r"puts the batch of latent .* on axis 0 \(size 5\), but the labels' batch is 6",
    ):
        FusionCall(layout={"[0]": "BTD"}).of(za, zv).bind(B)
    with pytest.raises(
        ValueError,
        match=r"batch axis 1 \(size 6, like the labels\), but no other axis has the width 7",
    ):
        FusionCall().of(za, zv).bind(B, (7, D))
    square = torch.randn(B, B, D, requires_grad=True).transpose(0, 1)
    assert square.shape[0] == B  # batch-first is assumed when axis 0 has the batch size
    odd = torch.randn(T, D, T, requires_grad=True)
    with pytest.raises(ValueError, match=r"no axis of the labels' batch size 6.*layout="):
        FusionCall(latents=("[0]", "[1]")).of(odd, zv).bind(B)


def test_an_undeclared_batch_argument_stops_with_both_choices() -> None:
    za, zv = _leaves((B, T, D), (B, D))
    lengths = torch.tensor([5, 3, 1, 4, 2, 5])
    with pytest.raises(
        ValueError,
        match=r"lengths: Tensor \(6,\).*follows=\{'lengths': '\[0\]'\}.*per_sample=\('lengths',\)",
    ):
        FusionCall().of(za, zv, lengths=lengths).bind(B)
    bound = FusionCall(follows={"lengths": "[0]"}).of(za, zv, lengths=lengths).bind(B)
    assert bound.has_followers
    with pytest.raises(
        ValueError, match=r"follows= maps 'lengths' to 'text', which is not a latent"
    ):
        FusionCall(follows={"lengths": "text"}).of(za, zv, lengths=lengths).bind(B)
    with pytest.raises(ValueError, match=r"per_sample= names 'lenghts', but no argument"):
        FusionCall(per_sample=("lenghts",)).of(za, zv, lengths=lengths).bind(B)


def test_detached_latents_are_named_with_the_cause() -> None:
    za = torch.randn(B, D, requires_grad=True)
    with torch.no_grad():
        zv = torch.randn(B, D) * 2
    with pytest.raises(
        ValueError, match=r"found 1.*\['\[1\]'\] have the batch axis but no gradient"
    ):
        FusionCall().of(za, zv).bind(B)


def test_a_head_that_takes_a_list_gets_the_adapter_not_an_argument_count_error() -> None:
    fusion, (za, zv) = ListFusion(), _leaves((B, D), (B, D))
    mcr = MCRRegularizer(fusion, num_classes=C, mipd=MIPD(num_permutations=2))
    with pytest.raises(
        TypeError,
        match=r"(?s)signature is .*forward\(feats.*FusionCall\(\)\.of.*def fused\(z1, z2\)",
    ) as info:
        mcr([za, zv], torch.arange(B) % C)
    assert "positional argument" in str(info.value.__cause__)


def test_a_sequence_first_latent_passed_as_it_is_names_both_axes() -> None:
    fusion = SequenceFirstFusion()
    za, zv = _leaves((T, B, D), (B, D, T))
    mcr = MCRRegularizer(fusion, num_classes=C, mipd=MIPD(num_permutations=2))
    with pytest.raises(
        ValueError, match=r"axis 0 of size 5, but the labels' batch is 6, the size of its axis 1"
    ):
        mcr([za, zv], torch.arange(B) % C)


class KeywordFusion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * D, 8)

    def forward(self, audio: Tensor, video: Tensor, audio_mask: Tensor | None = None) -> Tensor:
        keep = audio_mask.unsqueeze(-1).float()  # type: ignore[union-attr]
        pooled = (audio * keep).sum(1) / keep.sum(1)
        return torch.relu(self.proj(torch.cat([pooled, video], -1)))


class CapturedNet(nn.Module):
    """A fusion module called with keywords and a mask, then a separate classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_enc, self.video_enc = nn.Linear(3, D), nn.Linear(2, D)
        self.fusion, self.classifier = KeywordFusion(), nn.Linear(8, C)

    def forward(self, xa: Tensor, xv: Tensor, mask: Tensor) -> Tensor:
        fused = self.fusion(audio=self.audio_enc(xa), video=self.video_enc(xv), audio_mask=mask)
        return self.classifier(fused)


def test_a_captured_keyword_call_with_a_mask_and_a_separate_classifier() -> None:
    torch.manual_seed(0)
    net = CapturedNet()
    captured = FusionInputs(net.fusion, then=net.classifier)
    mcr = MCRRegularizer(
        captured.head,
        num_classes=C,
        latent_dims=(D, D),
        mipd=MIPD(weight=1.0, num_permutations=3),
        **EXACT,
    )
    xa, xv, mask, y = torch.randn(B, T, 3), torch.randn(B, 2), _padding_mask(), torch.arange(B) % C
    logits = net(xa, xv, mask)
    out = mcr(captured, y, permutations=_perms())
    assert out.modalities == ("audio", "video")
    got = torch.autograd.grad(out.loss, list(net.parameters()), allow_unused=True)

    za, zv = net.audio_enc(xa), net.video_enc(xv)
    carried = torch.cat([za, mask.unsqueeze(-1).float()], dim=-1)

    def reference(a: Tensor, v: Tensor) -> Tensor:
        return net.classifier(net.fusion(audio=a[..., :D], video=v, audio_mask=a[..., D] > 0.5))

    ref = MCRRegularizer(
        reference, num_classes=C, mipd=MIPD(weight=1.0, num_permutations=3), **EXACT
    )
    want = torch.autograd.grad(
        ref([carried, zv], y, permutations=_perms()).loss, list(net.parameters()), allow_unused=True
    )
    for g, w, p in zip(got, want, net.parameters()):  # None: no gradient, as zeros
        zero = torch.zeros_like(p)
        torch.testing.assert_close(g if g is not None else zero, w if w is not None else zero)
    assert got[0] is not None and got[0].abs().sum() > 0  # the audio encoder is reached
    with pytest.raises(RuntimeError, match="pass this object itself to MCR"):
        captured.latents  # noqa: B018
    assert logits.shape == (B, C)


def test_the_module_docstring_example_runs() -> None:
    result = doctest.testmod(mcr_reg.calls, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_training_through_a_call_record_learns() -> None:
    torch.manual_seed(0)
    enc_a, enc_v, fusion = nn.Linear(3, D), nn.Linear(2, D), DictFusion()
    mcr = MCRRegularizer(
        fusion, num_classes=C, latent_dims=(D, D), seed=0, mipd=MIPD(num_permutations=4)
    )
    reading = FusionCall(per_sample=("weight",))
    params = [*enc_a.parameters(), *enc_v.parameters(), *fusion.parameters(), *mcr.parameters()]
    optimizer = torch.optim.Adam(params, lr=3e-2)
    g = torch.Generator().manual_seed(3)
    xa, xv, y = torch.randn(B, 3, generator=g), torch.randn(B, 2, generator=g), torch.arange(B) % C
    weight = torch.ones(B)
    losses = []
    for _ in range(40):
        latents = {"audio": enc_a(xa), "video": enc_v(xv)}
        logits = fusion(latents, weight=weight)
        loss = F.cross_entropy(logits, y) + mcr(reading.of(latents, weight=weight), y, logits).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(F.cross_entropy(logits.detach(), y)))
    assert losses[-1] < 0.5 * losses[0], losses


def test_a_recorded_module_that_returns_features_points_to_then() -> None:
    net = CapturedNet()
    captured = FusionInputs(net.fusion)  # the classifier that follows is forgotten
    mcr = MCRRegularizer(captured.head, num_classes=C, mipd=MIPD(num_permutations=2))
    net(torch.randn(B, T, 3), torch.randn(B, 2), _padding_mask())
    with pytest.raises(
        ValueError, match=r"returned \(6, 8\), not the prediction .*then=classifier"
    ):
        mcr(captured, torch.arange(B) % C)


def test_multi_label_targets_are_named() -> None:
    za, zv = _leaves((B, D), (B, D))
    mcr = MCRRegularizer(
        lambda a, v: a[:, :C] + v[:, :C], num_classes=C, mipd=MIPD(num_permutations=2)
    )
    targets = (torch.rand(B, C) > 0.5).float()
    with pytest.raises(
        ValueError, match=r"multi-label targets .*task='multilabel' .*Multi-label heads"
    ):
        mcr([za, zv], targets)
