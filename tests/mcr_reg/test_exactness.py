"""Exactness of MCRRegularizer's MIPD gradients against the plain reference (tests/mcr_reg/
reference.py), drawn by hypothesis over the head kinds MCR must handle and every option that
changes how the gradients are routed.

Head kinds: an ``nn.Module``; a plain function over a module; a function over several modules;
a function that also uses a captured ``nn.Parameter``; a module that reads a parameter it does
not register; a function whose route changes after the first step (a module it did not run
before); a captured parameter frozen on the first step and trainable later (staged unfreezing).
Every case runs several steps, because MCR learns about a head on its first step and must stay
exact when the head changes later. Dropout inside the head draws one mask per call from the
global random state; the reference replays the state MCR started from before each of its calls,
so both see the same mask (MCR's own passes replay it too). With ``head_dropout="eval"`` MCR's
passes run the head without dropout, and so does the reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import MIPD
from tests.mcr_reg import reference as R

HEAD_KINDS = (
    "module",
    "function",
    "function_of_modules",
    "function_with_parameter",
    "module_with_outside_parameter",
    "changing_route",
    "parameter_later",
    "staged_unfreezing",
)
DIVERGENCE = {
    "classification": "jsd",
    "binary": "binary_jsd",
    "regression": "squared_error",
    "multilabel": "multilabel_jsd",
}
STEPS = 3


class FeatureDropout(nn.Module):
    """Dropout with one mask over the features per call (``F.dropout`` of a ones vector)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        ones = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        return x * F.dropout(ones, self.p, training=self.training)


class Fusion(nn.Module):
    """Concatenation, a hidden layer (dropout optional) and a classifier."""

    def __init__(self, width: int, hidden: int, out: int, dropout: float) -> None:
        super().__init__()
        self.hidden = nn.Linear(width, hidden)
        self.drop = FeatureDropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(hidden, out)

    def forward(self, *zs: Tensor) -> Tensor:
        return self.classifier(self.drop(torch.tanh(self.hidden(torch.cat(zs, dim=-1)))))


class OutsideParameter(nn.Module):
    """A module head that adds a parameter it keeps outside its registered parameters."""

    def __init__(self, fusion: Fusion, outside: nn.Parameter) -> None:
        super().__init__()
        self.fusion = fusion
        self.__dict__["outside"] = outside  # not registered: named_parameters() omits it

    def forward(self, *zs: Tensor) -> Tensor:
        return self.fusion(*zs) + self.outside


class Client(nn.Module):
    """M linear encoders, the fusion, and the extra pieces some head kinds use."""

    def __init__(self, m: int, latent: int, out: int, dropout: float) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(nn.Linear(2 + i, latent) for i in range(m))
        self.fusion = Fusion(m * latent, 6, out, dropout)
        self.late = nn.Linear(m * latent, out)  # run by the changing route from step 1 on
        self.offset = nn.Parameter(torch.randn(out) * 0.3)  # used directly by some heads
        self.step = 0

    def encode(self, xs: Sequence[Tensor]) -> list[Tensor]:
        return [enc(x) for enc, x in zip(self.encoders, xs)]


def make_head(client: Client, kind: str) -> Callable[..., Tensor]:
    fusion = client.fusion
    if kind == "module":
        return fusion
    if kind == "function":
        return lambda *zs: fusion(*zs)
    if kind == "function_of_modules":
        return lambda *zs: fusion.classifier(
            fusion.drop(torch.tanh(fusion.hidden(torch.cat(zs, dim=-1))))
        )
    if kind in ("function_with_parameter", "staged_unfreezing"):
        return lambda *zs: fusion(*zs) + client.offset
    if kind == "parameter_later":
        return lambda *zs: fusion(*zs) + client.offset if client.step >= 1 else fusion(*zs)
    if kind == "module_with_outside_parameter":
        return OutsideParameter(fusion, client.offset)
    if kind == "changing_route":

        def head(*zs: Tensor) -> Tensor:
            out = fusion(*zs)
            return out + client.late(torch.cat(zs, dim=-1)) if client.step >= 1 else out

        return head
    raise ValueError(kind)


def trainable(client: Client, kind: str, step: int) -> None:
    """The parameters' requires_grad at ``step``: staged unfreezing thaws ``offset`` at step 1."""
    if kind == "staged_unfreezing":
        client.offset.requires_grad_(step >= 1)


@dataclass
class Case:
    m: int
    k: float
    task: str
    kind: str
    dtype: torch.dtype
    subsets: str | list[tuple[int, ...]]
    draws: int
    batch: int
    given_perturbed: tuple[bool, ...]
    dropout: float
    detach_reference: bool
    head_gradient: str
    batched: bool | None
    rows: str
    weight: float
    nonfinite: bool
    seed: int
    nonfinite_modality: int = 0
    head_dropout: str = "train"


@st.composite
def cases(draw: st.DrawFn) -> Case:
    m = draw(st.integers(2, 4))
    nonfinite = draw(st.booleans()) and draw(st.booleans())  # about a quarter
    if nonfinite:  # modality 0 owns no subset: under k = 0 it must get exactly nothing
        subsets: str | list[tuple[int, ...]] = draw(
            st.lists(
                st.sampled_from([s for s in MF.enumerate_subsets(m, "all") if 0 not in s]),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
    else:
        subsets = draw(st.sampled_from(["all", "singletons"]))
    dropout = draw(st.sampled_from([0.0, 0.0, 0.4]))
    given_perturbed = tuple(draw(st.booleans()) and draw(st.booleans()) for _ in range(m))
    rows = "all" if any(given_perturbed) else draw(st.sampled_from(["all", "all", "moved"]))
    return Case(
        m=m,
        k=draw(st.sampled_from([-1.0, 0.0, 1.0, 0.37, -2.5])),
        task=draw(st.sampled_from(list(DIVERGENCE))),
        kind=draw(st.sampled_from(HEAD_KINDS)),
        dtype=draw(st.sampled_from([torch.float64, torch.float64, torch.float32])),
        subsets=subsets,
        draws=draw(st.integers(1, 3)),
        batch=draw(st.integers(3, 5)),
        given_perturbed=given_perturbed,
        dropout=dropout,
        detach_reference=draw(st.booleans()),
        head_gradient=draw(st.sampled_from(["mean", "mean", "sum"])),
        batched=True if dropout > 0 else draw(st.sampled_from([None, True, False])),
        rows=rows,
        weight=draw(st.sampled_from([1.0, 0.3])),
        nonfinite=nonfinite,
        seed=draw(st.integers(0, 2**16)),
        nonfinite_modality=draw(st.sampled_from([0, m - 1])),
        head_dropout=draw(st.sampled_from(["train", "eval"])) if dropout > 0 else "train",
    )


def labels_of(case: Case, out: int) -> Tensor:
    """Labels of the case's task: classes, 0/1 values, or one 0/1 column per label."""
    if case.task == "classification":
        return torch.arange(case.batch) % out
    if case.task == "multilabel":
        return (torch.arange(case.batch * out).reshape(case.batch, out) % 3 == 0).to(case.dtype)
    return (torch.arange(case.batch) % 2).to(case.dtype)


def replaying(head: Callable[..., Tensor], state: Tensor) -> Callable[..., Tensor]:
    """``head`` called from the random state ``state`` every time (the reference's calls)."""

    def call(*zs: Tensor) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(state)
            return head(*zs)

    return call


def parameters_of(client: Client) -> tuple[list[list[Tensor]], list[Tensor]]:
    encoders = [list(e.parameters()) for e in client.encoders]
    others = [
        p
        for name, p in client.named_parameters()
        if not name.startswith("encoders.") and p.requires_grad
    ]
    return encoders, others


def inputs(case: Case, dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor | None], Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    xs = [torch.randn(case.batch, 2 + i, generator=g, dtype=torch.float64) for i in range(case.m)]
    noise = [
        torch.randn(case.draws, case.batch, 2 + i, generator=g, dtype=torch.float64) * 0.5
        if given
        else None
        for i, given in enumerate(case.given_perturbed)
    ]
    if case.nonfinite:
        xs[case.nonfinite_modality][1, 0] = float("inf")
    perms = MF.sample_permutations(case.draws, case.m, case.batch, generator=g)
    return (
        [x.to(dtype) for x in xs],
        [n if n is None else n.to(dtype) for n in noise],
        perms,
    )


def run_case(case: Case) -> None:
    torch.manual_seed(case.seed)
    out = 3 if case.task in ("classification", "multilabel") else 1
    client = Client(case.m, 4, out, case.dropout).double()
    reference_client = Client(case.m, 4, out, case.dropout).double()
    reference_client.load_state_dict(client.state_dict())
    client.to(case.dtype)
    head = make_head(client, case.kind)
    reference_head = make_head(reference_client, case.kind)
    mcr = MCRRegularizer(
        head,
        strategy=case.k,
        task=case.task,  # type: ignore[arg-type]
        num_classes=out if case.task in ("classification", "multilabel") else None,
        batched=case.batched,
        head_dropout=case.head_dropout,
        mipd=MIPD(
            weight=case.weight,
            subsets=case.subsets,
            num_permutations=case.draws,
            detach_reference=case.detach_reference,
            head_gradient=case.head_gradient,
            perturbed_rows=case.rows,
        ),
        contrastive=False,
        unimodal=False,  # type: ignore[arg-type]
    )
    # head_dropout="eval": MCR's passes run the head's modules in eval mode, so do the reference's
    reference_client.train(case.head_dropout == "train")
    labels = labels_of(case, out)
    subsets = mcr.subsets_for(case.m)
    xs, noise, perms = inputs(case, case.dtype)
    xs64, noise64, _ = inputs(case, torch.float64)
    for step in range(STEPS):
        client.step = reference_client.step = step
        trainable(client, case.kind, step)
        trainable(reference_client, case.kind, step)
        got = mcr_step(client, mcr, xs, noise, perms, labels, case, step)
        expected = reference_step(
            reference_client, reference_head, xs64, noise64, perms, labels, subsets, case, step
        )
        compare(got, expected, case, step)


def mcr_step(client, mcr, xs, noise, perms, labels, case: Case, step: int):
    client.zero_grad(set_to_none=True)
    zs = client.encode(xs)
    perturbed = [None if n is None else client.encoders[i](n) for i, n in enumerate(noise)]
    permutations = None if all(case.given_perturbed) else perms
    torch.manual_seed(1000 + step)  # the state every head call of this step starts from
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-finite latent, BatchNorm-free per-block calls
        result = mcr(
            zs,
            labels,
            permutations=permutations,
            perturbed_latents=perturbed if any(case.given_perturbed) else None,
        )
    result.loss.backward()
    return grads_of(client, case.kind)


def reference_step(client, head, xs, noise, perms, labels, subsets, case: Case, step: int):
    zs = client.encode(xs)
    perturbed = [None if n is None else client.encoders[i](n) for i, n in enumerate(noise)]
    torch.manual_seed(1000 + step)
    call = replaying(head, torch.get_rng_state())
    rows = R.permuted_rows(zs, perms, perturbed)
    masks = (
        MF.permutation_row_mask(perms, subsets, "moved").double() if case.rows == "moved" else None
    )

    def loss_of(subset: Sequence[int]) -> Tensor:
        weights = None if masks is None else masks[list(subsets).index(tuple(subset))]
        return R.subset_loss(
            call, zs, subset, rows, case.draws, DIVERGENCE[case.task],
            detach_reference=case.detach_reference, weights=weights,
        )  # fmt: skip

    encoders, others = parameters_of(client)
    enc_grads, other_grads = R.game_gradients(
        loss_of, subsets, encoders, others, case.k, case.weight, case.head_gradient
    )
    expected = {}
    for i, e in enumerate(client.encoders):
        for (name, _), g in zip(e.named_parameters(), enc_grads[i]):
            expected[f"encoders.{i}.{name}"] = g
    names = [
        n for n, p in client.named_parameters() if not n.startswith("encoders.") and p.requires_grad
    ]
    expected.update(zip(names, other_grads))
    return {n: expected.get(n) for n, _ in client.named_parameters() if uses(n, case.kind, step)}


def uses(name: str, kind: str, step: int) -> bool:
    """Whether the head of ``kind`` can send a gradient to parameter ``name`` at ``step``."""
    if name.startswith("late."):
        return kind == "changing_route" and step >= 1
    if name == "offset":
        return kind in ("function_with_parameter", "module_with_outside_parameter") or (
            kind in ("staged_unfreezing", "parameter_later") and step >= 1
        )
    return True


def grads_of(client: Client, kind: str) -> dict[str, Tensor]:
    return {
        n: p.grad.double() if p.grad is not None else torch.zeros_like(p, dtype=torch.float64)
        for n, p in client.named_parameters()
    }


def compare(got: dict[str, Tensor], expected: dict[str, Tensor | None], case: Case, step: int):
    for name, want in expected.items():
        have = got[name]
        if case.nonfinite and not name.startswith("encoders."):
            # the promise for non-finite rows is the encoders' (docs/semantics.md): a head
            # share of 0 on the second-pass route is 1 - 1 times a non-finite gradient
            continue
        if want is None:
            want = torch.zeros_like(have)
        if case.dtype == torch.float64:
            rtol, atol = 1e-9, 1e-11
        else:  # float32 against the float64 reference: rounding of the float32 run
            rtol, atol = 2e-4, 2e-5 * max(1.0, float(want.abs().nan_to_num().max()))
        torch.testing.assert_close(
            have,
            want,
            rtol=rtol,
            atol=atol,
            equal_nan=True,
            msg=lambda m, name=name: f"{name} step {step} {case}: {m}",
        )
        if case.nonfinite and case.k == 0.0 and name.startswith("encoders.0."):
            assert torch.equal(have, torch.zeros_like(have)), f"{name} step {step}: {have}"


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_mcr_gradients_equal_the_reference(case: Case) -> None:
    run_case(case)


# --------------------------------------------------------------------------- the cases one by one


def case_of(**changes: object) -> Case:
    """Greedy, two modalities, float64, MIPD only: the head's share is 0 for every subset."""
    fields: dict[str, object] = dict(
        m=2, k=-1.0, task="classification", kind="module", dtype=torch.float64,
        subsets="all", draws=2, batch=5, given_perturbed=(False, False), dropout=0.0,
        detach_reference=False, head_gradient="mean", batched=None, rows="all", weight=1.0,
        nonfinite=False, seed=3,
    )  # fmt: skip
    fields.update(changes)
    fields["given_perturbed"] = (False,) * int(fields["m"])  # type: ignore[call-overload]
    return Case(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["changing_route", "parameter_later", "staged_unfreezing"])
@pytest.mark.parametrize("k", [-1.0, 0.0, 0.37])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_a_function_head_whose_route_changes_stays_exact(
    kind: str, k: float, dropout: float
) -> None:
    """From step 1 on the head runs a module it did not run before, uses a captured parameter
    directly, or reads a parameter that was frozen on step 0: every step equals the reference."""
    run_case(case_of(kind=kind, k=k, dropout=dropout, batched=True if dropout else None))


def test_the_head_gets_nothing_under_greedy_with_two_modalities_whatever_its_route() -> None:
    for kind in ("changing_route", "parameter_later", "staged_unfreezing"):
        case = case_of(kind=kind)
        torch.manual_seed(0)
        client = Client(2, 4, 3, 0.0).double()
        mcr = MCRRegularizer(make_head(client, kind), contrastive=False, unimodal=False)
        xs, _, perms = inputs(case, torch.float64)
        labels = torch.arange(case.batch) % 3
        for step in range(4):
            client.step = step
            trainable(client, kind, step)
            got = mcr_step(client, mcr, xs, [None, None], perms, labels, case, step)
            for name, g in got.items():
                if not name.startswith("encoders."):
                    assert torch.equal(g, torch.zeros_like(g)), (kind, step, name)


@pytest.mark.parametrize("where", [0, 1])
@pytest.mark.parametrize("detach_reference", [False, True])
def test_independent_non_owner_gets_exactly_zero_next_to_a_non_finite_row(
    where: int, detach_reference: bool
) -> None:
    """k = 0, only modality 1 perturbed, an infinite input in one modality's row: modality 0
    owns no term, so its encoder gets exactly 0 from MIPD, wherever the non-finite row is."""
    torch.manual_seed(0)
    client = Client(2, 4, 3, 0.0).double()
    case = case_of(k=0.0, subsets=[(1,)], nonfinite=True, nonfinite_modality=where,
                   detach_reference=detach_reference)  # fmt: skip
    mcr = MCRRegularizer(
        client.fusion, strategy="independent", check_values=False, mipd=MIPD(subsets=[(1,)], detach_reference=detach_reference), contrastive=False, unimodal=False
    )  # fmt: skip
    xs, _, perms = inputs(case, torch.float64)
    got = mcr_step(client, mcr, xs, [None, None], perms, torch.arange(5) % 3, case, 0)
    for name in ("encoders.0.weight", "encoders.0.bias"):
        assert torch.equal(got[name], torch.zeros_like(got[name])), got[name]
    assert not bool(got["encoders.1.weight"].isfinite().all())  # the owner's term is not finite


@pytest.mark.parametrize("k", [0.37, -2.5, 0.1])
@pytest.mark.parametrize("kind", ["module", "function"])
def test_a_numeric_k_is_exact_in_float64(k: float, kind: str) -> None:
    """The row factors are built in the latents' dtype: k = 0.37 is not rounded to float32."""
    case = case_of(k=k, kind=kind, m=3, subsets="all")
    torch.manual_seed(case.seed)
    client = Client(3, 4, 3, 0.0).double()
    reference_client = Client(3, 4, 3, 0.0).double()
    reference_client.load_state_dict(client.state_dict())
    mcr = MCRRegularizer(make_head(client, kind), strategy=k, mipd=MIPD(weight=1.0), contrastive=False, unimodal=False )  # fmt: skip
    xs, noise, perms = inputs(case, torch.float64)
    labels = torch.arange(case.batch) % 3
    got = mcr_step(client, mcr, xs, noise, perms, labels, case, 0)
    expected = reference_step(reference_client, make_head(reference_client, kind), xs, noise,
                              perms, labels, mcr.subsets_for(3), case, 0)  # fmt: skip
    for name, want in expected.items():
        assert want is not None
        torch.testing.assert_close(
            got[name], want, rtol=1e-12, atol=1e-14, msg=lambda m, name=name: f"{name}: {m}"
        )
