"""MCR's losses and gradients, bit for bit, before and after a change that must not change
them (a refactor): record them on a checkout of the code before, compare on the code after.

    git worktree add /tmp/before <commit>
    (cd /tmp/before && python -m tests.mcr_reg.bit_identity record /tmp/before.pt)
    python -m tests.mcr_reg.bit_identity compare /tmp/before.pt

Run from the root of the checkout under test (``python -m`` puts it first on the import path).
Two families: the cases of the exactness suite (tests/mcr_reg/test_exactness.py; hypothesis,
derandomized: three steps of MIPD alone on eight head kinds), and 120 configurations of the
whole regularizer (tasks with classes or one output, both contrastive forms, CEB and unimodal on
and off, four strategies, subsets, projections, two perturbations; two steps each). The
configurations use the flat keywords, which every release up to 0.3 reads. ``compare`` lists
what differs and exits 1 if anything does. Hypothesis may draw one or two cases differently
between checkouts; keys present on one side only are listed apart.
"""

from __future__ import annotations

import collections
import itertools
import random
import sys
import warnings
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from tests.mcr_reg import test_exactness as T

# the tasks every checkout has, so that records of older code draw the same cases
T.DIVERGENCE = {k: T.DIVERGENCE[k] for k in ("classification", "binary", "regression")}

GRID = {
    "task": ["classification", "binary", "regression"],
    "contrastive": ["ntxent", "supcon"],
    "ceb": [0.0, 0.5],
    "unimodal": [0.0, 0.1],
    "strategy": ["greedy", "independent", "collaborative", 0.3],
    "subsets": ["all", "singletons"],
    "projection": [None, 5],
    "perturbation": ["permutation", "noise"],
}
M, D, B = 3, 4, 8


def exact_cases(found: dict[str, Any]) -> None:
    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=T.cases())
    def collect(case: T.Case) -> None:
        torch.manual_seed(case.seed)
        out = 1 if case.task != "classification" else 3
        client = T.Client(case.m, 4, out, case.dropout).double().to(case.dtype)
        mcr = MCRRegularizer(
            T.make_head(client, case.kind), strategy=case.k, task=case.task,  # type: ignore[arg-type]
            num_classes=out if case.task == "classification" else None, subsets=case.subsets,
            num_permutations=case.draws, mipd_weight=case.weight, contrastive_weight=0.0,
            unimodal_weight=0.0, detach_reference=case.detach_reference,
            head_gradient=case.head_gradient, batched=case.batched, perturbed_rows=case.rows,
            head_dropout=case.head_dropout,
        )  # fmt: skip
        labels = (
            torch.arange(case.batch) % out
            if case.task == "classification"
            else (torch.arange(case.batch) % 2).to(case.dtype)
        )
        xs, noise, perms = T.inputs(case, case.dtype)
        for step in range(T.STEPS):
            client.step = step
            T.trainable(client, case.kind, step)
            grads = T.mcr_step(client, mcr, xs, noise, perms, labels, case, step)
            found.update({f"exact/{case}/{step}/{n}": g.clone() for n, g in grads.items()})

    collect()


class Encoder(nn.Module):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.linear = nn.Linear(3 + index, D)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.linear(x))


def whole_regularizer(found: dict[str, Any]) -> None:
    combos = list(itertools.product(*GRID.values()))
    random.Random(0).shuffle(combos)
    for index, combo in enumerate(combos[:120]):
        setting = dict(zip(GRID, combo))
        torch.manual_seed(index)
        out = 4 if setting["task"] == "classification" else 1
        encoders = nn.ModuleList(Encoder(i) for i in range(M)).double()
        head = nn.Sequential(nn.Linear(M * D, 6), nn.Tanh(), nn.Linear(6, out)).double()
        mcr = _regularizer(head, setting, out, seed=index)
        params = [*encoders.parameters(), *head.parameters(), *mcr.parameters()]
        torch.manual_seed(1000 + index)  # inputs independent of what construction drew
        for step in range(2):
            found.update(
                _step(encoders, head, mcr, params, setting["task"], out, f"{index}/{step}")
            )


def _regularizer(head: nn.Module, setting: dict[str, Any], out: int, seed: int) -> MCRRegularizer:
    one_output = setting["task"] != "classification"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flat keywords warn from 0.3 on
        return MCRRegularizer(
            lambda *zs: head(torch.cat(zs, -1)), strategy=setting["strategy"],
            task=setting["task"], num_classes=None if one_output else out,
            latent_dims=(D,) * M, num_permutations=3, subsets=setting["subsets"],
            ceb_weight=setting["ceb"], unimodal_weight=setting["unimodal"],
            contrastive=setting["contrastive"], projection_dim=setting["projection"],
            perturbation=setting["perturbation"], seed=seed,
            contrastive_weight=0.0 if one_output and setting["contrastive"] == "supcon" else 1.0,
        ).double()  # fmt: skip


def _step(encoders, head, mcr, params, task, out, key) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    xs = [torch.randn(B, 3 + i, dtype=torch.float64) for i in range(M)]
    y = torch.arange(B) % out if task == "classification" else (torch.arange(B) % 2).double()
    for p in params:
        p.grad = None
    zs = [e(x) for e, x in zip(encoders, xs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = mcr(zs, y, head(torch.cat(zs, -1)))
        result.loss.backward()
    found: dict[str, Any] = {f"whole/{key}/loss": result.loss.detach().clone()}
    found.update({f"whole/{key}/term/{k}": v.clone() for k, v in result.terms.items()})
    found.update({f"whole/{key}/grad{i}": p.grad for i, p in enumerate(params)})
    found[f"whole/{key}/importance"] = result.importance.detach().clone()
    return found


def _same(a: object, b: object) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        big = torch.finfo(torch.float64).max
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.nan_to_num(big / 2, big, -big), b.nan_to_num(big / 2, big, -big))
        )
    return a is None and b is None


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    differ = [k for k in sorted(before.keys() & after.keys()) if not _same(before[k], after[k])]
    one_side = sorted(before.keys() ^ after.keys())
    print(f"compared {len(before.keys() & after.keys())} entries: {len(differ)} differ")
    groups = collections.Counter(k.rsplit("/", 2)[0] for k in differ)
    for group, count in groups.most_common(30):
        print(f"  {count:4d} differ in {group[:160]}")
    if one_side:
        cases = collections.Counter(k.rsplit("/", 2)[0] for k in one_side)
        print(f"  {len(cases)} cases drawn on one side only (hypothesis), not compared")
    return differ


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    found: dict[str, Any] = {}
    exact_cases(found)
    whole_regularizer(found)
    if mode == "record":
        torch.save(found, path)
        print(f"recorded {len(found)} entries in {path}")
        return
    sys.exit(1 if compare(torch.load(path, weights_only=False), found) else 0)


if __name__ == "__main__":
    main()
