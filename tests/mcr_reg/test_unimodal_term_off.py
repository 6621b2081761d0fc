"""Leaving out latent_dims turns MCR's own unimodal term off: MCR says so, once."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from mcr_reg import MCRRegularizer

D, C = 8, 3


def _call(mcr: MCRRegularizer, times: int = 1, **kwargs) -> list[warnings.WarningMessage]:
    za, zv = torch.randn(6, D, requires_grad=True), torch.randn(6, D, requires_grad=True)
    y = torch.arange(6) % C
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(times):
            mcr([za, zv], y, **kwargs)
    return [w for w in caught if "unimodal term is off" in str(w.message)]


def _mcr(**options) -> MCRRegularizer:
    head = nn.Linear(2 * D, C)
    return MCRRegularizer(lambda a, v: head(torch.cat([a, v], -1)), num_classes=C, **options)


def test_without_latent_dims_the_silent_default_warns_once_with_the_fix():
    mcr = _mcr()
    caught = _call(mcr, times=3)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "its weight is 0.01" in message and f"latent_dims=({D}, {D})" in message
    assert "unimodal_logits" in message and "unimodal=False" in message
    assert caught[0].filename == __file__  # points at the caller's line
    assert "unimodal" not in mcr([torch.randn(6, D), torch.randn(6, D)], torch.arange(6) % C).terms


@pytest.mark.parametrize(
    "options",
    [{"latent_dims": (D, D)}, {"unimodal": False}],
    ids=["own heads", "term off on purpose"],
)
def test_no_warning_when_the_term_is_trained_or_turned_off(options):
    assert _call(_mcr(**options), times=2) == []


def test_no_warning_when_unimodal_logits_are_passed():
    logits = [torch.randn(6, C, requires_grad=True), torch.randn(6, C, requires_grad=True)]
    assert _call(_mcr(), unimodal_logits=logits) == []
