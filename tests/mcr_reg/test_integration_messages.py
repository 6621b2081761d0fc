"""Messages that name the real cause, for the mistakes a new user makes when adding MCR.

Each case was reproduced in a published training codebase: BatchNorm or Dropout behind a
plain-function head, a wrong ``output=``, ``seed=`` under ``torch.compile``, float64 models,
NaN latents, and MCR's own parameters left out of every optimizer.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import Concatenated, MCRRegularizer, _messages
from mcr_reg import functional as MF

B, C, D = 12, 3, 6


def _latents(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(B, D, generator=g, dtype=dtype, requires_grad=True)
    zv = torch.randn(B, D, generator=g, dtype=dtype, requires_grad=True)
    return za, zv, torch.arange(B) % C


def _perms() -> Tensor:
    return MF.sample_permutations(3, 2, B, generator=torch.Generator().manual_seed(1))


class NormedHead(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * D, 8), nn.BatchNorm1d(8), nn.Dropout(dropout), nn.Linear(8, C)
        )

    def forward(self, za: Tensor, zv: Tensor) -> Tensor:
        return self.net(torch.cat([za, zv], -1))


def test_batchnorm_behind_a_function_head_is_treated_as_in_a_module_head() -> None:
    torch.manual_seed(0)
    head = NormedHead()
    za, zv, y = _latents()
    per_block = MCRRegularizer(head, num_classes=C, batched=False)(
        [za, zv], y, permutations=_perms()
    )
    function = MCRRegularizer(lambda a, v: head(a, v), num_classes=C)
    with pytest.warns(RuntimeWarning, match="BatchNorm layers in training mode"):
        first = function([za, zv], y, permutations=_perms())
    second = function([za, zv], y, permutations=_perms())
    for out in (first, second):  # not the stacked call, whose statistics mix the blocks
        torch.testing.assert_close(out.importance, per_block.importance)
    stacked = MCRRegularizer(head, num_classes=C, batched=True)([za, zv], y, permutations=_perms())
    assert not torch.allclose(stacked.importance, per_block.importance)


def test_dropout_behind_a_function_head_gives_no_spurious_logits_warning() -> None:
    torch.manual_seed(0)
    head = NormedHead(dropout=0.5).eval()
    head.net[2].train()  # dropout on, BatchNorm on its running statistics
    za, zv, y = _latents()
    logits = head(za, zv)  # another dropout mask than MCR's own pass
    mcr = MCRRegularizer(lambda a, v: head(a, v), num_classes=C, latent_dims=(D, D))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            mcr([za, zv], y, logits)


class TwoOutputs(nn.Module):
    """Returns ``(fused, audio_only)``, both of the prediction's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.fused, self.audio = nn.Linear(2 * D, C), nn.Linear(D, C)

    def forward(self, za: Tensor, zv: Tensor) -> tuple[Tensor, Tensor]:
        return self.fused(torch.cat([za, zv], -1)), self.audio(za)


def test_the_logits_warning_names_a_wrong_output_among_the_causes() -> None:
    head = TwoOutputs()
    za, zv, y = _latents()
    logits = head(za, zv)[0]
    mcr = MCRRegularizer(head, num_classes=C, output=1)  # the audio-only output: wrong
    with pytest.warns(RuntimeWarning) as caught:
        mcr([za, zv], y, logits)
    message = str(caught[0].message)
    assert "not the inputs the fusion head was called with" in message
    assert "output= selects another of the head's outputs (1)" in message
    assert "dropout or BatchNorm outside nn.Module layers" in message


@pytest.mark.slow
def test_seed_under_compile_is_said_to_be_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    torch._dynamo.reset()
    monkeypatch.setattr(_messages, "_warned_generator_under_compile", [False])
    head = nn.Linear(2 * D, C)
    mcr = MCRRegularizer(lambda a, v: head(torch.cat([a, v], -1)), num_classes=C, seed=3)
    za, zv, y = _latents()
    step = torch.compile(lambda a, v: mcr([a, v], y).loss, fullgraph=True, backend="aot_eager")
    with pytest.warns(RuntimeWarning, match=r"\(seed=\.\.\.\) is not used under torch.compile"):
        step(za, zv)


def test_float64_latents_ask_for_mcr_double() -> None:
    head = nn.Linear(2 * D, C).double()
    fuse = lambda a, v: head(torch.cat([a, v], -1))  # noqa: E731
    mcr = MCRRegularizer(fuse, num_classes=C, latent_dims=(D, D))
    za, zv, y = _latents(dtype=torch.float64)
    with pytest.raises(
        TypeError, match=r"float64 but MCR's own heads .* are torch.float32: call mcr.double\(\)"
    ):
        mcr([za, zv], y)
    out = mcr.double()([za, zv], y)
    assert out.loss.dtype == torch.float64
    assert all(v.dtype == torch.float64 for v in out.terms.values())


def test_nan_latents_are_warned_about_once_by_default() -> None:
    head = nn.Linear(2 * D, C)
    fuse = lambda a, v: head(torch.cat([a, v], -1))  # noqa: E731
    za, zv, y = _latents()
    bad = zv.detach().clone()
    bad[0, 0] = float("nan")
    mcr = MCRRegularizer(fuse, num_classes=C, latent_dims=(D, D))
    with pytest.warns(RuntimeWarning, match=r"latents '1' hold NaN or Inf.*check_finite=True"):
        mcr([za, bad], y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mcr([za, bad], y)  # once
        MCRRegularizer(fuse, num_classes=C, latent_dims=(D, D), check_values=False, audit=False)(
            [za, bad], y
        )  # value checks off


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio, self.video = nn.Linear(4, D), nn.Linear(5, D)
        self.head = nn.Linear(2 * D, C)

    def fuse(self, za: Tensor, zv: Tensor) -> Tensor:
        return self.head(torch.cat([za, zv], -1))


def _train(
    model: Model, mcr: MCRRegularizer, optimizers: list[torch.optim.Optimizer], steps: int
) -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        xa, xv = torch.randn(B, 4, generator=g), torch.randn(B, 5, generator=g)
        y = torch.arange(B) % C
        za, zv = model.audio(xa), model.video(xv)
        logits = model.fuse(za, zv)
        loss = F.cross_entropy(logits, y) + mcr([za, zv], y, logits).loss
        for opt in optimizers:
            opt.zero_grad()
        loss.backward()
        for opt in optimizers:
            opt.step()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("function_head", [False, True], ids=["module", "function"])
def test_mcr_parameters_in_no_optimizer_are_warned_about(
    foreach: bool, function_head: bool
) -> None:
    model = Model()
    # a function head, or the concatenation inside a module head
    head = model.fuse if function_head else Concatenated(model.head)
    mcr = MCRRegularizer(head, num_classes=C, latent_dims=(D, D))
    encoders = torch.optim.Adam(
        [*model.audio.parameters(), *model.video.parameters()], foreach=foreach
    )
    fusion = torch.optim.SGD(model.head.parameters(), lr=0.1, foreach=foreach)
    with pytest.warns(RuntimeWarning, match=r"MCR's own parameters .* never.*mcr.parameters\(\)"):
        _train(model, mcr, [encoders, fusion], steps=6)
    assert all(p.grad is not None for p in mcr.parameters())


def test_mcr_parameters_in_an_optimizer_are_not_warned_about() -> None:
    model = Model()
    mcr = MCRRegularizer(model.fuse, num_classes=C, latent_dims=(D, D))
    optimizer = torch.optim.Adam([*model.parameters(), *mcr.parameters()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train(model, mcr, [optimizer], steps=6)
