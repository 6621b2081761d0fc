"""Three loops shaped like published balancing codebases take MCR with set-up lines plus one
line in the step and no change to the model (``tests/integration/loops.py``), and train."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from tests.integration import loops

TRAIN = {
    "tuple fusion, DataParallel": loops.train_tuple_fusion,
    "inline concatenation, Pareto mixing": loops.train_pareto,
    "prototype rebalancing": loops.train_prototypes,
}
# (set-up lines, step lines) that adding MCR takes, as docs/integration.md lists them
ADDED = {
    "tuple fusion, DataParallel": (loops.train_tuple_fusion, None, 2, 1),
    "inline concatenation, Pareto mixing": (loops.pareto_setup, loops.pareto_step, 2, 1),
    "prototype rebalancing": (loops.train_prototypes, None, 1, 1),
}


def _added_lines(function: Callable[..., object]) -> list[str]:
    return [line for line in inspect.getsource(function).splitlines() if "# added" in line]


def _in_step(line: str) -> bool:
    """Lines of a training function's loop body sit at least three levels deep."""
    return len(line) - len(line.lstrip()) >= 12


@pytest.mark.parametrize("name", list(ADDED))
def test_mcr_takes_set_up_lines_and_one_step_line(name: str) -> None:
    setup, step, set_up_count, step_count = ADDED[name]
    lines = _added_lines(setup) + (_added_lines(step) if step is not None else [])
    in_step = _added_lines(step) if step is not None else [ln for ln in lines if _in_step(ln)]
    assert len(in_step) == step_count, lines
    assert len(lines) - len(in_step) == set_up_count, lines
    assert all("mcr" in line.lower() or "fusion_inputs" in line for line in lines)


@pytest.mark.parametrize("name", list(TRAIN))
def test_each_loop_trains_with_and_without_mcr(name: str) -> None:
    plain_model, plain = TRAIN[name](12, with_mcr=False)
    mcr_model, with_mcr = TRAIN[name](12, with_mcr=True)
    assert all(math.isfinite(v) for v in plain + with_mcr)
    for losses in (plain, with_mcr):  # the fused prediction's task loss falls
        assert sum(losses[-3:]) < sum(losses[:3]), losses
    # MCR changed the training (the encoders differ), and the model's own keys are unchanged
    a = plain_model.audio_net[0].weight  # type: ignore[index]
    b = mcr_model.audio_net[0].weight  # type: ignore[index]
    assert not torch.allclose(a, b)
    own = {k for k in mcr_model.state_dict() if not k.startswith("mcr.")}
    assert own == set(plain_model.state_dict())


def test_the_model_classes_are_used_as_published() -> None:
    """No method of the models mentions MCR: nothing in them was edited to take it."""
    models = (loops.TupleAVClassifier, loops.ConcatFusion, loops.SumFusion, loops.InlineAVNet)
    for cls in models:
        source = inspect.getsource(cls)
        assert "mcr" not in source.lower() and "FusionInputs" not in source
        assert issubclass(cls, nn.Module)
