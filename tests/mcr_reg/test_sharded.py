"""MCR under DDP and FSDP2 (``fully_shard``): 2 processes, gloo backend, CPU, float64.

Every cell of the grid (wrapper x modalities x strategy x head kind) runs two steps of a model
whose ``forward`` returns the task loss plus MCR's loss (MIPD with every subset, the gathered
contrastive term, CEB and MCR's own unimodal heads), each rank on its slice of the batch with
its own permutations. The reference is one process on the concatenated batch with the ranks'
permutations laid out block-diagonally (docs/distributed.md): the averaged gradients of the
wrapped model must equal its gradients to float64 rounding, for the encoders, the fusion head
(whose share of the MIPD gradient the game fixes) and MCR's own parameters.

The resume test saves a sharded run with ``torch.distributed.checkpoint`` (model, optimizer and
MCR's per-rank random state), continues it in a fresh model and optimizer, and compares with the
run that was not interrupted.
"""

from __future__ import annotations

import gc
import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817

from mcr_reg import functional as MF
from tests.mcr_reg.helpers import LossNet, launch_gloo

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

WORLD = 2
BATCH = 6  # per rank
CLASSES = 3
DRAWS = 3
LATENT = 5

WRAPPERS = ("ddp", "fully_shard", "fully_shard_root_only")
MODALITIES = (2, 3)
STRATEGIES: tuple[str | float, ...] = ("greedy", "independent", 0.5, "collaborative")
HEADS = ("module", "function")
CELLS = list(itertools.product(WRAPPERS, MODALITIES, STRATEGIES, HEADS))


def cell_id(cell: tuple[str, int, str | float, str]) -> str:
    wrapper, m, strategy, head = cell
    return f"{wrapper}-M{m}-{strategy}-{head}"


def Net(m: int, strategy: str | float, head: str, *, gather: bool) -> LossNet:
    """M linear encoders, a concat fusion head, and MCR; ``forward`` returns the training loss."""
    in_dims = [3 + i for i in range(m)]
    return LossNet(in_dims, LATENT, CLASSES, DRAWS, gather=gather, strategy=strategy, head=head)


def _full(t: Tensor) -> Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def _wrap(net: LossNet, wrapper: str) -> nn.Module:
    if wrapper == "ddp":
        return DDP(net)
    if wrapper == "fully_shard":
        fully_shard(net.model.head)  # the fusion head is its own unit, as large heads would be
    fully_shard(net)
    return net


# --------------------------------------------------------------------------- the grid


def _grid_worker(rank: int, out_file: str) -> None:
    errors: dict[str, dict[str, float]] = {}
    for cell in CELLS:
        wrapper, m, strategy, head = cell
        torch.manual_seed(0)
        net = Net(m, strategy, head, gather=True).double()
        reference = Net(m, strategy, head, gather=False).double()
        reference.load_state_dict(net.state_dict())
        g = torch.Generator().manual_seed(1)
        xs = [torch.randn(WORLD * BATCH, 3 + i, generator=g, dtype=torch.float64) for i in range(m)]
        y = torch.randint(0, CLASSES, (WORLD * BATCH,), generator=g)
        perms = [MF.sample_permutations(DRAWS, m, BATCH, generator=g) for _ in range(WORLD)]
        local = slice(rank * BATCH, (rank + 1) * BATCH)

        wrapped = _wrap(net, wrapper)
        block_diagonal = torch.cat([p + r * BATCH for r, p in enumerate(perms)], dim=-1)
        worst: dict[str, float] = {"encoders": 0.0, "head": 0.0, "mcr": 0.0}
        # two steps on the same batch: the first finds out how to apply the head's share, the
        # second uses what it found (one pass for function heads over plain modules)
        for _ in range(2):
            net.zero_grad(set_to_none=True)
            reference.zero_grad(set_to_none=True)
            wrapped([x[local] for x in xs], y[local], perms[rank]).backward()
            reference(xs, y, block_diagonal).backward()
            for (name, p), q in zip(net.named_parameters(), reference.parameters()):
                got = _full(p.grad) if p.grad is not None else torch.zeros_like(q)
                want = q.grad if q.grad is not None else torch.zeros_like(q)
                part = "mcr" if name.startswith("mcr.") else name.split(".")[1]  # model.encoders
                worst[part] = max(worst[part], float((got - want).abs().max()))
        errors[cell_id(cell)] = worst
        del wrapped, net
        gc.collect()
    if rank == 0:
        Path(out_file).write_text(json.dumps(errors))


@pytest.fixture(scope="module")
def grid_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    folder = tmp_path_factory.mktemp("sharded")
    out = folder / "errors.json"
    launch_gloo(_grid_worker, folder, str(out), world=WORLD)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_gradients_equal_one_process_on_the_whole_batch(
    grid_errors: dict[str, dict[str, float]], cell: tuple[str, int, str | float, str]
) -> None:
    worst = grid_errors[cell_id(cell)]
    assert set(worst) == {"encoders", "head", "mcr"}
    for part, err in worst.items():
        assert err <= 1e-12, f"{cell_id(cell)}: {part} gradient differs by {err:.3g}"


def test_the_grid_covers_the_head_share_that_differs_from_the_plain_sum() -> None:
    """The cells are not vacuous: in all but the collaborative ones the head's share c(S)
    differs from 1, so a plain-sum head gradient would fail them."""
    for m in MODALITIES:
        subsets = MF.enumerate_subsets(m, "all")
        for strategy in STRATEGIES:
            shares = MF.head_factors(subsets, m, MF.strategy_factor(strategy))
            assert (strategy == "collaborative") == all(c == 1.0 for c in shares)


# --------------------------------------------------------------------------- resume


def _steps(
    net: LossNet, optimizer: torch.optim.Optimizer, rank: int, start: int, count: int
) -> None:
    for step in range(start, start + count):
        g = torch.Generator().manual_seed(100 + step)
        xs = [torch.randn(WORLD * BATCH, d, generator=g) for d in (3, 4)]
        y = torch.randint(0, CLASSES, (WORLD * BATCH,), generator=g)
        local = slice(rank * BATCH, (rank + 1) * BATCH)
        optimizer.zero_grad(set_to_none=True)
        net([x[local] for x in xs], y[local]).backward()  # MCR's own permutations
        optimizer.step()


def _sharded_run(rank: int, seed: int) -> tuple[LossNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = Net(2, "greedy", "module", gather=True)
    net.mcr.manual_seed(seed + rank)  # one permutation stream per rank
    _wrap(net, "fully_shard")
    return net, torch.optim.Adam(net.parameters(), lr=1e-2)


def _resume_worker(rank: int, folder: str) -> None:
    checkpoint = Path(folder) / "checkpoint"
    # uninterrupted: 4 steps
    net, optimizer = _sharded_run(rank, seed=10)
    _steps(net, optimizer, rank, 0, 4)
    straight = [_full(p.detach()).clone() for p in net.parameters()]

    # interrupted after 2 steps: save model, optimizer and MCR's random state
    net, optimizer = _sharded_run(rank, seed=10)
    _steps(net, optimizer, rank, 0, 2)
    model_state, optim_state = get_state_dict(net, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.save(state, checkpoint_id=checkpoint)
    torch.save(net.mcr.get_extra_state(), Path(folder) / f"mcr-rank{rank}.pt")

    # a fresh run with another seed resumes from the checkpoint
    net, optimizer = _sharded_run(rank, seed=99)
    model_state, optim_state = get_state_dict(net, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=checkpoint)
    set_state_dict(net, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    net.mcr.set_extra_state(torch.load(Path(folder) / f"mcr-rank{rank}.pt"))
    _steps(net, optimizer, rank, 2, 2)
    resumed = [_full(p.detach()) for p in net.parameters()]

    for (name, _), a, b in zip(net.named_parameters(), straight, resumed):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_a_resumed_sharded_run_continues_exactly(tmp_path: Path) -> None:
    launch_gloo(_resume_worker, tmp_path, str(tmp_path), world=WORLD)
