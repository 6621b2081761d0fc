"""Data loaders for the trainer, plus an in-memory data set for small tensors.

Data sets return dict samples ``{modality: tensor, ..., "label": tensor}`` so that the default
collate gives dict batches. :class:`TensorDictDataset` holds whole tensors in memory and
serves whole batches in one indexing call, which keeps the synthetic benchmark fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from torch.utils.data import SequentialSampler as _Sequential

from examples.common.distributed import rank, world_size


class TensorDictDataset(Dataset[dict[str, Tensor]]):
    """A data set of equally long tensors, indexed by one position or by a list of positions.

    Args:
        tensors: name -> tensor with the samples on axis 0 (modalities and ``"label"``).

    Example:
        >>> ds = TensorDictDataset({"a": torch.zeros(4, 3), "label": torch.arange(4)})
        >>> ds[[0, 2]]["a"].shape
        torch.Size([2, 3])
    """

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        if "label" not in tensors:
            raise ValueError(f"expected a 'label' tensor, got keys {sorted(tensors)}")
        lengths = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"expected tensors of equal length, got {lengths}")
        self.tensors = dict(tensors)
        self._n = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> dict[str, Tensor]:
        if isinstance(index, list):
            index = torch.as_tensor(index, dtype=torch.long)
        return {k: v[index] for k, v in self.tensors.items()}


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index from ``rank``, without padding (for evaluation).

    Unlike ``DistributedSampler`` it never repeats samples, so metrics gathered from all ranks
    count each sample exactly once.
    """

    def __init__(self, length: int, shard: int, num_shards: int) -> None:
        self.indices = list(range(shard, length, num_shards))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochSeededSampler(Sampler[int]):
    """Random order fixed by ``(seed, epoch)``, so a resumed run sees the same order.

    Under ``torch.distributed`` each rank takes every ``world_size``-th index of the shared
    permutation (the last incomplete round is dropped so every rank has the same number).
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=g)
        n = world_size()
        usable = (self.length // n) * n if n > 1 else self.length
        return iter(order[:usable][rank() :: n].tolist())

    def __len__(self) -> int:
        n = world_size()
        return self.length // n if n > 1 else self.length


class _NoSingletonBatches(BatchSampler):
    """Batches of ``batch_size``; a final batch of a single sample is dropped.

    A batch of one cannot be permuted (MCR needs two samples) and breaks BatchNorm in training
    mode, while dropping every incomplete batch would lose data from small sets (and every batch
    of a set smaller than ``batch_size``).
    """

    def __iter__(self):  # type: ignore[no-untyped-def]
        for batch in super().__iter__():
            if len(batch) >= 2:
                yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest >= 2 and not self.drop_last else 0)


def build_loaders(
    datasets: Mapping[str, Dataset[Any]],
    *,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> dict[str, DataLoader[Any]]:
    """Loaders for ``"train"``, ``"val"``, ``"test"``.

    A final *training* batch of a single sample is dropped (see :class:`_NoSingletonBatches`);
    with ``drop_last`` every incomplete training batch is dropped (the released pipelines do
    this: every MCR step then permutes a full batch), and a training set smaller than one batch
    per process is an error.
    The training order depends only on ``(seed, epoch)`` (call ``loader.sampler.set_epoch`` or
    :func:`set_loader_epoch`). Under ``torch.distributed`` training is sharded and evaluation is
    split without padding. A :class:`TensorDictDataset` is served a whole batch per indexing
    call, skipping per-sample collation.

    Raises:
        ValueError: if a split is missing, ``batch_size < 1``, a split is empty, or with
            ``drop_last`` fewer training samples per process than ``batch_size``.
    """
    missing = [s for s in ("train", "val", "test") if s not in datasets]
    if missing:
        raise ValueError(f"expected datasets for train, val and test, missing {missing}")
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    loaders: dict[str, DataLoader[Any]] = {}
    for split in ("train", "val", "test"):
        ds = datasets[split]
        n = len(ds)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError(f"the {split} data set is empty")
        sampler: Sampler[int]
        if split == "train":
            sampler = EpochSeededSampler(n, seed)
        elif world_size() > 1:
            sampler = ShardSampler(n, rank(), world_size())
        else:
            sampler = _Sequential(range(n))
        if split == "train" and drop_last and len(sampler) < batch_size:  # type: ignore[arg-type]
            per_process = f" per process ({n} over {world_size()})" if world_size() > 1 else ""
            raise ValueError(
                f"expected at least batch_size={batch_size} training samples{per_process}, "
                f"got {len(sampler)}"  # type: ignore[arg-type]
            )
        batch_cls = _NoSingletonBatches if split == "train" else BatchSampler
        batches = batch_cls(sampler, batch_size, drop_last=split == "train" and drop_last)
        if isinstance(ds, TensorDictDataset):
            loaders[split] = DataLoader(
                ds, sampler=batches, batch_size=None, num_workers=num_workers
            )
        else:
            loaders[split] = DataLoader(
                ds,
                batch_sampler=batches,
                num_workers=num_workers,
                collate_fn=collate_fn,
                pin_memory=pin_memory,
                persistent_workers=num_workers > 0,
            )
    return loaders


def set_loader_epoch(loader: DataLoader[Any], epoch: int) -> None:
    """Tell the loader's sampler which epoch starts (fixes the shuffling order)."""
    sampler: Any = loader.sampler
    if isinstance(sampler, BatchSampler):  # a TensorDictDataset served whole batches
        sampler = sampler.sampler
    elif isinstance(loader.batch_sampler, BatchSampler):
        sampler = loader.batch_sampler.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) dict/list batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


__all__ = [
    "EpochSeededSampler",
    "ShardSampler",
    "TensorDictDataset",
    "build_loaders",
    "move_to_device",
    "set_loader_epoch",
]
