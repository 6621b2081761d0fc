"""Input validation shared by the functional API and :class:`~mcr_reg.MCRRegularizer`.

Shape, dtype and device checks read only metadata and are always on. Checks on *values*
(label ranges, permutations, finiteness) read tensor contents, which synchronises with the
device; callers run them only when asked and never while ``torch.compile`` traces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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


# --------------------------------------------------------------------------- settings


def check_int(
    value: object, name: str, *, minimum: int | None = None, none_ok: bool = False
) -> int | None:
    """An int (not a bool), at least ``minimum``; ``None`` passes when ``none_ok``."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        what = "an int or None" if none_ok else "an int"
        raise TypeError(f"expected {name} to be {what}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"expected {name} >= {minimum}, got {value}")
    return value


def check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"expected {name} in {list(choices)}, got {value!r}")


def check_weight(value: object, name: str) -> float:
    """A finite number >= 0 (a loss weight or a scale)."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"expected {name} to be a finite number >= 0, got {value!r}")
    return float(value)


def check_latent_dims(
    latent_dims: Sequence[int] | Mapping[str, int] | None,
) -> tuple[int, ...] | None:
    if latent_dims is None:
        return None
    values = list(latent_dims.values()) if isinstance(latent_dims, Mapping) else latent_dims
    dims = tuple(values)
    if len(dims) < 2:
        raise ValueError(f"expected latent_dims for at least two modalities, got {dims}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise ValueError(f"expected positive integer latent_dims, got {dims}")
    return dims


# --------------------------------------------------------------------------- tensors

#: what to do when the fusion is called on one tensor
ONE_TENSOR = (
    "If the fusion module is called on one concatenated tensor, record it with "
    "FusionInputs(module, split=(d_1, ..., d_M)), which splits it into the modalities' latents, "
    "and give MCR fusion_inputs.head, which calls the module on their concatenation. If the "
    "modalities meet in inline code of forward (no module or function takes the latents), MCR "
    "needs the smallest model edit: move that code into a module (docs/integration.md, 'When "
    "the fusion is inline code')"
)


def split_latents(latents: object) -> tuple[tuple[str, ...], list[Tensor]]:
    """Names and tensors of ``[z_1, ..., z_M]`` or ``{name: z_m}``, at least two of them."""
    if isinstance(latents, Tensor):
        raise TypeError(
            "expected latents as a sequence or a name->tensor mapping of per-modality "
            f"tensors, got one tensor of shape {shape_of(latents)}"
        )
    if isinstance(latents, Mapping):
        names = tuple(str(n) for n in latents)
        zs = [check_tensor(v, f"latent {n!r}") for n, v in latents.items()]
    elif isinstance(latents, Sequence):
        zs = [check_tensor(v, f"latent {i}") for i, v in enumerate(latents)]
        names = tuple(str(i) for i in range(len(zs)))
    else:
        raise TypeError(
            f"expected latents as a sequence or a mapping, got {type(latents).__name__}"
        )
    if len(zs) < 2:
        listing = ", ".join(f"{n!r} {shape_of(z)}" for n, z in zip(names, zs))
        raise ValueError(
            f"expected at least two modalities, got {len(zs)}: {listing}. {ONE_TENSOR}"
        )
    return names, zs


def check_latents(names: Sequence[str], zs: Sequence[Tensor]) -> tuple[int, torch.device]:
    """Batch-first floating-point latents of one batch size (at least 2) on one device."""
    for n, z in zip(names, zs):
        if z.dim() < 2:
            raise ValueError(
                f"expected batch-first latents with a feature axis, got {n!r} {shape_of(z)}"
            )
        if not z.is_floating_point():
            raise TypeError(f"expected floating-point latents, got {n!r} of dtype {z.dtype}")
    batch = check_same_batch(zs, names)
    device = check_same_device(zs, names)
    if batch < 2:
        raise ValueError(
            f"expected a batch of at least 2 (a permutation needs two samples), got {batch}"
        )
    return batch, device


def check_latent_widths(
    names: Sequence[str], zs: Sequence[Tensor], widths: Sequence[int], dims: tuple[int, ...]
) -> None:
    """``widths`` (the latents' feature sizes) against ``latent_dims``."""
    if len(dims) != len(zs):
        raise ValueError(f"expected {len(dims)} modalities (latent_dims={dims}), got {len(zs)}")
    if tuple(widths) != dims:
        listing = ", ".join(f"{n} {shape_of(z)}" for n, z in zip(names, zs))
        raise ValueError(
            f"expected latent widths {dims} (latent_dims), got {tuple(widths)}: {listing}"
        )


def check_class_labels(labels: Tensor, batch: int, num_classes: int | None, values: bool) -> Tensor:
    if labels.dim() == 2 and labels.shape[0] == batch and labels.shape[1] > 1:
        raise ValueError(
            f"expected class labels of shape ({batch},), got {shape_of(labels)}: multi-label "
            "targets (one 0/1 column per label)? For a head with one logit per label build MCR "
            "with task='multilabel' and num_classes=L (docs/integration.md, 'Multi-label heads')"
        )
    if labels.shape != (batch,):
        raise ValueError(f"expected class labels of shape ({batch},), got {shape_of(labels)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"expected integer class labels, got dtype {labels.dtype}")
    if values and num_classes is not None:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"expected labels in [0, {num_classes - 1}], got values in [{lo}, {hi}]"
            )
    return labels.long()


def check_permutations(
    permutations: object, m_count: int, batch: int, device: torch.device, values: bool
) -> Tensor:
    """``(P, M, B)`` int64 permutations on the latents' device (rows checked with ``values``)."""
    perms = check_tensor(permutations, "permutations")
    if perms.dtype != torch.long:
        raise TypeError(f"expected permutations of dtype torch.int64, got {perms.dtype}")
    if perms.dim() != 3 or perms.shape[1:] != (m_count, batch):
        raise ValueError(
            f"expected permutations of shape (P, {m_count}, {batch}), got {shape_of(perms)}"
        )
    if perms.shape[0] < 1:
        raise ValueError("expected at least one permutation draw, got P = 0")
    if perms.device != device:
        raise ValueError(f"expected permutations on {device}, got {perms.device}")
    if values:
        check_permutation_values(perms)
    return perms


def check_perturbed_latents(
    perturbed: Sequence[Tensor | None] | Mapping[str, Tensor] | None,
    names: Sequence[str],
    zs: Sequence[Tensor],
) -> list[Tensor | None]:
    """Per-modality ``(P, B, ...)`` perturbed latents in modality order (None: not given)."""
    if perturbed is None:
        return [None] * len(zs)
    if isinstance(perturbed, Mapping):
        unknown = sorted(set(perturbed) - set(names))
        if unknown:
            raise ValueError(f"perturbed_latents names {unknown} are not modalities {list(names)}")
        items: list[Tensor | None] = [perturbed.get(n) for n in names]
    else:
        items = list(perturbed)
        if len(items) != len(zs):
            raise ValueError(f"expected {len(zs)} perturbed_latents entries, got {len(items)}")
    draws: set[int] = set()
    for n, z, p in zip(names, zs, items):
        if p is None:
            continue
        p = check_tensor(p, f"perturbed_latents[{n!r}]")
        if p.dim() != z.dim() + 1 or p.shape[1:] != z.shape:
            raise ValueError(
                f"expected perturbed_latents[{n!r}] of shape (P, {', '.join(map(str, z.shape))}), "
                f"got {shape_of(p)}"
            )
        if p.device != z.device:
            raise ValueError(f"expected perturbed_latents[{n!r}] on {z.device}, got {p.device}")
        draws.add(int(p.shape[0]))
    if len(draws) > 1:
        raise ValueError(
            f"expected one number of draws P in perturbed_latents, got {sorted(draws)}"
        )
    return items


def check_own_dtype(zs: Sequence[Tensor], own: Tensor | None) -> None:
    """float64 latents with MCR's own heads (``own``: one of their parameters) in a lower
    precision: say what to call."""
    if zs[0].dtype == torch.float64 and own is not None and own.dtype != torch.float64:
        raise TypeError(
            f"the latents are float64 but MCR's own heads (unimodal heads, projections, CEB "
            f"head) are {own.dtype}: call mcr.double() (or mcr.to(torch.float64)) once after "
            "building it, as you did for your model; MCR's terms then come out in float64"
        )


def check_subsets_spec(subsets: object) -> None:
    """``"all"``, ``"singletons"`` or index tuples, none empty (the indices are checked
    against M when the number of modalities is known)."""
    if isinstance(subsets, str):
        if subsets not in ("all", "singletons", "sampled"):
            raise ValueError(
                "expected subsets 'all', 'singletons', 'sampled' or a list of index tuples, "
                f"got {subsets!r}"
            )
    elif any(len(tuple(s)) == 0 for s in subsets):  # type: ignore[attr-defined]
        raise ValueError("expected non-empty subsets, got an empty one")


def check_perturbed_rows(rows: object, choices: Sequence[object], perturbation: str) -> None:
    check_choice(rows, "perturbed_rows", choices)
    if rows != "all" and perturbation != "permutation":
        raise ValueError(
            f"perturbed_rows={rows!r} selects rows by their permutation, but "
            f"perturbation={perturbation!r}; use perturbation='permutation'"
        )


def check_contrastive_inputs(features: Tensor, labels: Tensor, temperature: float) -> None:
    """Shape checks shared by the contrastive forms."""
    if features.dim() != 2:
        raise ValueError(f"expected features of shape (N, D), got {shape_of(features)}")
    if labels.shape != features.shape[:1]:
        raise ValueError(
            f"expected labels of shape ({features.shape[0]},) to match features "
            f"{shape_of(features)}, got {shape_of(labels)}"
        )
    if not temperature > 0:
        raise ValueError(f"expected a positive temperature, got {temperature}")
