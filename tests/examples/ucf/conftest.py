"""A tiny UCF-101 in the official layout, built once per test session; the default home of the
audio-probe answers ($XDG_CACHE_HOME) points into a temporary folder for these tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.ucf.make_fixture import make_fixture


@pytest.fixture(scope="session", autouse=True)
def _private_xdg_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("xdg_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="session")
def ucf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("ucf") / "UCF101")
