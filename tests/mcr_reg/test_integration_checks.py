"""What MCR tells a user who wires it up wrongly.

1. latents that are not the fusion head's inputs: a one-time warning when the logits passed
   differ from MCR's own unperturbed prediction;
3. heads that return tuples or dicts: ``output=`` selects the prediction, and without it the
   error names the batch and shows the fix;
4. ``generator=`` under ``torch.compile``: a one-time warning that the global RNG is used.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import MCRRegularizer, _messages
from mcr_reg import functional as MF
from mcr_reg.terms import MIPD

B, C, D = 8, 3, 6


class ReprojectingGate(nn.Module):
    """A gated head that re-projects its inputs: only (za, zv) as given are its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.proj_a, self.proj_v = nn.Linear(D, D), nn.Linear(D, D)
        self.gate, self.out = nn.Linear(D, D), nn.Linear(D, C)

    def projected(self, za: Tensor, zv: Tensor) -> tuple[Tensor, Tensor]:
        return torch.relu(self.proj_a(za)), torch.relu(self.proj_v(zv))

    def forward(self, za: Tensor, zv: Tensor) -> Tensor:
        return self.out(torch.sigmoid(self.gate(za)) * zv)


def _inputs(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randn(B, D, generator=g), torch.arange(B) % C


def _logit_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "fusion_head(*latents)" in str(w.message)]


# ---------------------------------------------------------------------- point 1


def test_latents_that_are_not_the_head_inputs_warn_once_with_the_difference() -> None:
    torch.manual_seed(0)
    head = ReprojectingGate()
    za, zv, y = _inputs()
    pa, pv = head.projected(za, zv)
    logits = head(pa, pv)  # what the model's loss used
    mcr = MCRRegularizer(head, num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=4))
    expected = float((head(za, zv) - logits).detach().abs().max())
    assert expected > 0.05
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcr([za, zv], y, logits)  # the wrong latents: the encoders' outputs
        mcr([za, zv], y, logits)
    messages = _logit_warnings(caught)
    assert len(messages) == 1, messages
    assert f"{expected:.3g}" in messages[0]
    assert "not the inputs the fusion head was called with" in messages[0]
    assert all(w.category is RuntimeWarning for w in caught if w.message in messages)


def test_matching_latents_do_not_warn_also_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    head = ReprojectingGate()
    za, zv, y = _inputs()
    mcr = MCRRegularizer(head, num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcr([za, zv], y, head(za, zv))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            big = [za * 30, zv * 30]  # logits of tens: bf16 rounding grows with them
            mcr(big, y, head(*big))
    assert _logit_warnings(caught) == []


def test_no_check_without_value_checks_or_with_a_random_head() -> None:
    torch.manual_seed(0)
    head = ReprojectingGate()
    za, zv, y = _inputs()
    wrong = head(*head.projected(za, zv))
    quiet = MCRRegularizer(head, num_classes=C, latent_dims=(D, D), check_values=False)

    class DropoutHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop, self.fc = nn.Dropout(0.5), nn.Linear(2 * D, C)

        def forward(self, a: Tensor, b: Tensor) -> Tensor:
            return self.fc(self.drop(torch.cat([a, b], dim=-1)))

    dropout_head = DropoutHead()
    noisy = MCRRegularizer(dropout_head, num_classes=C, latent_dims=(D, D))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet([za, zv], y, wrong)
        noisy([za, zv], y, dropout_head(za, zv))  # a different dropout mask: not comparable
    assert _logit_warnings(caught) == []


@pytest.mark.parametrize("shape", ["(B,)", "(B, 1)"])
def test_the_logits_check_reads_one_output_predictions(shape: str) -> None:
    """Regression and binary heads: logits of shape (B,) or (B, 1) against MCR's (B, 1)."""
    torch.manual_seed(0)
    head = nn.Linear(2 * D, 1)
    fuse = lambda a, b: head(torch.cat([a, b], dim=-1))  # noqa: E731
    za, zv, _ = _inputs()
    y = torch.randn(B)
    mcr = MCRRegularizer(fuse, task="regression", latent_dims=(D, D), mipd=MIPD(num_permutations=4))
    right = fuse(za, zv)
    wrong = fuse(za, zv.flip(0))  # the video latents of other samples
    if shape == "(B,)":
        right, wrong = right.squeeze(-1), wrong.squeeze(-1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcr([za, zv], y, right)
        assert _logit_warnings(caught) == []
        mcr([za, zv], y, wrong)
    assert len(_logit_warnings(caught)) == 1


# ---------------------------------------------------------------------- point 3


class TupleHead(nn.Module):
    """Returns (audio logits, video logits, fused logits), like many published models."""

    def __init__(self) -> None:
        super().__init__()
        self.fa, self.fv = nn.Linear(D, C), nn.Linear(D, C)

    def forward(self, za: Tensor, zv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, v = self.fa(za), self.fv(zv)
        return a, v, a + v


class DictHead(TupleHead):
    def forward(self, za: Tensor, zv: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        a, v, fused = super().forward(za, zv)
        return {"audio": a, "video": v, "logits": fused}


def _run(head: nn.Module, perms: Tensor, **kw: object) -> tuple[Tensor, list[Tensor]]:
    torch.manual_seed(0)
    za, zv, y = _inputs()
    za.requires_grad_(True)
    mcr = MCRRegularizer(
        head, num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=4), **kw
    )  # type: ignore[arg-type]
    out = mcr([za, zv], y, permutations=perms)
    out.loss.backward()
    return out.loss.detach(), [
        p.grad.clone() for p in [za, *head.parameters()] if p.grad is not None
    ]


def test_output_selects_the_prediction_of_a_tuple_or_dict_head() -> None:
    perms = MF.sample_permutations(4, 2, B, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    head = TupleHead()
    fused_only = lambda za, zv: head(za, zv)[2]  # noqa: E731
    # the reference: the one-line wrapper that output= replaces
    torch.manual_seed(0)
    za, zv, y = _inputs()
    za.requires_grad_(True)
    mcr = MCRRegularizer(
        fused_only, num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=4)
    )
    ref = mcr([za, zv], y, permutations=perms)
    ref.loss.backward()
    ref_grads = [za.grad.clone(), *(p.grad.clone() for p in head.parameters())]
    head.zero_grad(set_to_none=True)
    for selector in (2, -1):
        loss, grads = _run(head, perms, output=selector)
        torch.testing.assert_close(loss, ref.loss.detach())
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b)
        head.zero_grad(set_to_none=True)
    dict_head = DictHead()
    dict_head.load_state_dict(head.state_dict())
    loss, _ = _run(dict_head, perms, output="logits")
    torch.testing.assert_close(loss, ref.loss.detach())


def test_a_tuple_head_without_output_gets_an_error_naming_the_batch_and_the_fix() -> None:
    head = TupleHead()
    za, zv, y = _inputs()
    mcr = MCRRegularizer(head, num_classes=C, latent_dims=(D, D), mipd=MIPD(num_permutations=4))
    with pytest.raises(TypeError) as info:
        mcr([za, zv], y)
    message = str(info.value)
    assert "returned a tuple of 3" in message
    assert f"latents with batch {B}" in message
    assert "output=" in message and "lambda" in message
    # three outputs of the prediction's shape: MCR lists them and does not guess one
    assert "Entries [0, 1, 2] all have the prediction's shape" in message
    assert "output=INDEX" in message
    assert not any(f"output={i}" in message for i in range(3))


class OneFitHead(nn.Module):
    """Returns ``(features, logits)``: only the logits have the prediction's width."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * D, C)

    def forward(self, za: Tensor, zv: Tensor) -> tuple[Tensor, Tensor]:
        joined = torch.cat([za, zv], dim=-1)
        return joined, self.linear(joined)


def test_a_single_output_of_the_prediction_shape_is_suggested() -> None:
    za, zv, y = _inputs()
    mcr = MCRRegularizer(OneFitHead(), num_classes=C, mipd=MIPD(num_permutations=4))
    with pytest.raises(TypeError, match=r"output=1\)"):
        mcr([za, zv], y)


def test_bad_output_selectors_are_named() -> None:
    za, zv, y = _inputs()
    with pytest.raises(ValueError, match=r"output='nope'.*keys \['audio', 'video', 'logits'\]"):
        MCRRegularizer(DictHead(), num_classes=C, output="nope")([za, zv], y)
    with pytest.raises(ValueError, match=r"output=5.*tuple of 3"):
        MCRRegularizer(TupleHead(), num_classes=C, output=5)([za, zv], y)
    with pytest.raises(TypeError, match=r"output=2 .* returned a Tensor"):
        MCRRegularizer(nn.Bilinear(D, D, C), num_classes=C, output=2)([za, zv], y)
    with pytest.raises(TypeError, match="expected output to be None, an int or a str"):
        MCRRegularizer(TupleHead(), num_classes=C, output=1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- point 4


@pytest.mark.slow
def test_generator_under_compile_warns_once_and_keeps_one_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_messages, "_warned_generator_under_compile", [False])
    torch._dynamo.reset()
    torch.manual_seed(0)
    head = nn.Linear(2 * D, C)
    fuse = lambda a, b: head(torch.cat([a, b], dim=-1))  # noqa: E731
    mcr = MCRRegularizer(
        fuse,
        num_classes=C,
        latent_dims=(D, D),
        generator=torch.Generator().manual_seed(0),
        mipd=MIPD(num_permutations=4),
    )
    za, zv, y = _inputs()

    def step(za: Tensor, zv: Tensor, y: Tensor) -> Tensor:
        logits = fuse(za, zv)
        return F.cross_entropy(logits, y) + mcr([za, zv], y, logits).loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step(za, zv, y)  # eager: the generator is used, nothing to say
        assert [w for w in caught if "generator" in str(w.message)] == []
        compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
        compiled(za, zv, y)
        compiled(za, zv, y)
        torch._dynamo.reset()
        torch.compile(step, fullgraph=True, backend="aot_eager")(za, zv, y)  # a recompile
    about = [str(w.message) for w in caught if "generator" in str(w.message)]
    assert len(about) == 1, about
    assert "torch.compile" in about[0] and "global RNG" in about[0]
    torch._dynamo.reset()


@pytest.mark.slow
def test_output_selector_and_fusion_inputs_compile_to_one_graph() -> None:
    """A tuple head with output=, its inputs captured by FusionInputs: still one graph, and the
    compiled step gives the eager numbers."""
    from mcr_reg import FusionInputs

    torch._dynamo.reset()
    torch.manual_seed(0)
    encoders = nn.ModuleList([nn.Linear(D, D), nn.Linear(D, D)])
    head = TupleHead()
    fusion_inputs = FusionInputs(head)
    mcr = MCRRegularizer(
        head, num_classes=C, latent_dims=(D, D), output=-1, mipd=MIPD(num_permutations=4)
    )
    za, zv, y = _inputs()
    perms = MF.sample_permutations(4, 2, B, generator=torch.Generator().manual_seed(0))

    def step(xa: Tensor, xv: Tensor, y: Tensor, perms: Tensor) -> Tensor:
        logits = head(torch.tanh(encoders[0](xa)), torch.tanh(encoders[1](xv)))[-1]
        out = mcr(fusion_inputs.latents, y, logits, permutations=perms)
        return F.cross_entropy(logits, y) + out.loss

    explanation = torch._dynamo.explain(step)(za, zv, y, perms)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    eager = step(za, zv, y, perms)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(za, zv, y, perms)
    torch.testing.assert_close(compiled, eager)
    torch._dynamo.reset()
