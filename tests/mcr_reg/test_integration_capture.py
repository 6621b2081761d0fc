"""FusionInputs: MCR's latents from a model whose forward hides them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.capture import FusionInputs, in_mcr_call, mcr_internal_calls
from mcr_reg.terms import MIPD

B, C = 8, 3


class GatedFusion(nn.Module):
    """Re-projects its inputs before gating: the encoders' outputs are not the head's latents."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, C)

    def forward(self, za: Tensor, zv: Tensor) -> Tensor:
        return self.out(torch.sigmoid(self.gate(za)) * zv)


class HiddenNet(nn.Module):
    """``forward`` returns the logits only; the fusion inputs are computed inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.audio, self.video = nn.Linear(5, 6), nn.Linear(7, 6)
        self.proj_a, self.proj_v = nn.Linear(6, 6), nn.Linear(6, 6)
        self.fusion = GatedFusion()

    def latents(self, xa: Tensor, xv: Tensor) -> tuple[Tensor, Tensor]:
        return torch.relu(self.proj_a(self.audio(xa))), torch.relu(self.proj_v(self.video(xv)))

    def forward(self, xa: Tensor, xv: Tensor) -> Tensor:
        return self.fusion(*self.latents(xa, xv))


def _data(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 5, generator=g), torch.randn(B, 7, generator=g), torch.arange(B) % C


def _mcr(net: HiddenNet, **kw: object) -> MCRRegularizer:
    return MCRRegularizer(
        net.fusion,
        num_classes=C,
        latent_dims=(6, 6),
        mipd=MIPD(num_permutations=4),
        **kw,  # type: ignore[arg-type]
    )


def _grads(module: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_captured_latents_are_the_fusion_inputs_and_carry_gradients_to_the_encoders() -> None:
    torch.manual_seed(0)
    net = HiddenNet()
    xa, xv, y = _data()
    perms = MF.sample_permutations(4, 2, B, generator=torch.Generator().manual_seed(1))
    fusion_inputs = FusionInputs(net.fusion, names=("audio", "video"))
    mcr = _mcr(net)

    logits = net(xa, xv)
    latents = fusion_inputs.latents
    assert isinstance(latents, dict) and list(latents) == ["audio", "video"]
    torch.testing.assert_close(net.fusion(*latents.values()), logits)
    out = mcr(latents, y, logits, permutations=perms)
    assert out.modalities == ("audio", "video")
    out.loss.backward()  # MCR's loss alone
    captured = _grads(net)
    for name in ("audio.weight", "video.weight", "proj_a.weight", "proj_v.weight"):
        assert name in captured and captured[name].abs().sum() > 0, name

    # the same step with the latents computed explicitly gives the same gradients
    net.zero_grad(set_to_none=True)
    mcr.zero_grad(set_to_none=True)
    za, zv = net.latents(xa, xv)
    mcr({"audio": za, "video": zv}, y, net.fusion(za, zv), permutations=perms).loss.backward()
    explicit = _grads(net)
    assert captured.keys() == explicit.keys()
    for name, grad in explicit.items():
        torch.testing.assert_close(captured[name], grad, msg=name)


def test_mcr_own_calls_of_the_fusion_module_are_not_recorded() -> None:
    torch.manual_seed(0)
    net = HiddenNet()
    xa, xv, y = _data()
    fusion_inputs = FusionInputs(net.fusion)
    mcr = _mcr(net, ceb=True)  # CEB without logits also calls the head
    net(xa, xv)
    za, zv = fusion_inputs.latents
    mcr([za, zv], y)  # the perturbed passes call net.fusion with (n_blocks * B) rows
    after = fusion_inputs.latents
    assert after[0] is za and after[1] is zv
    assert not in_mcr_call()


def test_marking_and_clearing() -> None:
    head = nn.Bilinear(4, 4, 2)
    fusion_inputs = FusionInputs(head)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    head(a, b)
    with mcr_internal_calls():
        assert in_mcr_call()
        head(torch.randn(9, 4), torch.randn(9, 4))
    assert fusion_inputs.latents[0] is a
    fusion_inputs.clear()
    with pytest.raises(RuntimeError, match="no call of the Bilinear fusion module was recorded"):
        fusion_inputs.latents  # noqa: B018


def test_context_manager_removes_the_hook_and_starts_empty() -> None:
    head = nn.Bilinear(4, 4, 2)
    stale = FusionInputs(head)
    head(torch.randn(3, 4), torch.randn(3, 4))
    stale.remove()
    assert len(head._forward_pre_hooks) == 0
    with FusionInputs(head) as fusion_inputs:
        with pytest.raises(RuntimeError, match="run the model's forward first"):
            fusion_inputs.latents  # noqa: B018
        a, b = torch.randn(3, 4), torch.randn(3, 4)
        head(a, b)
    assert len(head._forward_pre_hooks) == 0
    assert fusion_inputs.latents[1] is b  # the record survives the removal
    head(torch.randn(5, 4), torch.randn(5, 4))  # no hook: not recorded
    assert fusion_inputs.latents[1] is b
    assert "hook removed" in repr(fusion_inputs)


class KwHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, a: Tensor, v: Tensor | None = None, tag: str = "x") -> Tensor:
        assert v is not None
        return self.fc(torch.cat([a, v], dim=-1))


def test_errors_name_what_came() -> None:
    with pytest.raises(TypeError, match=r"expected the fusion module .* got function"):
        FusionInputs(lambda a, b: a)  # type: ignore[arg-type]
    head = KwHead()
    fusion_inputs = FusionInputs(head, names=("audio", "video"))
    head(torch.randn(2, 4), v=torch.randn(2, 4))
    with pytest.raises(RuntimeError, match=r"keyword arguments \['v'\]"):
        fusion_inputs.latents  # noqa: B018
    head(torch.randn(2, 4), torch.randn(2, 4), "tag")
    with pytest.raises(RuntimeError, match=r"inputs to be tensors .*2: str"):
        fusion_inputs.latents  # noqa: B018
    three = FusionInputs(nn.Bilinear(4, 4, 2), names=("a", "v", "t"))
    three.module(torch.randn(2, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"expected 3 inputs \['a', 'v', 't'\].*called with 2"):
        three.latents  # noqa: B018


def test_training_loop_with_hidden_latents_learns() -> None:
    """The documented loop: the only change to the step is the loss line."""
    torch.manual_seed(0)
    net = HiddenNet()
    fusion_inputs = FusionInputs(net.fusion)
    mcr = _mcr(net, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam([*net.parameters(), *mcr.parameters()], lr=3e-2)
    xa, xv, y = _data(3)
    losses = []
    for _ in range(40):
        logits = net(xa, xv)
        latents = fusion_inputs.latents
        with torch.no_grad():  # this step's record, not the previous step's
            torch.testing.assert_close(net.fusion(*latents), logits)
        loss = F.cross_entropy(logits, y) + mcr(latents, y, logits).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(F.cross_entropy(logits.detach(), y)))
    assert losses[-1] < 0.5 * losses[0], losses


def test_module_docstring_examples_run() -> None:
    import doctest

    import mcr_reg.capture

    result = doctest.testmod(mcr_reg.capture, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
