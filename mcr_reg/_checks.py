"""Input validation shared by the functional API and :class:`~mcr_reg.MCRRegularizer`.

Shape, dtype and device checks read only metadata and are always on. Checks on *values*
(label ranges, permutations, finiteness) read tensor contents, which synchronises with the
device; callers run them only when asked and never while ``torch.compile`` traces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def shape_of(t: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def compiling() -> bool:
    """True while TorchDynamo traces the caller."""
    return bool(torch.compiler.is_compiling())


def check_tensor(value: object, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"expected {what} to be a torch.Tensor, got {type(value).__name__}")
    return value


def check_same_batch(tensors: Sequence[Tensor], names: Sequence[str]) -> int:
    """Return the common batch size of ``tensors`` (first axis), or raise naming each shape."""
    sizes = [int(t.shape[0]) for t in tensors]
    if len(set(sizes)) != 1:
        listing = ", ".join(f"{n} {shape_of(t)}" for n, t in zip(names, tensors))
        raise ValueError(f"expected latents with the same batch size, got {listing}")
    return sizes[0]


def check_same_device(tensors: Sequence[Tensor], names: Sequence[str]) -> torch.device:
    devices = [t.device for t in tensors]
    if len(set(devices)) != 1:
        listing = ", ".join(f"{n} on {d}" for n, d in zip(names, devices))
        raise ValueError(f"expected all tensors on one device, got {listing}")
    return devices[0]


def check_permutation_values(perms: Tensor) -> None:
    """Raise unless every row of ``perms`` (..., B) is a permutation of ``range(B)``."""
    batch = perms.shape[-1]
    expected = torch.arange(batch, device=perms.device)
    ok = torch.sort(perms, dim=-1).values.eq(expected).all(dim=-1)
    if not bool(ok.all()):
        bad = torch.nonzero(~ok)[0].tolist()
        raise ValueError(
            f"expected every permutations[p, m] row to be a permutation of range({batch}), "
            f"but row {tuple(bad)} is {perms[tuple(bad)].tolist()}"
        )


def check_finite(tensor: Tensor, what: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"expected finite values in {what}, found {n_bad} NaN/Inf entries")
