"""Does MCR's gradient survive your training step? A one-call check for loops that edit gradients.

Balancing methods such as gradient modulation (OGM-GE) or gradient surgery and Pareto mixing
(PCGrad, MMPareto) rewrite the encoders' gradients after ``backward``. Depending on which loss
``mcr(...).loss`` joins, MCR's gradient is kept, rescaled, or silently thrown away.
:func:`check_gradient_path` runs the user's own step twice from the same random state, once with
MCR's loss muted and once as written, and compares, for each module, the change MCR made to the
final gradients with MCR's own gradient (the gradient of ``mcr(...).loss`` alone).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from mcr_reg.regularizer import MCRRegularizer

__all__ = ["GradientPath", "GradientPathReport", "check_gradient_path"]


@dataclass(frozen=True)
class GradientPath:
    """What :func:`check_gradient_path` found for one module.

    Attributes:
        name: the module's name.
        cosine: cosine between the change MCR made to the module's final gradient and MCR's own
            gradient; 1 where MCR's gradient reaches the optimizer as it is (or rescaled).
        ratio: norm of that change over the norm of MCR's own gradient (the scale at which it
            arrives: 1 unchanged, 0.5 halved, 0 thrown away).
        survives: ``cosine >= threshold`` (and MCR gives the module a gradient at all).
        verdict: the finding in words.
    """

    name: str
    cosine: float
    ratio: float
    survives: bool
    verdict: str

    def __str__(self) -> str:
        return self.verdict


class GradientPathReport(Mapping[str, GradientPath]):
    """What :func:`check_gradient_path` found: one :class:`GradientPath` per checked module,
    by name (``report["audio"].cosine``), read like a dictionary.

    Attributes:
        survives: whether MCR's gradient survives on every checked module.

    ``str(report)`` gives the verdicts, one line per module.
    """

    def __init__(self, paths: Mapping[str, GradientPath]) -> None:
        self._paths = dict(paths)

    def __getitem__(self, name: str) -> GradientPath:
        try:
            return self._paths[name]
        except KeyError:
            raise KeyError(
                f"expected the name of a checked module ({', '.join(map(repr, self._paths))}), "
                f"got {name!r}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def survives(self) -> bool:
        return all(path.survives for path in self._paths.values())

    def __str__(self) -> str:
        return "\n".join(path.verdict for path in self._paths.values())

    def __repr__(self) -> str:
        return f"GradientPathReport({self._paths!r})"


class _Recorder:
    """Set on an MCRRegularizer during the probe: mutes its loss, or records its own gradient."""

    def __init__(self, parameters: list[Tensor]) -> None:
        self.parameters = parameters
        self.mute = False
        self.gradients: list[Tensor | None] | None = None

    def __call__(self, total: Tensor) -> Tensor:
        if self.mute:
            return total * 0.0
        if total.requires_grad:
            self.gradients = list(
                torch.autograd.grad(total, self.parameters, retain_graph=True, allow_unused=True)
            )
        return total


def _flat(tensors: list[Tensor | None], like: list[Tensor]) -> Tensor:
    parts = [
        (t if t is not None else torch.zeros_like(p)).detach().reshape(-1).double()
        for t, p in zip(tensors, like)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


@contextmanager
def _kept_state(mcr: MCRRegularizer, parameters: list[Tensor]) -> Iterator[None]:
    """Restore the parameters' gradients and MCR's random state after the probe."""
    grads = [p.grad.clone() if p.grad is not None else None for p in parameters]
    rng = mcr.get_extra_state()
    try:
        yield
    finally:
        for p, g in zip(parameters, grads):
            p.grad = g
        mcr.set_extra_state(rng)
        mcr._probe = None


def check_gradient_path(
    step: Callable[[], object],
    mcr: MCRRegularizer,
    modules: Mapping[str, nn.Module],
    *,
    threshold: float = 0.9,
) -> GradientPathReport:
    """Check that MCR's gradient reaches the optimizer through your training step.

    ``step`` is your step up to, not including, ``optimizer.step()``: zero the gradients, run the
    forward, compute your losses with ``mcr(...)`` where you put it, call ``backward`` and do to
    the gradients whatever your method does. It is run twice from the same random state: with
    MCR's loss muted (multiplied by 0) and as written. For each module the change of its final
    gradient is compared with MCR's own gradient, ``d mcr(...).loss / d params``, recorded in the
    second run. Afterwards the gradients and MCR's random state are as before the call (the
    modules' BatchNorm statistics, if any, have seen two more batches).

    Args:
        step: the training step without the optimizer update.
        mcr: the regularizer that ``step`` calls (once per run).
        modules: the modules to check, by name: usually the encoders.
        threshold: the cosine above which MCR's gradient counts as surviving.

    Returns:
        A :class:`GradientPathReport`: ``report[name]`` is the module's :class:`GradientPath`
        (``.survives``, ``.cosine``, ``.ratio``, ``.verdict``), ``report.survives`` whether
        MCR's gradient survives on all of them, ``print(report)`` the verdicts.

    Raises:
        RuntimeError: ``step`` did not call ``mcr``, or left no gradient on a module.

    Example:
        >>> import torch.nn.functional as F
        >>> from mcr_reg import MCRRegularizer
        >>> audio, video, head = nn.Linear(4, 6), nn.Linear(5, 6), nn.Linear(12, 3)
        >>> fuse = lambda a, v: head(torch.cat([a, v], -1))
        >>> mcr = MCRRegularizer(fuse, num_classes=3, latent_dims=(6, 6), seed=0)
        >>> xa, xv, y = torch.randn(8, 4), torch.randn(8, 5), torch.arange(8) % 3
        >>> def step():
        ...     for p in [*audio.parameters(), *video.parameters(), *head.parameters()]:
        ...         p.grad = None
        ...     za, zv = audio(xa), video(xv)
        ...     logits = fuse(za, zv)
        ...     (F.cross_entropy(logits, y) + mcr([za, zv], y, logits).loss).backward()
        >>> report = check_gradient_path(step, mcr, {"audio": audio, "video": video})
        >>> report.survives, round(report["audio"].cosine, 3)
        (True, 1.0)
    """
    names = list(modules)
    groups: list[list[Tensor]] = [
        [p for p in modules[n].parameters() if p.requires_grad] for n in names
    ]
    parameters = [p for group in groups for p in group]
    if not parameters:
        raise RuntimeError("expected modules with trainable parameters, got none")
    recorder = _Recorder(parameters)
    finals = _run_twice(step, mcr, recorder, parameters)
    if recorder.gradients is None:
        raise RuntimeError(
            "the step did not call MCR (or MCR's loss had no gradient): check_gradient_path "
            "needs the regularizer that the step calls"
        )
    paths: dict[str, GradientPath] = {}
    start = 0
    for name, group in zip(names, groups):
        stop = start + len(group)
        without, with_mcr = finals[0][start:stop], finals[1][start:stop]
        if all(g is None for g in with_mcr):
            raise RuntimeError(f"the step left no gradient on module {name!r}")
        change = _flat(with_mcr, group) - _flat(without, group)  # type: ignore[arg-type]
        own = _flat(recorder.gradients[start:stop], group)
        paths[name] = _judge(name, change, own, threshold)
        start = stop
    return GradientPathReport(paths)


def _run_twice(
    step: Callable[[], object],
    mcr: MCRRegularizer,
    recorder: _Recorder,
    parameters: list[Tensor],
) -> list[list[Tensor | None]]:
    """The parameters' final gradients after ``step`` with MCR's loss muted, then as written,
    both from the current random state (of torch and of MCR), which is restored afterwards."""
    device = parameters[0].device
    devices = [device] if device.type == "cuda" else []
    state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if devices else None
    finals: list[list[Tensor | None]] = []
    with _kept_state(mcr, parameters):
        rng = mcr.get_extra_state()
        for mute in (True, False):
            mcr.set_extra_state(rng)
            recorder.mute = mute
            mcr._probe = recorder
            with torch.random.fork_rng(devices=devices, device_type=device.type):
                torch.set_rng_state(state)
                if cuda_state is not None:
                    torch.cuda.set_rng_state(cuda_state, device)
                step()
            finals.append([p.grad.clone() if p.grad is not None else None for p in parameters])
    return finals


def _judge(name: str, change: Tensor, own: Tensor, threshold: float) -> GradientPath:
    own_norm, change_norm = float(own.norm()), float(change.norm())
    if own_norm == 0.0:
        return GradientPath(
            name, math.nan, math.nan, False, f"{name}: MCR gives this module no gradient"
        )
    cosine = float(change @ own) / (own_norm * change_norm) if change_norm > 0 else 0.0
    ratio = change_norm / own_norm
    survives = cosine >= threshold
    if survives:
        verdict = (
            f"{name}: MCR's gradient reaches the optimizer (cosine {cosine:.3f}, at "
            f"{ratio:.3g} times its size)"
        )
    elif ratio < 1e-3:
        verdict = (
            f"{name}: MCR's gradient is thrown away by the step (its change is {ratio:.2g} "
            "of MCR's gradient): add mcr(...).loss to the loss whose gradient your method "
            "keeps for this module (see docs/integration.md, loops that rewrite gradients)"
        )
    else:
        verdict = (
            f"{name}: the step changes MCR's gradient (cosine {cosine:.3f}, size ratio "
            f"{ratio:.3g}): your method re-weights or projects it (as Pareto mixing or gradient "
            "surgery do when gradients conflict), or only part of it reaches the loss your "
            "method keeps for this module; see docs/integration.md, loops that rewrite gradients"
        )
    return GradientPath(name, cosine, ratio, survives, verdict)
