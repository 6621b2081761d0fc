"""A tiny AV-MNIST source in the real formats (idx.gz files, 8 kHz WAV files), built once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def avmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.avmnist.make_fixture import make_fixture

    return make_fixture(tmp_path_factory.mktemp("avmnist"))
