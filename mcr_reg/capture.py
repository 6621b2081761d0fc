"""Record the inputs of a fusion module, for models whose ``forward`` does not return its latents.

MCR needs the tensors the fusion head is called with. Many models compute them inside
``forward`` and return only the logits (or re-project the encoders' outputs before fusing them,
so that what ``forward`` returns is *not* what the head sees). :class:`FusionInputs` puts a
forward pre-hook on the fusion module and keeps the positional inputs of its latest call, so the
training step needs no change to the model:

>>> import torch
>>> from torch import nn
>>> class Net(nn.Module):
...     def __init__(self) -> None:
...         super().__init__()
...         self.audio, self.video = nn.Linear(4, 8), nn.Linear(6, 8)
...         self.fusion = nn.Bilinear(8, 8, 3)
...     def forward(self, xa, xv):  # returns the logits only
...         return self.fusion(torch.tanh(self.audio(xa)), torch.tanh(self.video(xv)))
>>> net = Net()
>>> fusion_inputs = FusionInputs(net.fusion, names=("audio", "video"))
>>> logits = net(torch.randn(5, 4), torch.randn(5, 6))
>>> {name: tuple(z.shape) for name, z in fusion_inputs.latents.items()}
{'audio': (5, 8), 'video': (5, 8)}

Calls that :class:`~mcr_reg.MCRRegularizer` makes itself (its perturbed passes through the same
module) are not recorded, so the hook can stay on for the whole training run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from torch import Tensor, nn

__all__ = ["FusionInputs", "in_mcr_call", "mcr_internal_calls"]


class _ThreadState(threading.local):
    """Per-thread count of MCR's own fusion-head calls in progress (``nn.DataParallel`` runs
    replicas in threads, so the count must not leak from one replica to another)."""

    def __init__(self) -> None:
        # set on every thread's own instance (not a class default): a compiled step that is the
        # first to count would otherwise add the attribute inside the traced frame, which
        # Dynamo's guards reject
        self.depth = 0


_MCR_CALLS = _ThreadState()


@contextmanager
def mcr_internal_calls() -> Iterator[None]:
    """Mark the fusion-head calls in the block as MCR's own: :class:`FusionInputs` skips them.

    :class:`~mcr_reg.MCRRegularizer` wraps its fusion-head calls in this; a variant of MCR built
    from :mod:`mcr_reg.functional` can do the same.
    """
    _MCR_CALLS.depth += 1
    try:
        yield
    finally:
        _MCR_CALLS.depth -= 1


def in_mcr_call() -> bool:
    """True inside :func:`mcr_internal_calls` in this thread."""
    return _MCR_CALLS.depth > 0


class FusionInputs:
    """Capture the inputs of a fusion module through a forward pre-hook.

    Construct it once, next to :class:`~mcr_reg.MCRRegularizer`, and read :attr:`latents` after
    the model's forward::

        fusion_inputs = FusionInputs(model.fusion, names=("audio", "video"))
        mcr = MCRRegularizer(model.fusion, num_classes=6, latent_dims=(512, 512))
        ...
        logits = model(xa, xv)
        loss = F.cross_entropy(logits, y) + mcr(fusion_inputs.latents, y, logits).loss

    The hook records the positional arguments of the module's most recent call in the current
    thread, as they are (no copy, no detach: gradients flow back to the encoders through them).
    Calls made by :class:`~mcr_reg.MCRRegularizer` are ignored. Used as a context manager, the
    hook is removed on exit (and the record cleared on entry)::

        with FusionInputs(model.fusion) as fusion_inputs:
            logits = model(xa, xv)
        out = mcr(fusion_inputs.latents, y, logits)

    Args:
        module: the fusion module; MCR must call the same module (or a function that calls it)
            with the captured tensors, in the order they were recorded.
        names: optional modality names; :attr:`latents` is then a ``{name: tensor}`` mapping
            (named diagnostics in ``MCROutput``), else a tuple.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
    """

    def __init__(self, module: nn.Module, *, names: Sequence[str] | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(
                "expected the fusion module (an nn.Module, whose inputs a forward pre-hook can "
                f"record), got {type(module).__name__}; for a plain function, return its inputs "
                "from your forward instead"
            )
        self.module = module
        self.names = tuple(str(n) for n in names) if names is not None else None
        self._local = threading.local()
        self._handle: Any = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    # ------------------------------------------------------------------ recording

    def _hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if _MCR_CALLS.depth > 0:
            return None
        self._local.args = args
        self._local.kwargs = tuple(kwargs)
        return None

    def clear(self) -> None:
        """Forget the recorded call (of the current thread)."""
        self._local.args = None
        self._local.kwargs = ()

    def remove(self) -> None:
        """Remove the hook; :attr:`latents` keeps the last record until :meth:`clear`."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> FusionInputs:
        self.clear()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    # ------------------------------------------------------------------ reading

    @property
    def latents(self) -> tuple[Tensor, ...] | dict[str, Tensor]:
        """The positional inputs of the module's latest call outside MCR, in this thread.

        Raises:
            RuntimeError: the module has not been called (in this thread) since the hook was
                put on or cleared, or it was called with keyword arguments, or an input is not
                a tensor.
            ValueError: the number of inputs differs from the number of ``names``.
        """
        args = getattr(self._local, "args", None)
        what = f"{type(self.module).__name__} fusion module"
        if args is None:
            hooked = "is removed" if self._handle is None else "is on"
            raise RuntimeError(
                f"no call of the {what} was recorded in this thread (the hook {hooked}): run the "
                "model's forward first. Under nn.DataParallel on several GPUs the replicas run in "
                "other threads: return the latents from forward instead (see the integration "
                "guide)"
            )
        kwargs = getattr(self._local, "kwargs", ())
        if kwargs:
            raise RuntimeError(
                f"the {what} was called with keyword arguments {list(kwargs)}; MCR calls the "
                "fusion head as fusion_head(*latents), so pass the latents positionally"
            )
        bad = [f"{i}: {type(a).__name__}" for i, a in enumerate(args) if not isinstance(a, Tensor)]
        if bad:
            raise RuntimeError(
                f"expected the {what}'s inputs to be tensors (the latents), got {', '.join(bad)}"
            )
        if self.names is None:
            return tuple(args)
        if len(self.names) != len(args):
            raise ValueError(
                f"expected {len(self.names)} inputs {list(self.names)} (names), but the {what} "
                f"was called with {len(args)}"
            )
        return dict(zip(self.names, args))

    def __repr__(self) -> str:
        state = "removed" if self._handle is None else "on"
        return f"FusionInputs({type(self.module).__name__}, names={self.names}, hook {state})"
