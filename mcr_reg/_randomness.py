"""MCR's own randomness: private generators per device, their state for checkpoints, and the
perturbations a step draws from them. The global RNG is never touched in eager mode."""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mcr_reg import functional as MF
from mcr_reg._checks import check_int, compiling
from mcr_reg._messages import warn_at_compile_time_that_the_generator_is_ignored


class PrivateGenerators:
    """One ``torch.Generator`` per device, seeded from ``seed`` and created on first use; a state
    loaded from a checkpoint waits until the generator of its device is created."""

    def __init__(self, seed: int | None) -> None:
        self.given = seed is not None
        self.seed = seed if seed is not None else secrets.randbits(63)
        self.generators: dict[str, torch.Generator] = {}
        self.pending: dict[str, Tensor] = {}
        self.subsets = random.Random(self.seed)  # subsets="sampled": drawn on the host

    def restart(self, seed: object) -> None:
        self.seed = int(check_int(seed, "seed"))  # type: ignore[arg-type]
        self.given = True
        self.generators.clear()
        self.pending.clear()
        self.subsets.seed(self.seed)

    def on(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.generators:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            pending = self.pending.pop(key, None)
            if pending is not None:
                g.set_state(pending)
            self.generators[key] = g
        return self.generators[key]

    def states(self) -> dict[str, Tensor]:
        states = {k: g.get_state() for k, g in self.generators.items()}
        for k, state in self.pending.items():
            states.setdefault(k, state.clone())
        return states

    def load(self, seed: int, states: Mapping[object, object], subsets: object = None) -> None:
        self.restart(seed)
        if subsets is not None:
            self.subsets.setstate(subsets)  # type: ignore[arg-type]
        for key, value in states.items():
            if not isinstance(value, Tensor) or value.dtype != torch.uint8:
                raise TypeError(f"expected a uint8 generator state for {key!r}, got {value!r}")
            self.pending[str(key)] = value.detach().cpu().clone()


def check_generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"expected a torch.Generator, got {type(generator).__name__}")
    return generator


def generator_for(
    device: torch.device, user: torch.Generator | None, private: PrivateGenerators
) -> torch.Generator | None:
    """The generator a step draws from: the user's, else the private one of ``device``; none
    while compiling (Dynamo cannot trace generators: the global RNG is used, said once)."""
    if compiling():
        if user is not None or private.given:
            warn_at_compile_time_that_the_generator_is_ignored()
        return None
    return user if user is not None else private.on(device)


def draw_perturbations(
    kind: str,
    zs: Sequence[Tensor],
    extra: list[Tensor | None],
    permutations: Tensor | None,
    draws: int,
    noise_scale: float,
    generator: torch.Generator | None,
) -> tuple[Tensor | None, list[Tensor | None]]:
    """``(permutations, perturbed)`` for :func:`mcr_reg.functional.mipd`: permutations drawn
    unless given; or, for ``"noise"`` and ``"zero"``, the perturbed latents of the modalities
    without ``extra`` ones (noise: the latent's per-feature batch standard deviation times
    ``noise_scale`` times a standard normal draw)."""
    if all(e is not None for e in extra):
        return None, extra
    given = [e for e in extra if e is not None]
    draws = int(given[0].shape[0]) if given else draws
    device, batch = zs[0].device, int(zs[0].shape[0])
    if kind == "permutation":
        if permutations is None:
            permutations = MF.sample_permutations(
                draws, len(zs), batch, generator=generator, device=device
            )
        return permutations, extra
    out: list[Tensor | None] = []
    for z, e in zip(zs, extra):
        if e is not None:
            out.append(e)
        elif kind == "zero":
            out.append(torch.zeros_like(z).unsqueeze(0).expand(draws if given else 1, *z.shape))
        else:
            std = z.detach().std(dim=0, keepdim=True)
            source = generator.device if generator is not None else device
            noise = torch.randn(
                (draws, *z.shape), generator=generator, device=source, dtype=z.dtype
            )
            out.append(z.unsqueeze(0) + noise_scale * std * noise.to(device))
    return None, out
