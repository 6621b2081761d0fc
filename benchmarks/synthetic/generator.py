"""Synthetic two-modality data with controlled shared and unique label information.

Paper section 4.1: the label ``Y`` is uniform over 5 classes; every data point carries label
information in both modalities (shared, S), only in modality 1 (U1) or only in modality 2
(U2); a modality without label information for a point is pure noise there. Fixed random
transforms lift each modality to a high dimension.

To make modality competition actually happen (paper section 2: "one modality quickly minimizes
training error, misdirecting and suppressing the learning of others"), the two modalities
differ in how hard they are to fit:

* modality 2 is *easy*: a linear map of ``mu'_Y + noise`` into ``input_dims[1]`` dimensions
  plus isotropic high-dimensional noise. A network fits its informative points in a few
  epochs, and the high-dimensional noise also lets it memorise training points it knows
  nothing about (the U1 points).
* modality 1 is *hard* (``hard_modality=1``): ``mu_Y + noise`` goes through a fixed random
  two-layer tanh network (a curved, folded map) before the linear lift, so it is learnt
  slowly.

Sweeping U1 up (with U2 fixed) puts more and more of the label information into the slow
modality only. A jointly trained model fits the fast modality 2 first and then partly explains
the U1 training points through modality 2's noise instead of learning modality 1's map; an
ensemble trains modality 1 on its own and is immune to that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from examples.common.data import TensorDictDataset

CATEGORIES = ("shared", "u1", "u2")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the generator (defaults: the benchmark's setting).

    Args:
        u1: fraction of points whose label information is only in modality 1.
        s: fraction with label information in both modalities.
        u2: fraction with label information only in modality 2.
        num_classes: number of classes (5 in the paper).
        latent_dim: dimension of the class means and of the per-modality noise before lifting.
        input_dims: dimensions of the two lifted modalities.
        class_sep: norm scale of the class means (signal strength).
        noise: standard deviation of the latent noise of each modality.
        lift_noise: standard deviation of the isotropic noise added after lifting.
        hard_gain: gain of the fixed tanh network of the hard modality (larger: more folded).
        hard_modality: which modality (1 or 2) goes through the tanh network.
        nuisance_dims: per modality, the number of label-free latent nuisance factors mixed
            into the lift (0: none). Loud nuisance factors hide the label information from a
            randomly initialised encoder, so the encoder has to *learn* to suppress them.
        nuisance_std: per modality, the standard deviation of those factors.
        n_train, n_val, n_test: split sizes.
        transform_seed: seed of the fixed transforms and class means (shared by all runs).
    """

    u1: float = 0.4
    s: float = 0.4
    u2: float = 0.2
    num_classes: int = 5
    latent_dim: int = 8
    input_dims: tuple[int, int] = (64, 256)
    class_sep: float = 1.5
    noise: tuple[float, float] = (1.0, 1.0)
    lift_noise: tuple[float, float] = (0.5, 1.0)
    hard_gain: float = 2.5
    hard_modality: int = 1
    nuisance_dims: tuple[int, int] = (0, 0)
    nuisance_std: tuple[float, float] = (0.0, 0.0)
    n_train: int = 2000
    n_val: int = 1000
    n_test: int = 2000
    transform_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("u1", "s", "u2"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise ValueError(f"expected {name} in [0, 1], got {value}")
        total = self.u1 + self.s + self.u2
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"expected u1 + s + u2 == 1, got {self.u1} + {self.s} + {self.u2} = {total}"
            )
        if self.hard_modality not in (1, 2):
            raise ValueError(f"expected hard_modality 1 or 2, got {self.hard_modality}")
        if any(k < 0 for k in self.nuisance_dims) or any(v < 0 for v in self.nuisance_std):
            raise ValueError(
                f"expected nuisance_dims and nuisance_std >= 0, got {self.nuisance_dims} "
                f"and {self.nuisance_std}"
            )
        if self.num_classes < 2:
            raise ValueError(f"expected num_classes >= 2, got {self.num_classes}")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"expected {name} >= 1, got {getattr(self, name)}")


class _Transforms:
    """Fixed random class means and lifting maps, drawn from ``transform_seed``."""

    def __init__(self, spec: SyntheticSpec) -> None:
        g = torch.Generator().manual_seed(spec.transform_seed)
        d, c = spec.latent_dim, spec.num_classes
        scale = spec.class_sep
        self.means = [torch.randn(c, d, generator=g) * scale for _ in range(2)]
        self.lift = [
            torch.randn(d, spec.input_dims[0], generator=g) / math.sqrt(d),
            torch.randn(d, spec.input_dims[1], generator=g) / math.sqrt(d),
        ]
        self.w1 = torch.randn(d, 4 * d, generator=g) * spec.hard_gain / math.sqrt(d)
        self.w2 = torch.randn(4 * d, d, generator=g) * spec.hard_gain / math.sqrt(4 * d)
        # drawn from their own generator, so the transforms above do not depend on them
        gn = torch.Generator().manual_seed(spec.transform_seed + 7919)
        self.nuisance_lift = [
            torch.randn(k, dim, generator=gn) / math.sqrt(max(k, 1))
            for k, dim in zip(spec.nuisance_dims, spec.input_dims, strict=True)
        ]

    def hard_map(self, z: Tensor) -> Tensor:
        """The hard modality's fixed nonlinear map ``(N, d) -> (N, d)``."""
        return torch.tanh(torch.tanh(z @ self.w1) @ self.w2)


def sample_categories(n: int, spec: SyntheticSpec, generator: torch.Generator) -> Tensor:
    """``(n,)`` category per point (0 shared, 1 U1, 2 U2) in the exact proportions, shuffled.

    Counts are ``round(n * u1)`` for U1, ``round(n * u2)`` for U2 and the rest shared.
    """
    n_u1 = round(n * spec.u1)
    n_u2 = round(n * spec.u2)
    n_s = n - n_u1 - n_u2
    if n_s < 0:
        raise ValueError(f"the proportions do not fit in {n} points")
    cats = torch.cat(
        [
            torch.zeros(n_s, dtype=torch.long),
            torch.ones(n_u1, dtype=torch.long),
            torch.full((n_u2,), 2, dtype=torch.long),
        ]
    )
    return cats[torch.randperm(n, generator=generator)]


def sample_split(
    n: int, spec: SyntheticSpec, transforms: _Transforms, generator: torch.Generator
) -> dict[str, Tensor]:
    """One split: ``{"m1": (n, D1), "m2": (n, D2), "label": (n,), "category": (n,)}``."""
    y = torch.randint(0, spec.num_classes, (n,), generator=generator)
    cats = sample_categories(n, spec, generator)
    informative = [(cats == 0) | (cats == 1), (cats == 0) | (cats == 2)]
    out: dict[str, Tensor] = {"label": y, "category": cats}
    for m in range(2):
        noise = torch.randn(n, spec.latent_dim, generator=generator) * spec.noise[m]
        z = noise + transforms.means[m][y] * informative[m].unsqueeze(1).float()
        if m == spec.hard_modality - 1:
            z = transforms.hard_map(z)
        x = z @ transforms.lift[m]  # (n, d) @ (d, D_m)
        x = x + spec.lift_noise[m] * torch.randn(x.shape, generator=generator)
        if spec.nuisance_dims[m]:
            nuisance = torch.randn(n, spec.nuisance_dims[m], generator=generator)
            x = (
                x + spec.nuisance_std[m] * nuisance @ transforms.nuisance_lift[m]
            )  # (n, k) @ (k, D_m)
        out[f"m{m + 1}"] = x
    return out


def make_datasets(spec: SyntheticSpec, seed: int) -> dict[str, TensorDictDataset]:
    """Train/val/test :class:`TensorDictDataset` for one seed (transforms fixed by the spec).

    Each split holds ``m1``, ``m2``, ``label`` and ``category`` (0 shared, 1 U1, 2 U2).
    """
    transforms = _Transforms(spec)
    g = torch.Generator().manual_seed(1_000_003 * (seed + 1))
    sizes = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}
    return {
        split: TensorDictDataset(sample_split(n, spec, transforms, g)) for split, n in sizes.items()
    }
