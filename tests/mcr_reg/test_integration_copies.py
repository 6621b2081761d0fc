"""A model holding captured fusion calls or an attached MCR stays an ordinary object: pickled,
deep-copied, saved whole with ``torch.save(model)`` and loaded, moved to another device or dtype;
the copy trains exactly like the original and records its own calls."""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import FusionInputs, MCRRegularizer
from mcr_reg.terms import MIPD

B, C, D = 8, 3, 6


class InlineNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio, self.video = nn.Linear(5, D), nn.Linear(7, D)
        self.head = nn.Linear(2 * D, C)

    def forward(self, xa: Tensor, xv: Tensor) -> Tensor:
        return self.head(torch.cat((torch.relu(self.audio(xa)), torch.relu(self.video(xv))), 1))


def _model() -> tuple[InlineNet, FusionInputs]:
    torch.manual_seed(0)
    net = InlineNet()
    captured = FusionInputs(net.head, split=(D, D), names=("audio", "video"))
    net.mcr = MCRRegularizer(  # type: ignore[assignment]
        captured.head, num_classes=C, latent_dims=(D, D), seed=0, mipd=MIPD(num_permutations=3)
    )
    net.captured = captured  # type: ignore[assignment]  # a plain attribute, as users keep it
    return net, captured


def _data() -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 5, generator=g), torch.randn(B, 7, generator=g), torch.arange(B) % C


def _step(net: nn.Module) -> dict[str, Tensor]:
    xa, xv, y = _data()
    xa, xv, y = (t.to(net.head.weight.device) for t in (xa, xv, y))  # type: ignore[union-attr]
    xa, xv = xa.to(net.head.weight.dtype), xv.to(net.head.weight.dtype)  # type: ignore[union-attr]
    net.zero_grad()
    logits = net(xa, xv)
    loss = F.cross_entropy(logits, y) + net.mcr(net.captured, y).loss  # type: ignore[operator]
    loss.backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _saved_and_loaded(net: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)  # type: ignore[no-any-return]


COPIES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "pickle": lambda net: pickle.loads(pickle.dumps(net)),
    "deepcopy": copy.deepcopy,
    "torch.save": _saved_and_loaded,
}


@pytest.mark.parametrize("how", list(COPIES))
def test_a_copy_trains_like_the_original_and_records_its_own_calls(how: str) -> None:
    net, captured = _model()
    _step(net)  # a record exists when the copy is made
    twin = COPIES[how](net)
    assert twin.captured is not captured and twin.captured.module is twin.head
    assert twin.mcr.fusion_head.head is twin.head  # MCR's head is the copy's module
    assert twin.captured.__dict__.get("_local") is not None
    with pytest.raises(RuntimeError, match="no call of the Linear fusion module"):
        twin.captured.latents  # noqa: B018  # the record of one step is not copied
    grads, twin_grads = _step(net), _step(twin)
    assert grads.keys() == twin_grads.keys() and "mcr.unimodal.heads.0.weight" in grads
    for name in grads:  # same weights, same MCR random state: the same gradients
        torch.testing.assert_close(twin_grads[name], grads[name], msg=name)
    net.zero_grad()
    net(*_data()[:2])  # the original's forward does not reach the copy's record
    with pytest.raises(RuntimeError, match="was already used by MCR"):
        twin.mcr(twin.captured, _data()[2])


def test_a_model_moved_to_another_dtype_keeps_its_capture() -> None:
    net, _ = _model()
    net.double()
    grads = _step(net)
    assert all(g.dtype == torch.float64 for g in grads.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_moved_to_the_gpu_and_back_keeps_its_capture() -> None:
    net, _ = _model()
    cpu = _step(net)
    net.cuda()
    on_gpu = _step(net)
    net.cpu()
    assert on_gpu.keys() == cpu.keys()
    for name, grad in on_gpu.items():
        assert grad.device.type == "cuda" and torch.isfinite(grad).all(), name
    assert _step(net).keys() == cpu.keys()
