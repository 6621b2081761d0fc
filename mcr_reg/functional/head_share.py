"""How the fusion head's parameters get their share of MIPD's gradient: one pass with scaled
parameters where ``torch.func.functional_call`` reaches them, else a second pass on detached rows;
and what was learnt about a head to choose between the two.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor

from mcr_reg._checks import (
    compiling,
    shape_of,
)
from mcr_reg._graph import graph_leaves
from mcr_reg.functional.game import ShareHeadGradient, runs_of, scale_grad


class HeadRoute:
    """What MIPD has learnt about a fusion head, to give its parameters their share of the
    game's gradient by the cheapest exact route.

    ``reaches``: for a module, the ids of its parameters when checked and whether
    ``functional_call`` with scaled parameters reaches every trainable tensor its output depends
    on (the one-pass route); ``leaves``: for a head, the trainable tensors its output was seen to
    depend on in a second pass on detached inputs (:meth:`parameters_seen`). Both are weak: a
    head that is gone is forgotten. One route per head (:class:`mcr_reg.MCRRegularizer` keeps
    one for its head); :func:`~mcr_reg.functional.mipd` called without one learns from scratch
    on every call, which is exact and only checks more. Copies and pickles start empty: the
    route is learnt again on the first step.
    """

    def __init__(self) -> None:
        self.reaches: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[int, ...], bool]] = (
            weakref.WeakKeyDictionary()
        )
        self.leaves: weakref.WeakKeyDictionary[object, tuple[Tensor, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self.warned_share_not_applied = False

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]

    def substitution_reaches(self, module: object) -> bool | None:
        """Whether ``functional_call(module, scaled_parameters, ...)`` runs ``module`` with the
        scaled parameters, so that scaling them scales the head's parameter gradient.

        ``False`` for modules whose parameters a wrapper swaps in at call time (FSDP2's
        ``fully_shard`` and FSDP all-gather them in a forward pre-hook; DTensor parameters),
        where only the second pass on detached inputs applies the head's share. ``None`` while
        unknown: the next scaled call checks it (eager mode) and the answer is kept for the
        module's current parameters. Under ``torch.compile`` the answer comes from the known
        wrappers alone.
        """
        if not isinstance(module, torch.nn.Module):
            return False
        if compiling():
            return not _managed_by_wrapper(module)
        known = self.reaches.get(module)
        ids = _parameter_ids(module)
        if known is not None and known[0] == ids:
            return known[1]
        if _managed_by_wrapper(module) or _shared_parameters(module):
            self.reaches[module] = (ids, False)
            return False
        return None

    def substitution_failed(self, module: torch.nn.Module) -> bool:
        """Whether the last checked scaled call of ``module`` reached a trainable tensor that
        the substitution did not scale (see :func:`_call_scaled`)."""
        known = self.reaches.get(module)
        return known is not None and not known[1]

    def see_leaves(self, head: object, side: Tensor) -> None:
        """Keep the trainable tensors that ``side`` (the head's output in a second pass on
        detached inputs) depends on, the first time."""
        if head not in self.leaves:
            self.leaves[head] = tuple(graph_leaves([side]))

    def parameters_seen(self, head: object) -> tuple[Tensor, ...] | None:
        """The trainable tensors ``head``'s output was seen to depend on, from the second pass
        of an earlier call (None if no such pass ran yet)."""
        return self.leaves.get(head)

    def forget(self, head: object) -> None:
        """Drop what :meth:`parameters_seen` knows of ``head`` (its route changed)."""
        self.leaves.pop(head, None)


def head_with_share(
    route: HeadRoute,
    fusion_head: Callable[..., Tensor],
    rows: Sequence[Tensor],
    batch: int,
    batched: bool,
    shares: Sequence[float],
    blocks: Sequence[tuple[int, float]],
) -> Tensor:
    """The head on the stacked rows, its parameters receiving ``c`` times the gradient of each
    block (``blocks``: ``(rows, c)``): one scaled-parameter pass for a module head with one c
    (when the substitution reaches its parameters), else a second pass on detached rows.
    ``route`` holds what earlier calls learnt about the head, and learns from this one."""
    device, n_rows = rows[0].device, sum(n for n, _ in blocks)
    uniform = len(set(shares)) == 1
    scaled = uniform and shares[0] != 1.0 and isinstance(fusion_head, torch.nn.Module)
    # whether calling the module through functional_call reaches its parameters (False where a
    # wrapper such as FSDP2's fully_shard swaps them in at call time; None: not yet known)
    reaches = route.substitution_reaches(fusion_head) if scaled else False
    second_pass = reaches is False and any(c != 1.0 for _, c in blocks)
    # the random state is kept for a second pass, and for the rerun of a scaled pass whose
    # head turns out to use a trainable tensor that the substitution did not scale
    rng = _rng_state(device) if (second_pass or scaled) and not compiling() else None
    if reaches is False or not isinstance(fusion_head, torch.nn.Module):
        out = _call_head(fusion_head, rows, batch, batched)
    else:
        out, reached = _call_scaled(
            route, fusion_head, shares[0], rows, batch, batched, check=reaches is None
        )
        if not reached:
            # the call showed that the substitution does not reach every trainable tensor the
            # head uses: run the plain head from the same random state and take the
            # second-pass route
            assert rng is not None
            with _replayed_rng(device, rng):
                out = _call_head(fusion_head, rows, batch, batched)
            second_pass = True
    _check_rows(out, n_rows)
    if second_pass and out.requires_grad:
        # second pass on detached inputs: the parameters get (c - 1) more, the latents nothing;
        # it replays the first pass's random state, so dropout draws the same masks (eager mode)
        replay = _replayed_rng(device, rng) if rng is not None else nullcontext()
        with replay:
            side = _call_head(fusion_head, [r.detach() for r in rows], batch, batched)
        _check_rows(side, n_rows)
        if not side.requires_grad:
            _warn_share_not_applied(route, fusion_head)
        elif not compiling():
            route.see_leaves(fusion_head, side)
        out = ShareHeadGradient.apply(out, side, runs_of([(n, c - 1.0) for n, c in blocks]))
    return out


def _call_head(
    head: Callable[..., Tensor], rows: Sequence[Tensor], batch: int, batched: bool
) -> Tensor:
    """The head on stacked rows: one call, or one call per block of ``batch`` rows."""
    if batched:
        return head(*rows)
    n_rows = int(rows[0].shape[0])
    return torch.cat([head(*(r[j : j + batch] for r in rows)) for j in range(0, n_rows, batch)])


def _check_rows(out: object, n_rows: int) -> None:
    if not isinstance(out, Tensor) or out.dim() < 1 or out.shape[0] != n_rows:
        got = shape_of(out) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"expected the fusion head to return predictions with {n_rows} rows for {n_rows} "
            f"stacked inputs, got {got}"
        )


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextmanager
def _replayed_rng(device: torch.device, state: tuple[Tensor, Tensor | None]) -> Iterator[None]:
    """Run the block from the random state ``state``; the current state is restored after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


def _call_scaled(
    route: HeadRoute,
    module: torch.nn.Module,
    factor: float,
    rows: Sequence[Tensor],
    batch: int,
    batched: bool,
    *,
    check: bool,
) -> tuple[Tensor, bool]:
    """``module`` on ``rows`` with every parameter's gradient scaled by ``factor`` (one pass,
    ``torch.func.functional_call``), and whether that scaled every trainable tensor the output
    depends on. With ``check`` the first call also looks whether the module ran with the
    substituted parameters (a wrapper may swap in its own, see :func:`_substitution_reaches`).
    In eager mode every call then walks the output's graph (:func:`_reaches_unscaled`): a
    trainable tensor reached other than through the rows or the scaled parameters (a module
    the head did not run before, a parameter used directly, one unfrozen since) makes the
    answer False, and is kept, so that the caller reruns this step and later steps on the
    second-pass route, which is exact for any head."""
    params = {n: scale_grad(p, factor) for n, p in module.named_parameters()}

    def call(*inputs: Tensor) -> Tensor:
        return torch.func.functional_call(module, params, inputs)  # type: ignore[no-any-return]

    probe = _SubstitutionProbe(module, params) if check else None
    try:
        out = _call_head(call, rows, batch, batched)
    finally:
        if probe is not None:
            probe.remove()
    reached = probe is None or probe.reached
    if reached and not compiling() and isinstance(out, Tensor) and out.requires_grad:
        reached = not _reaches_unscaled(out, [*rows, *params.values()])
    if check or not reached:
        route.reaches[module] = (_parameter_ids(module), reached)
    return out, reached


def _reaches_unscaled(out: Tensor, boundary: Sequence[Tensor]) -> bool:
    """Whether ``out``'s autograd graph reaches a trainable leaf tensor without passing through
    one of the ``boundary`` tensors (the head's input rows and its substituted parameters):
    a walk over the head's own nodes only, ending at the first such leaf."""
    return next(graph_leaves([out], stops=boundary), None) is not None


def _parameter_ids(module: torch.nn.Module) -> tuple[int, ...]:
    return tuple(id(p) for p in module.parameters())


def _shared_parameters(module: torch.nn.Module) -> bool:
    """A parameter reachable by two names (a shared submodule or tied weights):
    functional_call would swap it twice and could not put the original back."""
    ids = [id(p) for _, p in module.named_parameters(remove_duplicate=False)]
    return len(set(ids)) != len(ids)


def _managed_by_wrapper(module: torch.nn.Module) -> bool:
    """True when a sharding wrapper manages the parameters of ``module`` or of a submodule."""
    modules, parameters = _wrapper_types()
    if any(isinstance(m, modules) for m in module.modules()):
        return True
    return any(isinstance(p, parameters) for p in module.parameters())


def _wrapper_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """The module classes of the sharding wrappers and the parameter classes they use, among
    those already imported (a model cannot be wrapped by a module nobody imported)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    tensor = sys.modules.get("torch.distributed.tensor")
    modules = tuple(
        getattr(fsdp, name)
        for name in ("FullyShardedDataParallel", "FSDPModule")
        if fsdp is not None and hasattr(fsdp, name)
    )
    parameters = (tensor.DTensor,) if tensor is not None and hasattr(tensor, "DTensor") else ()
    return modules, parameters


class _SubstitutionProbe:
    """Forward pre-hooks that check, when each submodule runs (after the hooks registered
    before, such as FSDP's all-gather), that it holds the parameters ``functional_call``
    substituted."""

    def __init__(self, module: torch.nn.Module, substituted: dict[str, Tensor]) -> None:
        self.reached = True
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for prefix, sub in module.named_modules():
            own = {
                name: substituted[f"{prefix}.{name}" if prefix else name]
                for name, p in sub._parameters.items()
                if p is not None and (f"{prefix}.{name}" if prefix else name) in substituted
            }
            if own:
                self._handles.append(sub.register_forward_pre_hook(self._hook_for(own)))

    def _hook_for(self, own: dict[str, Tensor]) -> Callable[[torch.nn.Module, object], None]:
        def hook(sub: torch.nn.Module, args: object) -> None:
            if any(sub._parameters.get(name) is not t for name, t in own.items()):
                self.reached = False

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _warn_share_not_applied(route: HeadRoute, head: object) -> None:
    """The second pass carries no gradient although the head has trainable parameters (said
    once per route)."""
    if route.warned_share_not_applied or compiling() or not isinstance(head, torch.nn.Module):
        return
    if not any(p.requires_grad for p in head.parameters()):
        return
    route.warned_share_not_applied = True
    warnings.warn(
        f"MCR could not apply the fusion head's share of the MIPD gradient: the second pass of "
        f"the {type(head).__name__} head on detached inputs carries no gradient to its "
        "parameters (a wrapper MCR does not know?), so the head receives the plain sum of the "
        "terms (head_gradient='sum'). Pass a plain function that calls the head, or report the "
        "wrapper. (Warned once.)",
        RuntimeWarning,
        stacklevel=4,
    )
