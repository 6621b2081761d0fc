"""Loader construction: no single-sample training batches, epoch-seeded order."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from examples.common.data import TensorDictDataset, build_loaders, set_loader_epoch


class _Dicts(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([float(i)]), "label": torch.tensor(i % 2)}


def _sizes(loader) -> list[int]:
    return [len(b["label"]) for b in loader]


def test_single_sample_last_training_batch_is_dropped() -> None:
    for ds in (
        _Dicts(9),
        TensorDictDataset({"x": torch.arange(9.0)[:, None], "label": torch.arange(9) % 2}),
    ):
        loaders = build_loaders({"train": ds, "val": ds, "test": ds}, batch_size=4, seed=0)
        assert _sizes(loaders["train"]) == [4, 4] and len(loaders["train"]) == 2
        assert _sizes(loaders["val"]) == [4, 4, 1]  # evaluation keeps every sample


def test_small_sets_and_incomplete_batches_are_kept() -> None:
    loaders = build_loaders(
        {"train": _Dicts(3), "val": _Dicts(3), "test": _Dicts(3)}, batch_size=8, seed=0
    )
    assert _sizes(loaders["train"]) == [3] and len(loaders["train"]) == 1
    loaders = build_loaders(
        {"train": _Dicts(10), "val": _Dicts(3), "test": _Dicts(3)}, batch_size=4, seed=0
    )
    assert _sizes(loaders["train"]) == [4, 4, 2]


def test_training_order_follows_the_epoch() -> None:
    ds = _Dicts(16)
    loader = build_loaders({"train": ds, "val": ds, "test": ds}, batch_size=16, seed=3)["train"]

    def order(epoch: int) -> list[float]:
        set_loader_epoch(loader, epoch)
        return next(iter(loader))["x"].flatten().tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(1)) == [float(i) for i in range(16)]


def test_drop_last_keeps_only_full_training_batches() -> None:
    """The option that replaced the pipelines' own training loaders."""
    for ds in (
        _Dicts(10),
        TensorDictDataset({"x": torch.arange(10.0)[:, None], "label": torch.arange(10) % 2}),
    ):
        loaders = build_loaders(
            {"train": ds, "val": ds, "test": ds}, batch_size=4, seed=0, drop_last=True
        )
        assert _sizes(loaders["train"]) == [4, 4] and len(loaders["train"]) == 2
        assert _sizes(loaders["test"]) == [4, 4, 2]  # evaluation keeps every sample


def test_drop_last_with_fewer_samples_than_a_batch_is_an_error() -> None:
    ds = _Dicts(3)
    with pytest.raises(ValueError, match="at least batch_size=8 training samples, got 3"):
        build_loaders({"train": ds, "val": ds, "test": ds}, batch_size=8, seed=0, drop_last=True)
