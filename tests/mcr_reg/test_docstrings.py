"""Every example in the package's docstrings runs and prints what it says (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mcr_reg",
    "mcr_reg.capture",
    "mcr_reg.diagnostics",
    "mcr_reg.functional",
    "mcr_reg.probe",
    "mcr_reg.regularizer",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} lost its examples"
    assert result.failed == 0
