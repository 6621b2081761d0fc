"""Which latents MIPD perturbs: the subsets of modalities (all, singletons or sampled), the
within-batch permutations, and the masks of the rows a permutation moved.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations
from typing import Literal

import torch
from torch import Tensor

SubsetSpec = Literal["all", "singletons", "sampled"] | Sequence[Sequence[int]]

#: ``"all"`` enumerates 2^M - 2 subsets; beyond this many modalities that is refused.
MAX_MODALITIES_FOR_ALL = 6


def enumerate_subsets(
    num_modalities: int, subsets: SubsetSpec = "all"
) -> tuple[tuple[int, ...], ...]:
    """The perturbed subsets S of modalities (paper appendix A.5, eq. 14).

    Args:
        num_modalities: M >= 2.
        subsets: ``"all"`` — every non-empty proper subset (2^M - 2 of them, at most
            :data:`MAX_MODALITIES_FOR_ALL` modalities); ``"singletons"`` — the M single
            modalities; or an explicit list of index tuples.

    Returns:
        Sorted index tuples, singletons first, then by size and lexicographically.

    Raises:
        ValueError: unknown name, M < 2, too many modalities for ``"all"``, an empty, full,
            repeated or out-of-range subset.

    Example:
        >>> enumerate_subsets(3)
        ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
    """
    m = int(num_modalities)
    if m < 2:
        raise ValueError(f"expected at least two modalities, got {m}")
    if isinstance(subsets, str):
        if subsets == "singletons":
            return tuple((i,) for i in range(m))
        if subsets != "all":
            raise ValueError(
                f"expected subsets 'all', 'singletons' or a list of index tuples, got {subsets!r}"
            )
        if m > MAX_MODALITIES_FOR_ALL:
            raise ValueError(
                f"subsets='all' gives 2^{m} - 2 = {2**m - 2} terms for {m} modalities; "
                f"expected at most {MAX_MODALITIES_FOR_ALL} modalities. Use "
                "subsets='sampled' (a bounded, unbiased estimate of 'all'), 'singletons' "
                "or an explicit list"
            )
        return tuple(c for size in range(1, m) for c in combinations(range(m), size))
    out: list[tuple[int, ...]] = []
    for raw in subsets:
        s = tuple(sorted(int(i) for i in raw))
        if not s:
            raise ValueError("expected non-empty subsets, got an empty one")
        if len(set(s)) != len(s) or s[0] < 0 or s[-1] >= m:
            raise ValueError(
                f"expected distinct modality indices in range({m}) in every subset, got {tuple(raw)}"
            )
        if len(s) == m:
            raise ValueError(
                f"expected proper subsets (permuting all {m} modalities leaves nothing to "
                f"compare against), got {tuple(raw)}"
            )
        if s in out:
            raise ValueError(f"expected each subset once, got {s} twice")
        out.append(s)
    if not out:
        raise ValueError("expected at least one subset, got an empty list")
    return tuple(sorted(out, key=lambda s: (len(s), s)))


def sample_subsets(
    num_modalities: int, num_sampled: int, rng: random.Random
) -> tuple[tuple[tuple[int, ...], ...], float]:
    """Every singleton and ``num_sampled`` of the larger proper subsets, drawn uniformly without
    replacement, for a bounded number of MIPD terms when M is large.

    With ``N = 2^M - 2 - M`` larger subsets, each drawn term stands for ``N / num_sampled`` of
    them: ``Σ_singletons L_S + (N / num_sampled) Σ_drawn L_S`` is an unbiased estimate of
    ``Σ_all L_S`` (and so are its gradients, which are linear in the terms). When
    ``num_sampled >= N`` every subset is taken, with weight 1.

    Args:
        num_modalities: M >= 2.
        num_sampled: how many larger subsets to draw (>= 1).
        rng: the source of the draw (Python's ``random.Random``; nothing is read from a device).

    Returns:
        ``(subsets, weight)``: singletons first, then the drawn subsets sorted by size; the
        weight of each drawn subset's term.

    Example:
        >>> subsets, weight = sample_subsets(4, 3, random.Random(0))
        >>> subsets[:4], len(subsets), weight
        (((0,), (1,), (2,), (3,)), 7, 3.3333333333333335)
    """
    m = int(num_modalities)
    if m < 2:
        raise ValueError(f"expected at least two modalities, got {m}")
    if isinstance(num_sampled, bool) or not isinstance(num_sampled, int) or num_sampled < 1:
        raise ValueError(f"expected num_sampled to be an int >= 1, got {num_sampled!r}")
    singletons = tuple((i,) for i in range(m))
    larger = 2**m - 2 - m
    if num_sampled >= larger:
        return singletons + tuple(
            c for size in range(2, m) for c in combinations(range(m), size)
        ), 1.0
    masks: set[int] = set()
    while len(masks) < num_sampled:  # uniform over the larger subsets, by rejection
        mask = rng.randrange(1, 2**m - 1)
        if mask.bit_count() >= 2:
            masks.add(mask)
    drawn = [tuple(i for i in range(m) if mask >> i & 1) for mask in masks]
    return singletons + tuple(sorted(drawn, key=lambda s: (len(s), s))), larger / num_sampled


def sample_permutations(
    num_draws: int,
    num_modalities: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Independent uniform permutations of the batch, one per draw and modality.

    Drawn by sorting uniform noise in one batched call on ``device`` (no host round trip).
    With a ``generator`` the global RNG is left untouched; the noise is drawn on the
    generator's device and moved to ``device``.

    Args:
        num_draws: P.
        num_modalities: M.
        batch_size: B >= 2.
        generator: optional source of randomness.
        device: where the result lives (default: the generator's device, else CPU).

    Returns:
        A LongTensor ``(P, M, B)``; row ``[p, m]`` is a permutation of ``range(B)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> perms = sample_permutations(2, 3, 5, generator=g)
        >>> perms.shape, bool((perms.sort(-1).values == torch.arange(5)).all())
        (torch.Size([2, 3, 5]), True)
    """
    if batch_size < 2:
        raise ValueError(f"expected a batch of at least 2 to permute, got {batch_size}")
    if num_draws < 1 or num_modalities < 1:
        raise ValueError(
            f"expected positive draws and modalities, got {num_draws}, {num_modalities}"
        )
    target = torch.device(device) if device is not None else None
    source = generator.device if generator is not None else (target or torch.device("cpu"))
    noise = torch.rand(num_draws, num_modalities, batch_size, generator=generator, device=source)
    perms = noise.argsort(dim=-1)
    return perms if target is None else perms.to(target, non_blocking=True)


def permutation_row_mask(
    permutations: Tensor,
    subsets: Sequence[tuple[int, ...]],
    rows: Literal["moved", "other_label"],
    labels: Tensor | None = None,
) -> Tensor:
    """Which perturbed rows count in L_S, for the row rules of the released code.

    ``"moved"``: row b of draw p counts for subset S when some modality of S moves it,
    ``π_{p,i}(b) != b`` (a fixed point of every permutation of S leaves the row unperturbed).
    ``"other_label"``: it counts when some modality of S brings in a sample of another class,
    ``y[π_{p,i}(b)] != y[b]``. Computed on the device, without reading values on the host.

    Args:
        permutations: ``(P, M, B)``.
        subsets: index tuples (see :func:`enumerate_subsets`).
        rows: the rule.
        labels: ``(B,)`` integer classes, for ``"other_label"``.

    Returns:
        ``(len(subsets), P, B)`` of 0.0 / 1.0, for :func:`mipd`'s ``row_weights``.

    Example:
        >>> perms = torch.tensor([[[1, 0, 2], [0, 1, 2]]])  # P=1, M=2, B=3
        >>> permutation_row_mask(perms, ((0,), (1,)), "moved")[:, 0]
        tensor([[1., 1., 0.],
                [0., 0., 0.]])
    """
    batch = permutations.shape[-1]
    if rows == "moved":
        identity = torch.arange(batch, device=permutations.device)
        changed = permutations != identity  # (P, M, B)
    elif rows == "other_label":
        if labels is None or labels.shape != (batch,):
            raise ValueError(f"expected labels of shape ({batch},) for rows='other_label'")
        changed = labels[permutations] != labels  # (P, M, B)
    else:
        raise ValueError(f"expected rows 'moved' or 'other_label', got {rows!r}")
    return torch.stack([changed[:, list(s)].any(dim=1) for s in subsets]).float()
