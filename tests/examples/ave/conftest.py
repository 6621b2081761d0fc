"""A tiny AVE in the real layout, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.ave.make_fixture import make_fixture


@pytest.fixture(scope="session")
def ave_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("ave"))
