"""A step with ``check_values=False`` reads no tensor value on the host (no device sync).

On a GPU every ``.item()``, ``bool(tensor)``, ``float(tensor)``, ``.tolist()`` or ``int(tensor)``
waits for the device. The test counts such reads from Python while MCR's forward and backward
run on the CPU; where they happen does not depend on the device, so zero here is zero there.
With value checks on (the default) the same counter sees the checks' reads: it can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, MIPD
from tests.mcr_reg.helpers import Toy

READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextmanager
def counting_host_reads() -> Iterator[list[str]]:
    reads: list[str] = []
    originals = {name: getattr(Tensor, name) for name in READS}

    def counted(name: str):  # type: ignore[no-untyped-def]
        def read(self: Tensor, *args: object, **kwargs: object) -> object:
            reads.append(name)
            return originals[name](self, *args, **kwargs)

        return read

    for name in READS:
        setattr(Tensor, name, counted(name))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(Tensor, name, original)


def _step(
    check_values: bool, strategy: str | float, head: str, m: int, **kwargs: object
) -> list[str]:
    torch.manual_seed(0)
    model = Toy([3 + i for i in range(m)], [5] * m, 4)
    fusion = model.head if head == "module" else (lambda *zs: model.head(*zs))
    mcr = MCRRegularizer(
        fusion,
        strategy=strategy,
        num_classes=4,
        latent_dims=(5,) * m,
        check_values=check_values,
        ceb=CEB(weight=1.0),
        **kwargs,
    )
    xs = [torch.randn(8, 3 + i) for i in range(m)]
    y = torch.arange(8) % 4
    for _ in range(2):  # the second step: what every later step does
        zs = model.encode(xs)
        logits = model.head(*zs)
        with counting_host_reads() as reads:
            mcr(zs, y, logits).loss.backward()
    return reads


@pytest.mark.parametrize("strategy", ["greedy", "independent", 0.5, "collaborative"])
@pytest.mark.parametrize("head", ["module", "function"])
@pytest.mark.parametrize("m", [2, 3])
def test_a_step_without_value_checks_reads_nothing_on_the_host(
    strategy: str | float, head: str, m: int
) -> None:
    assert _step(False, strategy, head, m) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mipd": MIPD(perturbation="noise")},
        {"task": "regression", "num_classes": None},
        {"mipd": MIPD(subsets="singletons")},
        {"mipd": MIPD(perturbed_rows="moved")},
        {"mipd": MIPD(perturbed_rows="other_label")},
    ],
    ids=["noise", "regression", "singletons", "moved-rows", "other-label-rows"],
)
def test_other_settings_read_nothing_either(kwargs: dict[str, object]) -> None:
    if kwargs.get("task") == "regression":
        torch.manual_seed(0)
        model = Toy([3, 4], [5, 5], 1)
        mcr = MCRRegularizer(model.head, task="regression", latent_dims=(5, 5), check_values=False)
        xs, y = [torch.randn(8, 3), torch.randn(8, 4)], torch.randn(8)
        zs = model.encode(xs)
        mcr(zs, y, model.head(*zs)).loss.backward()
        zs = model.encode(xs)
        with counting_host_reads() as reads:
            mcr(zs, y, model.head(*zs)).loss.backward()
        assert reads == []
        return
    assert _step(False, "greedy", "module", 3, **kwargs) == []


def test_the_counter_sees_the_value_checks() -> None:
    assert len(_step(True, "greedy", "module", 2)) > 0


def test_explicit_permutations_are_not_read_without_value_checks() -> None:
    torch.manual_seed(0)
    model = Toy([3, 4], [5, 5], 4)
    mcr = MCRRegularizer(model.head, num_classes=4, check_values=False)
    perms = MF.sample_permutations(3, 2, 8, generator=torch.Generator().manual_seed(0))
    zs = model.encode([torch.randn(8, 3), torch.randn(8, 4)])
    with counting_host_reads() as reads:
        mcr(zs, torch.arange(8) % 4, permutations=perms).loss.backward()
    assert reads == []
