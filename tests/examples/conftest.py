"""Tiny data sets in the real on-disk formats, built once per test session, for every pipeline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a test module: tiny models run faster on a busy 2-core machine, and
    the arithmetic stays the same from run to run (the resume checks compare two runs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def module_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder for the training runs a test module shares, deleted when the module is done.

    A ResNet-18 smoke run leaves a resumable checkpoint of about 340 MB (weights, Adam state,
    best weights); kept to the end of the session, the runs of all modules took 8 GB of disk.
    """
    folder = tmp_path_factory.mktemp("runs")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def cremad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.cremad.make_fixture import make_fixture

    return make_fixture(tmp_path_factory.mktemp("cremad") / "CREMA-D")


@pytest.fixture(scope="session")
def ave_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.ave.make_fixture import make_fixture

    return make_fixture(tmp_path_factory.mktemp("ave"))


@pytest.fixture(scope="session", autouse=True)
def _private_xdg_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default home of UCF's audio-probe answers ($XDG_CACHE_HOME) is a temporary folder."""
    folder = tmp_path_factory.mktemp("xdg_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="session")
def ucf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.ucf.make_fixture import make_fixture

    return make_fixture(tmp_path_factory.mktemp("ucf") / "UCF101")


@pytest.fixture(scope="session")
def mosei_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.mosei.make_fixture import make_fixture

    root = tmp_path_factory.mktemp("mosei")
    make_fixture(root, dataset="mosei", seed=0)
    make_fixture(root, dataset="mosi", seed=1)
    return root


@pytest.fixture(scope="session")
def sthsth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.sthsth.make_fixture import make_fixture

    return make_fixture(tmp_path_factory.mktemp("sthsth"), layout="hdf5", seed=0)


@pytest.fixture(scope="session")
def multiview_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.multiview.make_fixture import write_fixture

    return write_fixture(tmp_path_factory.mktemp("mfeat"), "wheel", per_class=12)
