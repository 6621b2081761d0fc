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

A fusion module called on one concatenated tensor (``self.head(torch.cat((a, v), 1))``, the
commonest late fusion) needs no model edit either: ``split=`` gives the width of each
modality's slice, :attr:`FusionInputs.latents` are the slices, and :attr:`FusionInputs.head`
calls the module on their concatenation:

>>> class InlineNet(nn.Module):
...     def __init__(self) -> None:
...         super().__init__()
...         self.audio, self.video = nn.Linear(4, 8), nn.Linear(6, 5)
...         self.head = nn.Linear(13, 3)
...     def forward(self, xa, xv):
...         return self.head(torch.cat((self.audio(xa), self.video(xv)), 1))
>>> net = InlineNet()
>>> fusion_inputs = FusionInputs(net.head, split=(8, 5))
>>> logits = net(torch.randn(5, 4), torch.randn(5, 6))
>>> [tuple(z.shape) for z in fusion_inputs.latents]
[(5, 8), (5, 5)]
>>> torch.equal(fusion_inputs.head(*fusion_inputs.latents), logits)
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from mcr_reg.calls import CallRecord, FusionCall

__all__ = ["Composed", "Concatenated", "FusionInputs", "in_mcr_call", "mcr_internal_calls"]


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


class Concatenated(nn.Module):
    """A fusion module that takes one concatenated tensor, called with the per-modality latents.

    ``Concatenated(head)(z_1, ..., z_M) == head(torch.cat([z_1, ..., z_M], dim))``: give it to
    :class:`~mcr_reg.MCRRegularizer` as the fusion head when the model calls its head on a
    concatenation (:attr:`FusionInputs.head` builds it). The head is a submodule, so its
    parameters, BatchNorm and Dropout layers are seen as those of any module head.

    Args:
        head: the module called on the concatenation.
        dim: the axis of the concatenation (default: the last).
    """

    def __init__(self, head: nn.Module, dim: int = -1) -> None:
        super().__init__()
        self.head, self.dim = head, int(dim)

    def forward(self, *latents: Tensor) -> Any:
        return self.head(torch.cat(latents, dim=self.dim))


class Composed(nn.Module):
    """A fusion module followed by a separate classifier, as one head:
    ``Composed(fusion, classifier)(*args, **kwargs) == classifier(fusion(*args, **kwargs))``
    (:attr:`FusionInputs.head` with ``then=``); a tuple the fusion returns is passed as the
    classifier's arguments, ``classifier(*fusion(...))``."""

    def __init__(self, fusion: nn.Module, then: nn.Module) -> None:
        super().__init__()
        self.fusion, self.then = fusion, then

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        fused = self.fusion(*args, **kwargs)
        return self.then(*fused) if isinstance(fused, tuple) else self.then(fused)


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
        split: for a module called on one concatenated tensor, the width of each modality's
            slice along ``split_dim``, in order; :attr:`latents` are then the slices (views:
            gradients reach the encoders) and :attr:`head` calls the module on their
            concatenation.
        split_dim: the axis of the concatenation (default: the last).
        then: a module the model calls on the fusion module's output to get the prediction (a
            separate classifier): :attr:`head` is then the two in sequence and :attr:`logits`
            the classifier's output.
        latents: which arguments of the call are the latents (see
            :class:`~mcr_reg.calls.FusionCall`, like the four below): for a call that is not
            ``module(z_1, ..., z_M)`` with batch-first latents (a list or dict of latents,
            keyword arguments, masks, sequence-first layouts). A call of any form is read when
            this object is passed to MCR, ``mcr(fusion_inputs, y)``.
        layout: the latents' axes where they are not batch-first.
        follows: arguments that move with a latent (masks, lengths).
        per_sample: arguments with the batch axis that are repeated per sample.
        unchanged: arguments passed through as they are.

    The hook also keeps the module's output (:attr:`logits`), so that the training step can pass
    this object itself to MCR: ``mcr(fusion_inputs, y)`` reads the latents and the logits of the
    module's latest call, and refuses a record it has already used or one made in eval mode.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
        ValueError: ``split`` has fewer than two widths or one that is not positive.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        names: Sequence[str] | None = None,
        split: Sequence[int] | None = None,
        split_dim: int = -1,
        then: nn.Module | None = None,
        latents: Sequence[str] | None = None,
        layout: str | dict[str, str] | None = None,
        follows: dict[str, str] | None = None,
        per_sample: Sequence[str] = (),
        unchanged: Sequence[str] = (),
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(
                "expected the fusion module (an nn.Module, whose inputs a forward pre-hook can "
                f"record), got {type(module).__name__}; for a plain function, return its inputs "
                "from your forward instead"
            )
        self.module = module
        self.names = tuple(str(n) for n in names) if names is not None else None
        self.split: tuple[int, ...] | None = None
        if split is not None:
            widths = tuple(split)
            if len(widths) < 2 or not all(
                isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
            ):
                raise ValueError(
                    f"expected split as the positive widths of at least two modalities, got {split!r}"
                )
            if self.names is not None and len(self.names) != len(widths):
                raise ValueError(
                    f"expected one name per split width, got names {list(self.names)} and "
                    f"split {widths}"
                )
            self.split = widths
        self.split_dim = int(split_dim)
        self.reading = FusionCall(
            latents=latents, names=names, layout=layout, follows=follows,
            per_sample=per_sample, unchanged=unchanged,
        )  # fmt: skip
        if self.split is not None and not self.reading.plain:
            raise ValueError(
                "split= reads one concatenated tensor; latents=, layout=, follows=, per_sample= "
                "and unchanged= read a call of another form: give one or the other"
            )
        if then is not None and not isinstance(then, nn.Module):
            raise TypeError(f"expected then= to be an nn.Module, got {type(then).__name__}")
        self.then = then
        head: nn.Module = module if then is None else Composed(module, then)
        self._head = Concatenated(head, self.split_dim) if self.split is not None else head
        self._local = threading.local()
        self._count = 0  # calls recorded so far (all threads)
        self._handle: Any = module.register_forward_pre_hook(self._hook, with_kwargs=True)
        self._output_handle: Any = (then if then is not None else module).register_forward_hook(
            self._output_hook
        )

    # ------------------------------------------------------------------ recording

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if _MCR_CALLS.depth > 0:
            return None
        self._count += 1
        self._local.args = args
        self._local.kwargs = dict(kwargs)
        self._local.output = None
        self._local.training = module.training
        self._local.record = self._count
        return None

    def _output_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if _MCR_CALLS.depth > 0:
            return None
        self._local.output = output
        return None

    def clear(self) -> None:
        """Forget the recorded call (of the current thread)."""
        self._local.args = None
        self._local.kwargs = {}
        self._local.output = None
        self._local.record = None

    def remove(self) -> None:
        """Remove the hooks; :attr:`latents` keeps the last record until :meth:`clear`."""
        if self._handle is not None:
            self._handle.remove()
            self._output_handle.remove()
            self._handle = None

    @property
    def head(self) -> nn.Module:
        """The fusion head to give :class:`~mcr_reg.MCRRegularizer`: the module itself, or, with
        ``split``, a :class:`Concatenated` module that calls it on the concatenated latents."""
        return self._head

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
        kwargs = getattr(self._local, "kwargs", {})
        whole = "; pass this object itself to MCR, mcr(fusion_inputs, y), which reads a call of any form"
        if kwargs:
            raise RuntimeError(
                f"the {what} was called with keyword arguments {list(kwargs)}: .latents gives "
                f"the positional latents of a call fusion(z_1, ..., z_M) only{whole}"
            )
        bad = [f"{i}: {type(a).__name__}" for i, a in enumerate(args) if not isinstance(a, Tensor)]
        if bad:
            raise RuntimeError(
                f"expected the {what}'s inputs to be tensors (the latents), got "
                f"{', '.join(bad)}{whole}"
            )
        if not self.reading.plain:
            raise RuntimeError(
                f"FusionInputs was given latents=, layout=, follows=, per_sample= or unchanged=, "
                f"which MCR applies when it reads the call{whole}"
            )
        if self.split is not None:
            args = self._split(args, what)
        if self.names is None:
            return tuple(args)
        if len(self.names) != len(args):
            raise ValueError(
                f"expected {len(self.names)} inputs {list(self.names)} (names), but the {what} "
                f"was called with {len(args)}"
            )
        return dict(zip(self.names, args))

    def _split(self, args: tuple[Tensor, ...], what: str) -> tuple[Tensor, ...]:
        assert self.split is not None
        if len(args) != 1:
            raise RuntimeError(
                f"split={self.split} expects the {what} to be called on one concatenated tensor, "
                f"but it was called with {len(args)} inputs; leave split out for a module that "
                "takes one tensor per modality"
            )
        (joined,) = args
        axis = self.split_dim if self.split_dim >= 0 else joined.dim() + self.split_dim
        if not 0 <= axis < joined.dim() or joined.shape[axis] != sum(self.split):
            raise RuntimeError(
                f"split={self.split} (total {sum(self.split)}) does not match the {what}'s input "
                f"of shape {tuple(joined.shape)} along axis {self.split_dim}"
            )
        return tuple(torch.split(joined, list(self.split), dim=axis))

    @property
    def logits(self) -> Any:
        """What the module returned in its latest recorded call (in this thread)."""
        if getattr(self._local, "args", None) is None:
            self.latents  # nothing recorded: raises, saying why  # noqa: B018
        return getattr(self._local, "output", None)

    def plain_record(self) -> bool:
        """The latest call is ``module(z_1, ..., z_M)`` on tensors (or ``split=`` reads it) and no
        option asks for more: :attr:`latents` gives its latents as they are."""
        args = getattr(self._local, "args", None)
        if args is None or self.split is not None:
            return True
        return (
            self.reading.plain
            and not getattr(self._local, "kwargs", {})
            and all(isinstance(a, Tensor) for a in args)
        )

    def record(self) -> CallRecord:
        """The latest call's arguments, positional and keyword, read as this object's options
        say (:class:`~mcr_reg.calls.FusionCall`)."""
        if getattr(self._local, "args", None) is None:
            self.latents  # nothing recorded: raises, saying why  # noqa: B018
        return self.reading.of(*self._local.args, **self._local.kwargs)

    def take(self) -> tuple[tuple[Tensor, ...] | dict[str, Tensor] | CallRecord, Any]:
        """The latents and output of the latest call, once: what ``mcr(fusion_inputs, y)`` reads.
        A call of another form than ``module(z_1, ..., z_M)`` comes as its :meth:`record`.

        Raises:
            RuntimeError: the record was already taken (no call of the module since; a stale
                record from an earlier step), or the module was in eval mode when it was made.
        """
        record = getattr(self._local, "record", None)
        what = f"{type(self.module).__name__} fusion module"
        if record is not None and record == getattr(self._local, "taken", None):
            raise RuntimeError(
                f"the latest call of the {what} was already used by MCR: run the model's forward "
                "in this training step before calling MCR (the record is from an earlier step)"
            )
        if record is not None and not self._local.training:
            raise RuntimeError(
                f"the latest call of the {what} was made in eval mode: MCR adds training losses; "
                "call model.train() before the training step's forward"
            )
        if self.split is not None:
            latents: tuple[Tensor, ...] | dict[str, Tensor] | CallRecord = self.latents
        else:  # any call, read as a tree (positional batch-first latents need nothing more)
            latents = self.record()
        self._local.taken = record
        return latents, self._local.output

    # ------------------------------------------------------------------ copies

    def __getstate__(self) -> dict[str, Any]:
        """What a pickle or a deep copy keeps: the settings and the hooks, not the record.

        The record (the latents of the latest call, per thread) belongs to one step of one
        process; a copy of a model that holds this object (``torch.save(model)``,
        ``copy.deepcopy(model)``) starts with no record, as after :meth:`clear`, and its hooks
        stay on the copied module."""
        state = dict(self.__dict__)
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:
        state = "removed" if self._handle is None else "on"
        return f"FusionInputs({type(self.module).__name__}, names={self.names}, hook {state})"
