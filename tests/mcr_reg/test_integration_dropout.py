"""Dropout inside the fusion head: ``head_dropout="eval"`` runs MCR's passes without it (MIPD
then measures the head's deterministic predictions, not dropout noise), exactly as the same head
in eval mode would, and leaves every module's mode as it was; ``"train"`` keeps the noise."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg.terms import MIPD

B, C, D, P = 12, 3, 6, 8


class ModuleDropoutHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * D, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, C))

    def forward(self, a: Tensor, v: Tensor) -> Tensor:
        return self.net(torch.cat([a, v], -1))


class FunctionalDropoutHead(nn.Module):
    """``F.dropout`` keyed on the module's own mode, inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(2 * D, 16), nn.Linear(16, C)

    def forward(self, a: Tensor, v: Tensor) -> Tensor:
        h = F.dropout(torch.relu(self.hidden(torch.cat([a, v], -1))), 0.5, self.training)
        return self.out(h)


HEADS = {"nn.Dropout": ModuleDropoutHead, "F.dropout": FunctionalDropoutHead}


def _latents(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(B, D, generator=g, requires_grad=True)
    zv = torch.randn(B, D, generator=g, requires_grad=True)
    return za, zv, torch.arange(B) % C


def _identity() -> Tensor:
    return torch.arange(B).repeat(P, 2, 1)  # no sample moves: MIPD sees only the head's noise


@pytest.mark.parametrize("kind", list(HEADS))
@pytest.mark.parametrize("function_head", [False, True])
def test_eval_removes_the_dropout_noise_that_train_keeps(kind: str, function_head: bool) -> None:
    torch.manual_seed(0)
    head = HEADS[kind]()
    fusion = (lambda a, v: head(a, v)) if function_head else head
    za, zv, y = _latents()
    found = {}
    for mode in ("train", "eval"):
        mcr = MCRRegularizer(
            fusion, num_classes=C, head_dropout=mode, mipd=MIPD(num_permutations=P), unimodal=False
        )
        out = mcr([za, zv], y, permutations=_identity())
        found[mode] = out.importance
    assert torch.all(found["train"] > 1e-4), found  # dropout noise alone looks like importance
    assert torch.equal(found["eval"], torch.zeros(2)), found
    assert all(m.training for m in head.modules())  # every mode restored


@pytest.mark.parametrize("kind", list(HEADS))
@pytest.mark.parametrize("strategy", ["greedy", "collaborative", 0.5])
def test_eval_is_exactly_the_head_in_eval_mode(kind: str, strategy: object) -> None:
    """The game's gradient rule is untouched: the encoders' and the head's gradients equal those
    of the same head put in eval mode, same permutations."""
    torch.manual_seed(0)
    head = HEADS[kind]()
    grads = []
    for mode in ("eval", "as_eval_module"):
        za, zv, y = _latents()
        head.train(mode == "eval")
        mcr = MCRRegularizer(
            head, num_classes=C, strategy=strategy, head_dropout="eval" if mode == "eval" else "train", seed=0, mipd=MIPD(weight=1.0), contrastive=False, unimodal=False
        )  # fmt: skip
        loss = mcr([za, zv], y).loss
        params = [za, zv, *head.parameters()]
        grads.append(torch.autograd.grad(loss, params, allow_unused=True))
    for got, want in zip(*grads):
        zero = torch.zeros(()) if got is None else torch.zeros_like(got)
        torch.testing.assert_close(
            got if got is not None else zero, want if want is not None else zero
        )


def test_a_correct_run_with_dropout_in_the_head_stays_silent() -> None:
    torch.manual_seed(0)
    enc_a, enc_v, head = nn.Linear(5, D), nn.Linear(7, D), ModuleDropoutHead()
    mcr = MCRRegularizer(head, num_classes=C, latent_dims=(D, D), head_dropout="eval")
    params = [*enc_a.parameters(), *enc_v.parameters(), *head.parameters(), *mcr.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1)
    xa, xv, y = torch.randn(B, 5), torch.randn(B, 7), torch.arange(B) % C
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(4):
            za, zv = enc_a(xa), enc_v(xv)
            logits = head(za, zv)
            loss = F.cross_entropy(logits, y) + mcr([za, zv], y, logits).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def test_a_wrong_setting_names_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"expected head_dropout in \['train', 'eval'\], got 'off'"
    ):
        MCRRegularizer(nn.Linear(4, 2), head_dropout="off")  # type: ignore[arg-type]
