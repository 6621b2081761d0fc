"""MCR inside wrappers and checkpoints: nn.DataParallel, state_dict keys."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.capture import FusionInputs
from mcr_reg.terms import CEB, MIPD

B, C, D = 8, 3, 6


class Fusion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * D, C)

    def forward(self, za: Tensor, zv: Tensor) -> Tensor:
        return self.fc(torch.cat([za, zv], dim=-1))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio, self.video, self.fusion = nn.Linear(5, D), nn.Linear(7, D), Fusion()

    def forward(self, xa: Tensor, xv: Tensor) -> tuple[Tensor, list[Tensor]]:
        zs = [self.audio(xa), self.video(xv)]
        return self.fusion(*zs), zs


class WithMCR(nn.Module):
    """A model that holds MCR and returns the total loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Net()
        self.mcr = MCRRegularizer(
            self.net.fusion,
            num_classes=C,
            latent_dims=(D, D),
            mipd=MIPD(num_permutations=4),
            ceb=CEB(weight=1.0),
        )

    def forward(self, xa: Tensor, xv: Tensor, y: Tensor, perms: Tensor) -> Tensor:
        logits, zs = self.net(xa, xv)
        return F.cross_entropy(logits, y) + self.mcr(zs, y, logits, permutations=perms).loss


def _batch() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    perms = MF.sample_permutations(4, 2, B, generator=g)
    return (
        torch.randn(B, 5, generator=g),
        torch.randn(B, 7, generator=g),
        torch.arange(B) % C,
        perms,
    )


def test_data_parallel_wrapping_a_model_that_holds_mcr_matches_the_plain_model() -> None:
    torch.manual_seed(0)
    model = WithMCR()
    batch = _batch()
    model(*batch).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    wrapped = nn.DataParallel(model)  # no GPU here: DataParallel calls the module itself
    wrapped(*batch).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad, plain[name], msg=name)
    # MCR's own heads are trained through the wrapper too
    assert any(n.startswith("mcr.unimodal.heads") for n in plain)
    assert any(n.startswith("mcr.ceb.head") for n in plain)

    keys = list(wrapped.state_dict())
    assert all(k.startswith("module.") for k in keys)
    assert "module.mcr.unimodal.heads.0.weight" in keys
    # the fusion head appears once, under the model, never under MCR
    assert [k for k in keys if "fusion.fc.weight" in k] == ["module.net.fusion.fc.weight"]


def test_strict_load_of_a_checkpoint_without_mcr_fails_and_the_key_filter_loads_it() -> None:
    torch.manual_seed(0)
    old = {f"net.{k}": v for k, v in Net().state_dict().items()}  # written before MCR
    model = WithMCR()
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*mcr\."):
        model.load_state_dict(old)
    result = model.load_state_dict(old, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("mcr.") for k in result.missing_keys)
    torch.testing.assert_close(model.net.audio.weight, old["net.audio.weight"])
    stripped = {k: v for k, v in model.state_dict().items() if not k.startswith("mcr.")}
    assert stripped.keys() == old.keys()
    # MCR beside the model: its own state dict holds MCR's heads only
    assert all(not k.startswith("net.") for k in model.mcr.state_dict())


def test_a_data_parallel_replica_of_mcr_still_calls_the_original_fusion_head() -> None:
    """Why the docs keep MCR outside nn.DataParallel on several GPUs: replication (which needs
    GPUs to run) copies a module's __dict__, and MCR's head reference is not a submodule."""
    model = WithMCR()
    replica = model.mcr._replicate_for_data_parallel()
    assert replica.fusion_head is model.net.fusion


def test_fusion_inputs_recorded_in_another_thread_are_not_visible() -> None:
    """nn.DataParallel runs its replicas in worker threads: the main thread must not read a
    replica's (partial) inputs; it gets an error that says what to do."""
    net = Net()
    fusion_inputs = FusionInputs(net.fusion)
    xa, xv, _, _ = _batch()
    worker = threading.Thread(target=lambda: net(xa, xv))
    worker.start()
    worker.join()
    with pytest.raises(RuntimeError, match=r"DataParallel .* return the latents from forward"):
        fusion_inputs.latents  # noqa: B018
    net(xa, xv)
    assert fusion_inputs.latents[0].shape == (B, D)


def test_a_whole_mcr_module_pickles_with_a_method_or_module_head(tmp_path: Path) -> None:
    """torch.save(model) of a model holding MCR keeps working with MCR's head adapter."""
    net = Net()
    fuse = net.fusion.forward  # a bound method: a plain callable head
    for head in (fuse, net.fusion):
        mcr = MCRRegularizer(head, num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=2))
        torch.save(mcr, tmp_path / "mcr.pt")
        loaded = torch.load(tmp_path / "mcr.pt", weights_only=False)
        xa, xv, y, _ = _batch()
        _, zs = net(xa, xv)
        assert torch.isfinite(loaded(zs, y).loss)
