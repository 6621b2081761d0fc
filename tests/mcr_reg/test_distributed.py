"""MCR inside DistributedDataParallel: 2 processes, gloo backend, CPU.

What is checked (docs/distributed.md explains the rules):

* a model whose forward includes MCR trains under DDP without ``find_unused_parameters``, and the
  ranks' parameters stay identical while each rank sees different data;
* with ``gather_distributed=True`` the contrastive term sees the global batch: DDP's averaged
  gradient equals the gradient of one process on the concatenated batch (with the per-rank
  permutations laid out block-diagonally), and each rank's local gradient of the contrastive
  term is ``world_size`` times the single-process gradient before DDP averages;
* gradient accumulation with ``no_sync`` over micro-batches gives the parameters of one step on
  the whole batch, for the terms whose value is a mean over samples (task, MIPD with the
  micro-batches' permutations, CEB, unimodal).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import Contrastive
from tests.mcr_reg.helpers import LossNet, launch_gloo, ref_ntxent

pytestmark = pytest.mark.ddp

WORLD = 2
BATCH = 6  # per rank (per micro-batch in the accumulation test)
CLASSES = 3
DRAWS = 4
IN_DIMS = (5, 7)


def Net(*, gather: bool, contrastive_weight: float = 1.0) -> LossNet:
    """Two linear encoders, a fusion head, and MCR; ``forward`` returns the training loss."""
    return LossNet(IN_DIMS, 6, CLASSES, DRAWS, gather=gather, contrastive_weight=contrastive_weight)


def _data(seed: int, n: int) -> tuple[list[Tensor], Tensor]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, d, generator=g) for d in IN_DIMS]
    return xs, torch.randint(0, CLASSES, (n,), generator=g)


def _perms(seed: int) -> Tensor:
    return MF.sample_permutations(DRAWS, 2, BATCH, generator=torch.Generator().manual_seed(seed))


def _block_diagonal(blocks: list[Tensor]) -> Tensor:
    """Per-block permutations ``(P, M, B)`` as one permutation of the concatenated batch."""
    return torch.cat([p + i * BATCH for i, p in enumerate(blocks)], dim=-1)


def _launch(worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    launch_gloo(worker, tmp_path, world=WORLD)


def _flat_params(module: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


# --------------------------------------------------------------------------- workers


def _train_in_sync_worker(rank: int) -> None:
    torch.manual_seed(0)
    net = Net(gather=True)
    start = _flat_params(net)
    ddp = DDP(net)  # find_unused_parameters left at False
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    for step in range(3):
        xs, y = _data(100 * step + rank, BATCH)  # different data on every rank
        opt.zero_grad(set_to_none=True)
        ddp(xs, y).backward()  # permutations: each rank's private generator
        opt.step()
    params = _flat_params(net)
    gathered = [torch.empty_like(params) for _ in range(WORLD)]
    dist.all_gather(gathered, params)
    assert not torch.allclose(params, start), "training did not change the parameters"
    for other in gathered[1:]:
        torch.testing.assert_close(other, gathered[0], rtol=0, atol=0)


def _gather_worker(rank: int) -> None:
    torch.manual_seed(0)
    net = Net(gather=True)
    reference = copy.deepcopy(net)
    reference.mcr.contrastive.gather_distributed = False  # one process, whole batch
    xs_all, y_all = _data(7, WORLD * BATCH)  # identical on every rank
    perms = [_perms(10 + r) for r in range(WORLD)]
    local = slice(rank * BATCH, (rank + 1) * BATCH)

    # DDP: each rank its slice and its own permutations
    ddp = DDP(net)
    loss = ddp([x[local] for x in xs_all], y_all[local], perms[rank])
    loss.backward()
    # one process on the concatenated batch, block-diagonal permutations
    ref_loss = reference(xs_all, y_all, _block_diagonal(perms))
    ref_loss.backward()

    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    torch.testing.assert_close(mean_loss / WORLD, ref_loss.detach())
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, msg=lambda m, n=name: f"{n}: {m}")

    # before DDP's averaging: the local gradient of the gathered contrastive term is
    # world_size times the single-process gradient of this rank's slice
    contrastive = MCRRegularizer(
        lambda a, b: a,
        num_classes=CLASSES,
        mipd=False,
        contrastive=Contrastive(gather_distributed=True),
        unimodal=False,
    )
    single = MCRRegularizer(lambda a, b: a, num_classes=CLASSES, mipd=False, unimodal=False)
    z_all = torch.randn(WORLD * BATCH, 4, generator=torch.Generator().manual_seed(3))
    z2_all = torch.randn(WORLD * BATCH, 4, generator=torch.Generator().manual_seed(4))
    z_local = z_all[local].clone().requires_grad_()
    z2_local = z2_all[local].clone().requires_grad_()
    gathered = contrastive([z_local, z2_local], y_all[local])
    gathered.loss.backward()
    # the gathered term is paper eq. 11 on the global stacked batch (loop reference)
    expected = ref_ntxent(torch.cat([z_all, z2_all]), y_all.repeat(2), 0.5)
    torch.testing.assert_close(
        gathered.terms["contrastive"].double(), expected, atol=1e-5, rtol=1e-5
    )
    z_ref = z_all.clone().requires_grad_()
    single([z_ref, z2_all], y_all).loss.backward()
    assert z_ref.grad is not None and z_local.grad is not None
    torch.testing.assert_close(z_local.grad, WORLD * z_ref.grad[local])


def _accumulation_worker(rank: int) -> None:
    torch.manual_seed(0)
    # the contrastive term compares pairs within a micro-batch, so it is left out here
    net = Net(gather=True, contrastive_weight=0.0)
    reference = copy.deepcopy(net)
    micro = 2
    xs_all, y_all = _data(11, WORLD * micro * BATCH)
    perms = [_perms(20 + b) for b in range(WORLD * micro)]  # one per micro-batch

    ddp = DDP(net)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    for k in range(micro):
        block = rank * micro + k
        rows = slice(block * BATCH, (block + 1) * BATCH)
        loss = ddp([x[rows] for x in xs_all], y_all[rows], perms[block]) / micro
        if k < micro - 1:
            with ddp.no_sync():  # accumulate locally, no all-reduce
                loss.backward()
        else:
            loss.backward()  # the last micro-batch all-reduces the accumulated gradients
    opt.step()

    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.5)
    reference(xs_all, y_all, _block_diagonal(perms)).backward()
    ref_opt.step()
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, msg=lambda m, n=name: f"{n}: {m}")


# --------------------------------------------------------------------------- tests


def test_ranks_stay_in_sync_without_find_unused_parameters(tmp_path: Path) -> None:
    _launch(_train_in_sync_worker, tmp_path)


def test_gathered_contrastive_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    _launch(_gather_worker, tmp_path)


def test_no_sync_accumulation_equals_one_big_batch_step(tmp_path: Path) -> None:
    _launch(_accumulation_worker, tmp_path)
