"""How MCR calls the user's fusion head: the prediction selected from what the head returns,
the calls marked as MCR's own, and what the head's modules say about batching and randomness."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import TypeVar

import torch
from torch import Tensor, nn

from mcr_reg._checks import shape_of
from mcr_reg._messages import warn_batch_dependent_head
from mcr_reg.calls import BoundCall, signature_error
from mcr_reg.capture import mcr_internal_calls
from mcr_reg.functional.head_share import HeadRoute

T = TypeVar("T")


def batch_dependent_in_training(modules: Sequence[nn.Module]) -> bool:
    """BatchNorm modules in training mode: their output depends on the whole batch."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in modules)


def random_in_training(modules: Sequence[nn.Module]) -> bool:
    """Dropout or BatchNorm modules in training mode: two calls need not agree."""
    kinds = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
    return any(isinstance(m, kinds) and m.training for m in modules)


def outermost(modules: Sequence[nn.Module]) -> list[nn.Module]:
    """The modules that are not inside another module of ``modules``."""
    inner = {id(sub) for m in modules for sub in m.modules() if sub is not m}
    return [m for m in modules if id(m) not in inner]


@contextmanager
def before_every_module(hook: Callable[[nn.Module, object], None]) -> Iterator[None]:
    """``hook(module, args)`` before the forward of every module that runs in the block (a
    global forward pre-hook, removed when the block ends)."""
    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def recording_modules(found: list[nn.Module]) -> Iterator[None]:
    """Collect every module whose forward runs in the block."""

    def hook(module: nn.Module, args: object) -> None:
        if not any(module is m for m in found):
            found.append(module)

    with before_every_module(hook):
        yield


Output = int | str | None


class ManyOutputsError(TypeError):
    """The fusion head returned a tuple/list/dict and no ``output=`` selects the prediction."""

    def __init__(self, value: object, hint: str) -> None:
        super().__init__(describe(value))
        self.what, self.hint = describe(value), hint


def describe(value: object) -> str:
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {list(value)}"
    if isinstance(value, tuple | list):
        parts = [
            f"Tensor {shape_of(v)}" if isinstance(v, Tensor) else type(v).__name__ for v in value
        ]
        return f"a {type(value).__name__} of {len(value)} ({', '.join(parts)})"
    return f"a {type(value).__name__}"


def selection_hint(value: object, fits: list[object]) -> str:
    """How to select the prediction; a suggestion only when one entry alone can be it."""
    placeholder = "'KEY'" if isinstance(value, Mapping) else "INDEX"
    if len(fits) == 1:
        how = f"output={fits[0]!r}"
        return (
            f"Select it with MCRRegularizer(..., {how}), or pass a one-line wrapper as the head: "
            f"MCRRegularizer(lambda *z: model.fusion(*z)[{fits[0]!r}], ...)"
        )
    if len(fits) > 1:
        return (
            f"Entries {fits} all have the prediction's shape, so MCR does not guess: select the "
            f"fused prediction with MCRRegularizer(..., output={placeholder}), or pass a one-line "
            f"wrapper as the head: MCRRegularizer(lambda *z: model.fusion(*z)[{placeholder}], ...)"
        )
    return f"Select it with MCRRegularizer(..., output={placeholder})"


def select_output(value: object, output: Output, width: int | None) -> Tensor:
    """The prediction in what the fusion head returned (``output=`` of MCRRegularizer)."""
    if output is None:
        if isinstance(value, Tensor):
            return value
        if isinstance(value, Mapping | tuple | list):
            keys = list(value) if isinstance(value, Mapping) else list(range(len(value)))
            items = [value[k] for k in keys]  # type: ignore[index]
            fits = [
                k
                for k, v in zip(keys, items)
                if isinstance(v, Tensor)
                and (width is None or (v.shape[-1] if v.dim() > 1 else 1) == width)
            ]
            raise ManyOutputsError(value, selection_hint(value, fits))
        return value  # type: ignore[return-value]  # the row check reports it
    if isinstance(value, Tensor):
        raise TypeError(
            f"output={output!r} was given, but the fusion head returned a Tensor "
            f"{shape_of(value)}; leave output=None for a head that returns its prediction"
        )
    if isinstance(output, str):
        if not isinstance(value, Mapping):
            raise TypeError(
                f"output={output!r} selects a key, but the fusion head returned {describe(value)}"
            )
        if output not in value:
            raise ValueError(
                f"output={output!r}, but the fusion head returned a dict with keys {list(value)}"
            )
        chosen = value[output]
    else:
        if not isinstance(value, tuple | list):
            raise TypeError(
                f"output={output!r} selects a position, but the fusion head returned "
                f"{describe(value)}"
            )
        if not -len(value) <= output < len(value):
            raise ValueError(f"output={output!r}, but the fusion head returned {describe(value)}")
        chosen = value[output]
    if not isinstance(chosen, Tensor):
        raise TypeError(
            f"expected output={output!r} to select the prediction tensor, got "
            f"{type(chosen).__name__}"
        )
    return chosen


class HeadCall(nn.Module):
    """An ``nn.Module`` head as MCR calls it: its calls marked as MCR's own (FusionInputs skips
    them) and the prediction selected from its output. A module itself, so that
    ``torch.func.functional_call`` reaches the head's parameters. While a step reads a fusion
    call's arguments (:func:`bound`), the head is called like that call."""

    binding: BoundCall | None = None
    dropout_eval = False  # MCRRegularizer(head_dropout="eval")

    def __init__(self, head: nn.Module, output: Output, width: int | None) -> None:
        super().__init__()
        self.head, self.output, self.width = head, output, width

    def forward(self, *latents: Tensor) -> Tensor:
        return call_selected(
            self.head, self.output, self.width, latents, self.binding, self.dropout_eval
        )


class ModulesOfFunctionHead(nn.Module):
    """A plain-function head together with the modules it was seen to run, as one module, so
    that ``torch.func.functional_call`` can scale those modules' parameters while the function
    runs: the one-pass route of module heads (see :func:`mcr_reg.functional.mipd`)."""

    function: Callable[..., Tensor]

    def __init__(self, head: Callable[..., Tensor], modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.modules_run = nn.ModuleList(modules)
        object.__setattr__(self, "function", head)  # a plain callable, not a submodule

    def forward(self, *latents: Tensor) -> Tensor:
        return self.function(*latents)


class FunctionHeadCall:
    """The same for a head that is a plain callable (a function, a bound method); picklable
    whenever the head is."""

    binding: BoundCall | None = None
    dropout_eval = False

    def __init__(self, head: Callable[..., object], output: Output, width: int | None) -> None:
        self.head, self.output, self.width = head, output, width

    def __call__(self, *latents: Tensor) -> Tensor:
        return call_selected(
            self.head, self.output, self.width, latents, self.binding, self.dropout_eval
        )


def call_selected(
    head: Callable[..., object],
    output: Output,
    width: int | None,
    latents: Sequence[Tensor],
    binding: BoundCall | None = None,
    dropout_eval: bool = False,
) -> Tensor:
    """``head(*latents)`` marked as MCR's own call, with the prediction selected; with a
    ``binding``, the head is called like the fusion call it read, the latents replaced by the
    rows. A head whose signature cannot take the latents gets a message saying how to adapt it
    instead of Python's argument-count error. ``dropout_eval``: the head's modules run without
    dropout (:func:`dropout_off`)."""
    with mcr_internal_calls(), dropout_off() if dropout_eval else nullcontext():
        if binding is not None:
            value = binding.call(head, latents)
        else:
            try:
                value = head(*latents)
            except TypeError as err:
                better = signature_error(head, len(latents))
                if better is None:
                    raise
                raise better from err
    return select_output(value, output, width)


@contextmanager
def dropout_off() -> Iterator[None]:
    """Every module that runs in the block, BatchNorm layers excepted, runs with
    ``training=False``: ``nn.Dropout`` layers and ``F.dropout(x, p, self.training)`` inside a
    module's forward draw no mask, so MIPD compares the head's deterministic predictions (the
    function the head computes at evaluation) instead of dropout noise. BatchNorm keeps its mode
    (see ``batched``). Each module's mode is restored when the block ends. Not under
    ``torch.compile``, where the head runs as it is."""
    if torch.compiler.is_compiling():
        yield
        return
    switched: list[nn.Module] = []

    def hook(module: nn.Module, args: object) -> None:
        if module.training and not isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.training = False
            switched.append(module)

    try:
        with before_every_module(hook):
            yield
    finally:
        for module in switched:
            module.training = True


@contextmanager
def bound(call: Callable[..., Tensor], binding: BoundCall | None) -> Iterator[None]:
    """Calls of ``call`` (a :class:`HeadCall` or :class:`FunctionHeadCall`) in the block are
    made like the fusion call ``binding`` read. Nothing is set without a binding."""
    if binding is None:
        yield
        return
    object.__setattr__(call, "binding", binding)
    try:
        yield
    finally:
        object.__setattr__(call, "binding", None)


def current_binding(call: Callable[..., Tensor]) -> BoundCall | None:
    """The binding :func:`bound` set on ``call``, if any."""
    return getattr(call, "binding", None)


def head_call(
    head: Callable[..., object], output: Output, width: int | None
) -> Callable[..., Tensor]:
    if isinstance(head, nn.Module):
        return HeadCall(head, output, width)
    return FunctionHeadCall(head, output, width)


class FusionHead:
    """The user's fusion head as MCR calls it, and what MCR has learnt about it.

    Holds the call (prediction selected, calls marked as MCR's own), the modules the head runs
    (a module head's own; those a plain-function head was seen to run in its first call), the
    one-batched-call decision (per block for BatchNorm in training mode) and the route of the
    head's share of the game (:meth:`for_mipd`). Not an ``nn.Module``: the head's parameters
    stay the user's.
    """

    def __init__(
        self, head: Callable[..., object], output: Output, width: int | None, batched: bool | None
    ) -> None:
        if not callable(head):
            raise TypeError(
                f"expected fusion_head to be callable (z_1, ..., z_M) -> logits, "
                f"got {type(head).__name__}"
            )
        if output is not None and (isinstance(output, bool) or not isinstance(output, int | str)):
            raise TypeError(f"expected output to be None, an int or a str, got {output!r}")
        self.head = head
        self.call = head_call(head, output, width)
        self.batched = batched
        # listed once, never inside a compiled frame: an attribute set there would change the
        # frame's guards and recompile it on the next step
        self.own_modules = list(head.modules()) if isinstance(head, nn.Module) else []
        self.function_modules: list[nn.Module] | None = None
        self.one_pass: Callable[..., Tensor] | None = None
        self.warned_batch_dependent = False
        self.route = HeadRoute()  # what mipd learns about giving the head its share

    def modules(self) -> list[nn.Module]:
        """The modules the head runs (none for a plain function before its first call)."""
        if isinstance(self.head, nn.Module):
            return self.own_modules
        return self.function_modules or []

    def use_batched(self) -> bool:
        """One stacked call, unless the head has BatchNorm in training mode (warned once)."""
        if self.batched is not None:
            return self.batched
        if not batch_dependent_in_training(self.modules()):
            return True
        if not self.warned_batch_dependent and not torch.compiler.is_compiling():
            warn_batch_dependent_head()
            self.warned_batch_dependent = True
        return False

    def for_mipd(self) -> Callable[..., Tensor]:
        """The head as :func:`~mcr_reg.functional.mipd` gets it. A plain-function head is
        wrapped with the modules it runs once an earlier step has shown that every trainable
        tensor its output depends on belongs to those modules: mipd can then scale their
        parameters in one pass instead of running the head a second time. mipd checks on every
        eager step that this still holds (:meth:`run` forgets the wrapping when it does not).
        Under ``torch.compile`` no such check can run, so a plain-function head is called as
        it is there, and its share comes from the second pass, exact for any head."""
        if isinstance(self.head, nn.Module):
            return self.call
        if torch.compiler.is_compiling():
            return self.call
        if self.one_pass is not None:
            return self.one_pass
        if self.function_modules is None:
            return self.call
        seen = self.route.parameters_seen(self.call)
        if seen is None:
            return self.call
        roots = outermost(self.function_modules)
        owned = {id(p) for m in roots for p in m.parameters()}
        self.one_pass = self.call  # a parameter outside the modules: the second pass stays
        if all(id(t) in owned for t in seen if t.requires_grad):
            # (a parameter reachable by two names keeps the second pass too: mipd checks that)
            self.one_pass = ModulesOfFunctionHead(self.call, roots)
        return self.one_pass

    def run(self, mipd: Callable[[Callable[..., Tensor], bool, HeadRoute], T]) -> T:
        """``mipd(head, batched, route)``; the first call of a plain-function head also records the
        modules it runs, and reruns per block when BatchNorm is among them."""
        batched = self.use_batched()
        if isinstance(self.head, nn.Module) or torch.compiler.is_compiling():
            return mipd(self.for_mipd(), batched, self.route)
        if self.function_modules is not None:
            head = self.for_mipd()
            result = mipd(head, batched, self.route)
            if isinstance(head, ModulesOfFunctionHead) and self.route.substitution_failed(head):
                # this step's call reached a trainable tensor outside the wrapped modules (mipd
                # reran it on the second-pass route): learn the head's modules and tensors anew
                self.function_modules, self.one_pass = None, None
                self.route.forget(self.call)
            return result
        found: list[nn.Module] = []
        with recording_modules(found):
            result = mipd(self.for_mipd(), batched, self.route)
        self.function_modules = found
        if batched and not self.use_batched():  # the stacked call mixed the blocks' statistics
            result = mipd(self.for_mipd(), False, self.route)
        return result
