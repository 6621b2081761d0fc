"""The first-step audit: the silent integration mistakes, caught once in the first two steps.

An MCR that is wired wrongly still returns a finite loss and every logged number looks normal.
:class:`FirstStepAudit` watches the first two training steps (MCR's first two calls and the
optimizer steps after them) and warns, once each, naming the cause and the fix:

- **detached latents**: a latent that requires no gradient (computed under ``torch.no_grad()``,
  ``.detach()``-ed, or from a frozen encoder): MCR cannot move that encoder;
- **MCR's loss in no backward**: ``optimizer.step()`` ran but MCR's loss of that step took part
  in no ``backward``/``autograd.grad`` (added to a loss that is only logged);
- **encoders' gradients rewritten after backward**: between the backward and
  ``optimizer.step()`` the encoders' gradients changed other than by one common factor
  (gradient modulation, surgery, Pareto mixing): whether MCR's part survives depends on which
  loss it joined, so the warning points to :func:`mcr_reg.check_gradient_path`, which measures
  it (gradient clipping and AMP unscaling, one factor for all, stay silent);
- **MCR's parameters in no optimizer**: an optimizer stepped the model but none holds MCR's own
  small heads;
- **MCR beside the model, missed by** ``model.zero_grad()``: in the second step the fusion
  head's gradients were cleared but MCR's were accumulated onto the first step's (so gradient
  clipping of ``model.parameters()`` misses them too). Read when the second step's backward
  reaches each parameter, before it accumulates: a gradient is cleared when it is ``None``
  (``zero_grad()``, ``set_to_none=True``) or all zeros (``zero_grad(set_to_none=False)``, which
  zeroes in place), so both modes are covered.

The fused logits not produced by the captured head are caught by MCR's logits comparison
(``check_values``). Everything here reads metadata, except one comparison of the encoders'
gradients before and after the first optimizer step (a copy of them is kept for that step
only) and, in the second step, one test for zeros of the fusion head's and MCR's gradients. No check runs under ``torch.compile``; ``MCRRegularizer(audit=False)`` turns it off.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.optim.optimizer as optim_hooks
from torch import Tensor

from mcr_reg import _messages as msg
from mcr_reg._graph import graph_leaves

__all__ = ["FirstStepAudit", "encoder_parameters"]

_MAX_NODES = 200_000  # the graph walk behind the latents stops there (it runs once)
_MAX_CALLS = 8  # MCR calls watched for the first two optimizer steps


def encoder_parameters(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The trainable leaf tensors (the encoders' parameters) the ``tensors`` depend on, found by
    walking their autograd graph once."""
    found = {
        id(leaf): leaf for leaf in graph_leaves(tensors, max_nodes=_MAX_NODES) if leaf.requires_grad
    }
    for t in tensors:  # a latent that is itself a leaf parameter
        if t.grad_fn is None and t.requires_grad:
            found.setdefault(id(t), t)
    return list(found.values())


class FirstStepAudit:
    """See the module docstring. One per :class:`~mcr_reg.MCRRegularizer`; a copy (pickle,
    deep copy) starts its own audit."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._reset()

    def _reset(self) -> None:
        self.calls = 0
        self.finished = not self.enabled
        self.backpropagated = False
        self.encoders: list[Tensor] = []
        self.snapshots: dict[int, tuple[int, int, Tensor]] = {}  # id(p) -> grad id, version, copy
        self.stepped: set[int] = set()  # ids of the parameters of optimizers that stepped
        self.optimizer_steps = 0
        self.optimizers_checked = False
        # between the first optimizer step and the next backward, was each gradient of MCR and
        # of the fusion head cleared? id(p) -> 0-dim bool tensor (read at the second step)
        self.cleared: dict[int, Tensor] | None = None
        self.handles: list[Any] = []
        self.owner: Callable[[], Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"enabled": self.enabled}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.enabled = bool(state["enabled"])
        self._reset()

    # ------------------------------------------------------------------ MCR's calls

    def observe(self, mcr: Any, names: Sequence[str], zs: Sequence[Tensor], loss: Tensor) -> None:
        """Called by MCR at the end of each of its first calls (eager mode only)."""
        if torch.compiler.is_compiling():
            return
        if self.finished:
            if self.handles:
                self.finish()  # removes a hook left by a finish inside it
            return
        self.calls += 1
        if self.calls == 1:
            self._first_call(mcr, names, zs, loss)
        elif self.optimizer_steps >= 1 and not self.optimizers_checked:
            self.optimizers_checked = True
            self._second_call(mcr)
        if self.calls > _MAX_CALLS:  # no optimizer step seen: a loop without one, or a probe
            self.finish()

    def _first_call(
        self, mcr: Any, names: Sequence[str], zs: Sequence[Tensor], loss: Tensor
    ) -> None:
        detached = [n for n, z in zip(names, zs) if not z.requires_grad]
        if detached:
            msg.warn_detached_latents(detached)
        if not torch.is_grad_enabled() or not loss.requires_grad:
            self.finish()  # an evaluation call, or nothing to train: nothing more to watch
            return
        self.owner = weakref.ref(mcr)
        loss.register_hook(self._mark_backpropagated)
        own = {id(p) for p in mcr.parameters()}
        self.encoders = [p for p in encoder_parameters(zs) if id(p) not in own]
        for p in self.encoders:
            self.handles.append(p.register_post_accumulate_grad_hook(self._snapshot))
        self.handles.append(optim_hooks.register_optimizer_step_pre_hook(self._before_step))

    def _second_call(self, mcr: Any) -> None:
        own = [p for p in mcr.parameters() if p.requires_grad]
        model = {id(p) for p in self.encoders} | {id(p) for p in _head_parameters(mcr)}
        if own and self.stepped & model and not self.stepped & {id(p) for p in own}:
            msg.warn_not_in_optimizer()
            mcr._updates.warned = True  # the same finding, said once
            self.cleared = None  # their gradients accumulate for that reason alone

    # ------------------------------------------------------------------ hooks

    def _mark_backpropagated(self, grad: Tensor) -> None:
        self.backpropagated = True

    def _snapshot(self, p: Tensor) -> None:
        if p.grad is not None and self.optimizer_steps == 0:
            self.snapshots[id(p)] = (id(p.grad), p.grad._version, p.grad.detach().clone())

    def _before_step(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        if self.finished:
            return  # removed at MCR's next call (a hook cannot remove itself while it runs)
        mcr = self.owner() if self.owner is not None else None
        if mcr is None:
            self.finish(in_hook=True)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        ids = {id(p) for p in params}
        self.stepped |= ids
        watched = [p for p in self.encoders if id(p) in ids]
        if not watched and not ids & {id(p) for p in _head_parameters(mcr)}:
            return  # another optimizer (of MCR alone, or of something else)
        self.optimizer_steps += 1
        if self.optimizer_steps == 1:
            self._first_step(mcr, watched)
        elif self.optimizer_steps == 2:
            self._second_step(mcr)
            if not self.optimizers_checked:
                self.optimizers_checked = True
                self._second_call(mcr)
            self.finish(in_hook=True)

    def _first_step(self, mcr: Any, watched: list[Tensor]) -> None:
        if not self.backpropagated:
            msg.warn_loss_not_backpropagated()
        rewritten = _rewritten(watched, self.snapshots)
        if rewritten:
            msg.warn_gradients_rewritten(rewritten)
        self.snapshots.clear()
        for handle in self.handles[:-1]:  # the accumulate hooks; the optimizer hook stays
            handle.remove()
        del self.handles[:-1]
        self.cleared = {}
        tracked = [p for p in _tracked(mcr) if p.requires_grad and p.grad is not None]
        # before the optimizer hook, which must stay last (see finish)
        self.handles[:0] = [p.register_hook(self._clear_check(p)) for p in tracked]

    def _clear_check(self, p: Tensor) -> Callable[[Tensor], None]:
        """A hook for ``p`` that records, at the first backward reaching ``p`` after the first
        optimizer step, whether its gradient was cleared (``None`` or all zeros) before it."""
        key = id(p)

        def record(grad: Tensor) -> None:
            if self.cleared is not None and key not in self.cleared:
                held = p.grad
                if held is None:
                    self.cleared[key] = torch.ones((), dtype=torch.bool)
                else:
                    values = held._values() if held.is_sparse else held
                    self.cleared[key] = ~values.detach().any()

        return record

    def _second_step(self, mcr: Any) -> None:
        if self.cleared is None:
            return
        cleared = {k: bool(v) for k, v in self.cleared.items()}  # one read, once
        own = [cleared[id(p)] for p in mcr.parameters() if id(p) in cleared]
        head = [cleared[id(p)] for p in _head_parameters(mcr) if id(p) in cleared]
        if any(head) and own and not any(own):
            msg.warn_grads_accumulate()

    def finish(self, in_hook: bool = False) -> None:
        """Remove every hook (the optimizer hook at MCR's next call when this runs inside it);
        nothing more is checked."""
        kept = self.handles[-1:] if in_hook and self.handles else []
        for handle in self.handles:
            if handle not in kept:
                handle.remove()
        self.handles = kept
        self.snapshots.clear()
        self.encoders = []
        self.finished = True


def _head_parameters(mcr: Any) -> list[Tensor]:
    return [p for m in mcr._fusion.modules() for p in m.parameters(recurse=False)]


def _tracked(mcr: Any) -> list[Tensor]:
    return [*mcr.parameters(), *_head_parameters(mcr)]


def _rewritten(watched: list[Tensor], snapshots: dict[int, tuple[int, int, Tensor]]) -> int:
    """How many of the encoders' parameters hold a gradient that the backward did not leave
    as it is, unless every change is one common factor (clipping, unscaling): 0 then."""
    changed, before, after = 0, [], []
    for p in watched:
        if p.grad is None:
            continue
        shot = snapshots.get(id(p))
        if shot is None:
            changed += 1  # set without a backward accumulating into it
            continue
        grad_id, version, copy = shot
        if id(p.grad) != grad_id or p.grad._version != version:
            changed += 1
            before.append(copy.flatten().double())
            after.append(p.grad.detach().flatten().double())
    if not changed:
        return 0
    if len(before) == changed:  # all of them had a snapshot: a common factor?
        b, a = torch.cat(before), torch.cat(after)
        norms = float(b.norm()) * float(a.norm())
        if norms > 0 and math.isclose(float(b @ a) / norms, 1.0, abs_tol=1e-6):
            return 0
    return changed
