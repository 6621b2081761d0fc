"""torch.compile of a training step with MCR: one graph, no breaks, the numbers of eager mode.

The compiled function is the forward part of a training step (encoders, fusion head, task loss,
MCR); ``backward`` runs on its result as usual. Inductor also works but takes about a minute to
compile on a 2-core CPU, so the tests compile with ``backend="aot_eager"`` (the same Dynamo
graph capture and AOT autograd, without code generation).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import Tensor
from torch._dynamo.testing import CompileCounterWithBackend

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import MIPD, Unimodal
from tests.mcr_reg.helpers import Toy, assert_grads_equal, build, formula_grads

# compiling takes several seconds per test on a small CPU
pytestmark = pytest.mark.slow

BATCH = 8

CASES = {
    # name: (task, out_dim, strategy, subsets, modalities, extra MCR options)
    "classification-greedy-3mod": ("classification", 4, "greedy", "all", 3, {"ceb": True}),
    "regression-collaborative": ("regression", 1, "collaborative", "all", 2, {"ceb": True}),
    "binary-k0.5-singletons": ("binary", 1, 0.5, "singletons", 3, {}),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()


def _setup(case: str, *, seed: int = 0) -> tuple[Toy, MCRRegularizer, list[Tensor], Tensor]:
    task, out_dim, strategy, subsets, m, extra = CASES[case]
    torch.manual_seed(seed)
    in_dims = [5, 7, 3][:m]
    model = Toy(in_dims, [6] * m, out_dim)
    mcr = MCRRegularizer(
        model.head,
        strategy=strategy,
        task=task,
        num_classes=out_dim if task == "classification" else None,
        latent_dims=(6,) * m,
        mipd=MIPD(num_permutations=4, subsets=subsets),
        unimodal=Unimodal(weight=0.1),
        **extra,
    )
    g = torch.Generator().manual_seed(seed + 1)
    xs = [torch.randn(BATCH, d, generator=g) for d in in_dims]
    if task == "classification":
        y = torch.arange(BATCH) % out_dim
    elif task == "binary":
        y = (torch.arange(BATCH) % 2).float()
    else:
        y = torch.randn(BATCH, generator=g) * 2
    return model, mcr, xs, y


def _task_loss(task: str, logits: Tensor, y: Tensor) -> Tensor:
    if task == "classification":
        return F.cross_entropy(logits, y)
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y)
    return F.l1_loss(logits.squeeze(-1), y)


def _step_fn(case: str, model: Toy, mcr: MCRRegularizer):
    task = CASES[case][0]

    def step(xs: list[Tensor], y: Tensor, perms: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        zs = model.encode(xs)
        logits = model.head(*zs)
        out = mcr(zs, y, logits, permutations=perms)
        loss = _task_loss(task, logits, y) + out.loss
        return loss, out.terms["mipd"], out.importance

    return step


def _grads(*modules: torch.nn.Module) -> list[Tensor]:
    return [p.grad.clone() for m in modules for p in m.parameters() if p.grad is not None]


@pytest.mark.parametrize(
    ("case", "explicit_permutations"),
    [(c, True) for c in sorted(CASES)] + [("classification-greedy-3mod", False)],
)
def test_explain_finds_one_graph_and_no_breaks(case: str, explicit_permutations: bool) -> None:
    model, mcr, xs, y = _setup(case)
    m = len(xs)
    perms = MF.sample_permutations(4, m, BATCH, generator=torch.Generator().manual_seed(0))
    explanation = torch._dynamo.explain(_step_fn(case, model, mcr))(
        xs, y, perms if explicit_permutations else None
    )
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_fullgraph_compile_matches_eager(case: str) -> None:
    model, mcr, xs, y = _setup(case)
    perms = MF.sample_permutations(4, len(xs), BATCH, generator=torch.Generator().manual_seed(3))
    step = _step_fn(case, model, mcr)

    loss, mipd, importance = step(xs, y, perms)
    loss.backward()
    eager_grads = _grads(model, mcr)

    model.zero_grad(set_to_none=True)
    mcr.zero_grad(set_to_none=True)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    c_loss, c_mipd, c_importance = compiled(xs, y, perms)
    c_loss.backward()
    compiled_grads = _grads(model, mcr)

    torch.testing.assert_close(c_loss, loss)
    torch.testing.assert_close(c_mipd, mipd)
    torch.testing.assert_close(c_importance, importance, equal_nan=True)
    assert len(compiled_grads) == len(eager_grads) > 0
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


def test_compiled_training_loop_decreases_the_loss_and_keeps_one_graph() -> None:
    case = "classification-greedy-3mod"
    model, mcr, xs, y = _setup(case)
    opt = torch.optim.Adam([*model.parameters(), *mcr.parameters()], lr=1e-2)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(_step_fn(case, model, mcr), fullgraph=True, backend=counter)
    losses = []
    for _ in range(6):
        opt.zero_grad(set_to_none=True)
        loss, _, _ = compiled(xs, y, None)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert counter.frame_count == 1  # no recompilation across steps
    assert losses[-1] < losses[0]


def test_compiled_permutations_come_from_the_global_rng() -> None:
    """Dynamo cannot trace torch.Generator objects: under compile MCR draws from the global RNG.

    So a compiled step is reproducible through ``torch.manual_seed`` (not through MCR's
    ``generator``), and it advances the global RNG.
    """
    case = "classification-greedy-3mod"
    model, mcr, xs, y = _setup(case)
    mcr.generator = torch.Generator().manual_seed(123)  # ignored while compiling
    compiled = torch.compile(_step_fn(case, model, mcr), fullgraph=True, backend="aot_eager")

    torch.manual_seed(7)
    state_before = torch.get_rng_state()
    first = compiled(xs, y, None)[1]
    assert not torch.equal(torch.get_rng_state(), state_before)  # the global RNG advanced
    torch.manual_seed(7)
    again = compiled(xs, y, None)[1]
    torch.manual_seed(8)
    other = compiled(xs, y, None)[1]

    torch.testing.assert_close(again, first)
    assert not torch.equal(other, first)


def test_value_checks_are_skipped_while_compiling_but_run_in_eager() -> None:
    case = "classification-greedy-3mod"
    model, mcr, xs, y = _setup(case)
    assert mcr.check_values  # the default
    bad = torch.zeros(4, len(xs), BATCH, dtype=torch.long)  # rows that are not permutations
    with pytest.raises(ValueError, match="permutation"):
        _step_fn(case, model, mcr)(xs, y, bad)
    compiled = torch.compile(_step_fn(case, model, mcr), fullgraph=True, backend="aot_eager")
    loss, _, _ = compiled(xs, y, bad)  # no host sync, so no check: it computes
    assert torch.isfinite(loss)


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("strategy", ["greedy", "independent", 0.5, "collaborative"])
@pytest.mark.parametrize("head", ["module", "function"])
def test_compiled_mipd_follows_the_game(m: int, strategy: str | float, head: str) -> None:
    """The gradients of a compiled step (fullgraph) are the game's formula, head included."""
    model, xs, perms = build(m, seed=m)
    k = MF.strategy_factor(strategy)
    expected = formula_grads(model, xs, perms, MF.enumerate_subsets(m), k, weight=0.3)
    fusion = model.head if head == "module" else (lambda *zs: model.head(*zs))
    mcr = MCRRegularizer(
        fusion, strategy=strategy, mipd=MIPD(weight=0.3), contrastive=False, unimodal=False
    )
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)

    def step(xs: list[Tensor]) -> Tensor:
        return mcr(model.encode(xs), labels, permutations=perms).loss

    model.zero_grad()
    torch.compile(step, fullgraph=True, backend="aot_eager")(xs).backward()
    got = {
        n: p.grad if p.grad is not None else torch.zeros_like(p)
        for n, p in model.named_parameters()
    }
    assert_grads_equal(got, expected)


def test_a_step_compiled_before_any_eager_call_compiles() -> None:
    """In a fresh process the first MCR call may be a compiled one (MCR's per-thread state is
    then first touched inside the traced frame)."""
    code = (
        "import torch\n"
        "from mcr_reg import MCRRegularizer\n"
        "from tests.mcr_reg.helpers import build\n"
        "model, xs, perms = build(2, seed=0)\n"
        "mcr = MCRRegularizer(model.head, contrastive=False, unimodal=False)\n"
        "labels = torch.zeros(6, dtype=torch.long)\n"
        "step = lambda xs: mcr(model.encode(xs), labels, permutations=perms).loss\n"
        "loss = torch.compile(step, fullgraph=True, backend='aot_eager')(xs)\n"
        "loss.backward()\n"
        "print(float(loss))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 0  # -sum of mean divergences
