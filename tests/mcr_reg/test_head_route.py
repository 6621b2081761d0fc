"""What MIPD learns about a fusion head lives in one HeadRoute per head, not in module globals:
two regularizers on one head learn separately, copies start empty, and a call without a route
(learning from scratch) gives the same gradients as one that reuses what was learnt."""

from __future__ import annotations

import copy
import pickle

import torch
from torch import nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.functional import head_share
from mcr_reg.functional.head_share import HeadRoute


def _step(mcr: MCRRegularizer, encoders: nn.ModuleList, xs: list[torch.Tensor]) -> None:
    zs = [e(x) for e, x in zip(encoders, xs)]
    mcr(zs, torch.tensor([0, 1, 2, 0, 1])).loss.backward()


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(12, 3)

    def forward(self, *zs: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat(zs, dim=-1))  # type: ignore[no-any-return]


def _setup() -> tuple[nn.ModuleList, Concat, list[torch.Tensor]]:
    torch.manual_seed(0)
    encoders = nn.ModuleList(nn.Linear(3, 4) for _ in range(3)).double()
    head = Concat().double()
    xs = [torch.randn(5, 3, dtype=torch.float64) for _ in range(3)]
    return encoders, head, xs


def test_each_regularizer_learns_its_own_route_and_copies_start_empty() -> None:
    encoders, head, xs = _setup()
    first = MCRRegularizer(head, num_classes=3, seed=0)
    second = MCRRegularizer(head, num_classes=3, seed=0)
    _step(first, encoders, xs)  # M = 3, greedy: one c(S) per subset size, a second pass
    route = first._fusion.route
    assert first._fusion.route is not second._fusion.route
    assert len(route.reaches) + len(route.leaves) > 0  # something was learnt
    assert len(second._fusion.route.reaches) + len(second._fusion.route.leaves) == 0
    for copied in (copy.deepcopy(route), pickle.loads(pickle.dumps(route))):
        assert len(copied.reaches) == len(copied.leaves) == 0
    assert not hasattr(head_share, "_REACHES") and not hasattr(head_share, "_HEAD_LEAVES")


def test_a_call_without_a_route_gives_the_gradients_of_one_that_has_learnt() -> None:
    encoders, head, xs = _setup()
    bias = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    fuse = lambda *zs: head(*zs) + bias  # noqa: E731  a function head
    perms = MF.sample_permutations(2, 3, 5, generator=torch.Generator().manual_seed(1))
    subsets = MF.enumerate_subsets(3, "all")
    shares = MF.head_factors(subsets, 3, -1.0)
    route = HeadRoute()
    grads = []
    for use_route in (route, route, None):
        for p in [*encoders.parameters(), *head.parameters(), bias]:
            p.grad = None
        zs = [e(x) for e, x in zip(encoders, xs)]
        per_subset, _ = MF.mipd(fuse, zs, subsets, permutations=perms, head_share=shares,
                                route=use_route)  # fmt: skip
        per_subset.sum().backward()
        params = [*encoders.parameters(), *head.parameters(), bias]
        grads.append([p.grad.clone() for p in params if p.grad is not None])
    for learnt, fresh in zip(grads[1], grads[2]):
        torch.testing.assert_close(learnt, fresh, rtol=0, atol=1e-15)
