"""The first-step audit: each silent integration mistake warns once, naming cause and fix; a
correct loop (several correct shapes of it) stays silent."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg.terms import MIPD

B, C, D = 8, 3, 6


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio, self.video = nn.Linear(5, D), nn.Linear(7, D)
        self.fusion = nn.Linear(2 * D, C)

    def forward(self, xa: Tensor, xv: Tensor) -> tuple[Tensor, list[Tensor]]:
        za, zv = torch.relu(self.audio(xa)), torch.relu(self.video(xv))
        return self.fusion(torch.cat([za, zv], -1)), [za, zv]


def _data() -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, 5, generator=g), torch.randn(B, 7, generator=g), torch.arange(B) % C


def _head(net: Net) -> Callable[..., Tensor]:
    return lambda a, v: net.fusion(torch.cat([a, v], -1))


Loop = Callable[[], None]


def _run(loop: Callable[[int], None], steps: int = 4) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop(steps)
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _plain(
    *, attach: bool, zero: str, clip: bool, in_optimizer: bool = True, set_to_none: bool = True
) -> Callable[[int], None]:
    def loop(steps: int) -> None:
        torch.manual_seed(0)
        net = Net()
        mcr = MCRRegularizer(
            _head(net), num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=2)
        )
        if attach:
            net.mcr = mcr  # type: ignore[assignment]
        params = [*net.parameters()] + ([] if attach or not in_optimizer else [*mcr.parameters()])
        optimizer = torch.optim.SGD(params, lr=0.1)
        xa, xv, y = _data()
        for _ in range(steps):
            logits, latents = net(xa, xv)
            loss = F.cross_entropy(logits, y) + mcr(latents, y, logits).loss
            (optimizer if zero == "optimizer" else net).zero_grad(set_to_none=set_to_none)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(net.parameters(), 0.01)  # one common factor
            optimizer.step()

    return loop


@pytest.mark.parametrize("set_to_none", [True, False], ids=["set_to_none", "zeroed_in_place"])
@pytest.mark.parametrize(
    "attach, zero, clip",
    [
        (False, "optimizer", False),
        (True, "model", False),
        (True, "model", True),
        (False, "optimizer", True),
    ],
)
def test_a_correct_loop_stays_silent(
    attach: bool, zero: str, clip: bool, set_to_none: bool
) -> None:
    assert _run(_plain(attach=attach, zero=zero, clip=clip, set_to_none=set_to_none)) == []


def test_detached_latents_warn_with_the_cause() -> None:
    torch.manual_seed(0)
    net = Net()
    mcr = MCRRegularizer(
        _head(net), num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=2)
    )
    xa, xv, y = _data()
    logits, (za, zv) = net(xa, xv)
    with pytest.warns(
        RuntimeWarning, match=r"latents \['1'\] require no gradient.*no_grad\(\), detached"
    ):
        mcr([za, zv.detach()], y, logits)


def test_a_loss_that_is_only_logged_warns() -> None:
    torch.manual_seed(0)
    net = Net()
    mcr = MCRRegularizer(
        _head(net), num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=2)
    )
    optimizer = torch.optim.SGD([*net.parameters(), *mcr.parameters()], lr=0.1)
    xa, xv, y = _data()

    def loop(steps: int) -> None:
        for _ in range(steps):
            logits, latents = net(xa, xv)
            logged = float(mcr(latents, y, logits).loss)  # the mistake: computed, never trained
            optimizer.zero_grad()
            F.cross_entropy(logits, y).backward()
            optimizer.step()
            assert logged == logged

    found = _run(loop)
    assert len(found) == 1 and "took part in no backward" in found[0], found


def test_mcr_parameters_in_no_optimizer_warn_after_the_first_step() -> None:
    found = _run(_plain(attach=False, zero="optimizer", clip=False, in_optimizer=False), steps=5)
    assert len(found) == 1 and "none holds MCR's own parameters" in found[0], found


@pytest.mark.parametrize("set_to_none", [True, False], ids=["set_to_none", "zeroed_in_place"])
def test_mcr_beside_the_model_missed_by_model_zero_grad_warns(set_to_none: bool) -> None:
    """``model.zero_grad()`` clears the head's gradients (to ``None``, or to zeros in place
    with ``set_to_none=False``) and misses MCR's, which accumulate."""
    found = _run(_plain(attach=False, zero="model", clip=False, set_to_none=set_to_none))
    assert len(found) == 1 and "accumulated onto the first step's" in found[0], found
    assert "model.mcr = mcr" in found[0]


def test_zeroing_in_place_seen_by_the_audit_is_what_the_gradients_show() -> None:
    """The finding is true: in the loop the audit warns about, MCR's gradients after two steps
    are the sum of both steps' gradients, and the head's are the second step's alone."""
    torch.manual_seed(0)
    net = Net()
    mcr = MCRRegularizer(
        _head(net), num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=2)
    )
    xa, xv, y = _data()
    own, head = next(iter(mcr.parameters())), net.fusion.weight
    seen: list[tuple[Tensor, Tensor]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            logits, latents = net(xa, xv)
            net.zero_grad(set_to_none=False)
            if own.grad is not None:
                seen.append((own.grad.clone(), head.grad.clone()))  # type: ignore[union-attr]
            (F.cross_entropy(logits, y) + mcr(latents, y, logits).loss).backward()
    own_before, head_before = seen[0]
    assert bool(head_before.eq(0).all())  # the head was zeroed in place
    assert not bool(own_before.eq(0).all())  # MCR's own was not: it accumulates


def test_gradients_rewritten_after_backward_point_to_the_probe() -> None:
    torch.manual_seed(0)
    net = Net()
    mcr = MCRRegularizer(
        _head(net), num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=2)
    )
    optimizer = torch.optim.SGD([*net.parameters(), *mcr.parameters()], lr=0.1)
    xa, xv, y = _data()

    def loop(steps: int) -> None:  # gradient modulation: one coefficient per encoder
        for _ in range(steps):
            logits, latents = net(xa, xv)
            loss = F.cross_entropy(logits, y) + mcr(latents, y, logits).loss
            optimizer.zero_grad()
            loss.backward()
            for encoder, coefficient in ((net.audio, 0.3), (net.video, 1.0)):
                for p in encoder.parameters():
                    p.grad = p.grad * coefficient
            optimizer.step()

    found = _run(loop)
    assert len(found) == 1 and "check_gradient_path" in found[0], found
    assert "4 of the encoders' parameters" in found[0] or "2 of the encoders'" in found[0]


def test_audit_off_and_copies_start_their_own() -> None:
    import copy

    torch.manual_seed(0)
    net = Net()
    xa, xv, y = _data()
    logits, (za, zv) = net(xa, xv)
    quiet = MCRRegularizer(_head(net), num_classes=C, latent_dims=(D, D), audit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet([za, zv.detach()], y, logits)
    mcr = MCRRegularizer(
        _head(net), num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=2)
    )
    with pytest.warns(RuntimeWarning):
        mcr([za, zv.detach()], y, logits)
    twin = copy.deepcopy(mcr)
    with pytest.warns(RuntimeWarning, match="require no gradient"):
        twin([za, zv.detach()], y, logits)
