"""Models that fuse inline, ``self.head(torch.cat((a, v), 1))``, take MCR with set-up lines only.

``FusionInputs(model.head, split=widths)`` records the concatenated input and splits it into the
modalities' latents, ``fusion_inputs.head`` calls the module on their concatenation, and the
step line ``mcr(fusion_inputs, y)`` reads the latents and logits of the module's latest call.
The reference is the same model edited to return its latents, with MCR called on them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import Concatenated, FusionInputs, MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, Contrastive

B, C = 8, 3
WIDTHS = (6, 4)


class InlineNet(nn.Module):
    """Two encoders and a head called inline on their concatenation; returns the logits only."""

    def __init__(self) -> None:
        super().__init__()
        self.audio, self.video = nn.Linear(5, WIDTHS[0]), nn.Linear(7, WIDTHS[1])
        self.head = nn.Sequential(nn.Linear(sum(WIDTHS), 8), nn.Tanh(), nn.Linear(8, C))

    def latents(self, xa: Tensor, xv: Tensor) -> tuple[Tensor, Tensor]:
        return torch.tanh(self.audio(xa)), torch.tanh(self.video(xv))

    def forward(self, xa: Tensor, xv: Tensor) -> Tensor:
        return self.head(torch.cat(self.latents(xa, xv), 1))


def _data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    perms = MF.sample_permutations(4, 2, B, generator=g)
    return (
        torch.randn(B, 5, generator=g),
        torch.randn(B, 7, generator=g),
        torch.arange(B) % C,
        perms,
    )


def _mcr(head: object, **kwargs: object) -> MCRRegularizer:
    return MCRRegularizer(
        head,
        num_classes=C,
        latent_dims=WIDTHS,
        contrastive=Contrastive(projection_dim=4),
        ceb=CEB(weight=1.0),
        **kwargs,
    )


def _grads(*modules: nn.Module) -> list[Tensor]:
    return [p.grad.clone() for m in modules for p in m.parameters() if p.grad is not None]


@pytest.mark.parametrize("strategy", ["greedy", "independent", 0.5])
def test_inline_fusion_with_capture_equals_the_edited_model(strategy: str | float) -> None:
    xa, xv, y, perms = _data()
    torch.manual_seed(0)
    net = InlineNet()
    fusion_inputs = FusionInputs(net.head, split=WIDTHS)  # set-up line
    mcr = _mcr(fusion_inputs.head, strategy=strategy)  # set-up line
    logits = net(xa, xv)  # the model as published, no edit
    loss = F.cross_entropy(logits, y) + mcr(fusion_inputs, y, permutations=perms).loss
    loss.backward()
    got = _grads(net, mcr)

    torch.manual_seed(0)
    edited = InlineNet()
    reference = _mcr(lambda a, v: edited.head(torch.cat((a, v), 1)), strategy=strategy)
    reference.load_state_dict(mcr.state_dict())
    za, zv = edited.latents(xa, xv)
    ref_logits = edited.head(torch.cat((za, zv), 1))
    ref_loss = F.cross_entropy(ref_logits, y)
    ref_loss = ref_loss + reference([za, zv], y, ref_logits, permutations=perms).loss
    ref_loss.backward()
    expected = _grads(edited, reference)

    torch.testing.assert_close(loss, ref_loss)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_the_captured_logits_are_the_module_output() -> None:
    xa, xv, y, perms = _data()
    net = InlineNet()
    fusion_inputs = FusionInputs(net.head, split=WIDTHS, names=("audio", "video"))
    mcr = _mcr(fusion_inputs.head)
    logits = net(xa, xv)
    assert fusion_inputs.logits is logits
    out = mcr(fusion_inputs, y, permutations=perms)
    assert out.modalities == ("audio", "video")
    explicit = mcr(dict(fusion_inputs.latents), y, logits, permutations=perms)
    torch.testing.assert_close(out.loss, explicit.loss)


def test_concatenated_calls_the_module_on_the_concatenation() -> None:
    head = nn.Linear(10, C)
    za, zv = torch.randn(B, 6), torch.randn(B, 4)
    torch.testing.assert_close(Concatenated(head)(za, zv), head(torch.cat([za, zv], -1)))
    assert list(Concatenated(head).parameters()) == list(head.parameters())


def test_a_record_is_used_once() -> None:
    xa, xv, y, _ = _data()
    net = InlineNet()
    fusion_inputs = FusionInputs(net.head, split=WIDTHS)
    mcr = _mcr(fusion_inputs.head)
    net(xa, xv)
    mcr(fusion_inputs, y)
    with pytest.raises(RuntimeError, match="already used by MCR: run the model's forward"):
        mcr(fusion_inputs, y)
    net(xa, xv)  # a new step
    mcr(fusion_inputs, y)


def test_a_record_made_in_eval_mode_is_refused() -> None:
    xa, xv, y, _ = _data()
    net = InlineNet().eval()
    fusion_inputs = FusionInputs(net.head, split=WIDTHS)
    mcr = _mcr(fusion_inputs.head)
    net(xa, xv)
    with pytest.raises(RuntimeError, match=r"made in eval mode.*model\.train\(\)"):
        mcr(fusion_inputs, y)


def test_one_concatenated_tensor_gets_an_error_that_says_how() -> None:
    xa, xv, y, _ = _data()
    net = InlineNet()
    fusion_inputs = FusionInputs(net.head)  # no split
    mcr = _mcr(net.head)
    net(xa, xv)
    with pytest.raises(
        ValueError, match=r"found 1; .*\[0\]: Tensor \(8, 10\).*FusionInputs\(module, split="
    ):
        mcr(fusion_inputs, y)


def test_split_errors_name_what_came() -> None:
    net = InlineNet()
    with pytest.raises(ValueError, match=r"at least two modalities, got \(10,\)"):
        FusionInputs(net.head, split=(10,))
    with pytest.raises(ValueError, match="one name per split width"):
        FusionInputs(net.head, split=(6, 4), names=("a", "b", "c"))
    fusion_inputs = FusionInputs(net.head, split=(5, 4))
    net(torch.randn(B, 5), torch.randn(B, 7))
    with pytest.raises(RuntimeError, match=r"split=\(5, 4\) \(total 9\).*\(8, 10\)"):
        fusion_inputs.latents  # noqa: B018
    pair = FusionInputs(nn.Bilinear(6, 4, C), split=(6, 4))
    pair.module(torch.randn(B, 6), torch.randn(B, 4))
    with pytest.raises(RuntimeError, match="called with 2 inputs; leave split out"):
        pair.latents  # noqa: B018
