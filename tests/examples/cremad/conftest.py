"""A tiny CREMA-D in the real layout, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.cremad.make_fixture import make_fixture


@pytest.fixture(scope="session")
def cremad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("cremad") / "CREMA-D")
