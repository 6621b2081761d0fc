"""Any fusion call as MCR sees it: the call's arguments as a tree, the latents picked out.

MCR's core calls the fusion head as ``head(z_1, ..., z_M)`` with batch-first latents. Published
fusion modules are called in many other ways: ``fusion([a, v])``, ``fusion({"audio": a, "video":
v})``, ``fusion(a, v, mask=m)``, ``fusion(a_seq, v_seq, a_lengths)``, with sequences laid out
``(T, B, D)`` or ``(B, C, T)``. :class:`FusionCall` reads such a call as a tree of arguments
(:mod:`torch.utils._pytree`), picks out the latents, puts each into MCR's layout ``(B, D)`` or
``(B, L, D)`` and, for every call MCR makes, rebuilds the original call: the latents' rows
(reference and perturbed, stacked along the batch axis) back in their own layout, every other
argument passed through, the per-sample ones repeated for each block of rows and the ones that
belong to a latent (a padding mask, lengths) moved with that latent's rows.

>>> import torch
>>> from torch import nn
>>> class ListFusion(nn.Module):  # takes one list of latents and a keyword mask
...     def __init__(self) -> None:
...         super().__init__()
...         self.fc = nn.Linear(8, 3)
...     def forward(self, feats, mask=None):
...         fused = torch.cat(feats, dim=-1)
...         return self.fc(fused if mask is None else fused * mask[:, None])
>>> za, zv = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
>>> record = FusionCall(per_sample=("mask",)).of([za, zv], mask=torch.ones(5))
>>> bound = record.bind(batch=5)
>>> bound.names, [tuple(z.shape) for z in bound.latents]
(('[0][0]', '[0][1]'), [(5, 4), (5, 4)])
>>> fusion = ListFusion()
>>> torch.equal(bound.call(fusion, bound.latents), fusion([za, zv], mask=torch.ones(5)))
True

Decisions (docs/integration.md, "Any fusion call"):

- **Latents** are, unless ``latents=`` names them, the floating-point tensors of the call that
  require a gradient (connected to a trainable encoder) and carry the batch axis.
- **Batch axis**: axis 0 when its size is the batch size B (the labels' length); otherwise the
  one axis of size B; ``layout=`` declares it (``"TBD"``, ``"BCT"``, ``"BCHW"``). A latent
  whose axis 0 has size B is taken as batch-first: a ``(T, B, D)`` latent with ``T == B``
  must be declared.
- **Feature axis**: the axis of size ``latent_dims[m]`` when MCR knows the widths (preferring
  the default below when several fit); else the last axis of a 2- or 3-axis latent, the first
  non-batch axis of a longer one (channels-first images). It decides only what MCR's own small
  heads read (they pool over the other axes); the fusion head always gets its own layout back.
- **Other arguments** pass through unchanged, except tensors whose axis 0 has size B: those
  *follow* a latent (its rows are permuted with it: padding masks, lengths) or are *per sample*
  (every perturbed row keeps its sample's). A mask whose shape is ``(B,)`` + the positions of
  exactly one latent follows that latent; any other is declared with ``follows=`` or
  ``per_sample=``, and an undeclared one stops the first step with a message saying both.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import Tensor

from mcr_reg._checks import ONE_TENSOR

__all__ = ["BoundCall", "CallRecord", "FusionCall", "signature_error"]

#: the sample index of a packed row is written in this base, in three columns: exact in
#: float16 and bfloat16 (integers below 256 are), for batches up to 64**3 rows
_BASE, _DIGITS = 64, 3
_LAYOUT_LETTERS = set("BDCTLHWNS")


def _path_name(path: tuple[Any, ...]) -> str:
    """``[0][1]`` for positional arguments, ``mask`` or ``feats['audio']`` for keywords."""
    where, *rest = path
    parts = []
    if where.idx == 1:  # keyword arguments: the first key is the argument's name
        first, *rest = rest
        parts.append(str(first.key))
    for key in rest:
        if isinstance(key, pytree.MappingKey):
            parts.append(f"[{key.key!r}]")
        elif isinstance(key, pytree.SequenceKey):
            parts.append(f"[{key.idx}]")
        else:
            parts.append(f".{getattr(key, 'name', key)}")
    return "".join(parts)


def _short_name(path: tuple[Any, ...]) -> str | None:
    """The innermost string key of ``path`` (a dict key or keyword name), if any."""
    for key in reversed(path[1:]):
        if isinstance(key, pytree.MappingKey) and isinstance(key.key, str):
            return key.key
    return None


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


@dataclass(frozen=True)
class _Layout:
    """Where a latent's batch and feature axes are, and the permutation to MCR's layout."""

    batch: int
    feature: int
    shape: tuple[int, ...]  # the latent's own shape

    @property
    def order(self) -> list[int]:
        others = [a for a in range(len(self.shape)) if a not in (self.batch, self.feature)]
        return [self.batch, *others, self.feature]

    @property
    def positions(self) -> tuple[int, ...]:
        """The sizes of the axes that are neither batch nor feature, in order."""
        return tuple(self.shape[a] for a in self.order[1:-1])

    def to_mcr(self, z: Tensor) -> Tensor:
        """``(B, D)`` or ``(B, L, D)``: a view of ``z`` (gradients reach it)."""
        moved = z.permute(self.order)
        return moved.flatten(1, -2) if moved.dim() > 3 else moved

    def from_mcr(self, rows: Tensor) -> Tensor:
        """Rows in MCR's layout ``(N, ...)`` back in the latent's own layout, N on its batch axis."""
        if len(self.shape) > 3:
            rows = rows.unflatten(1, self.positions)
        inverse = [0] * len(self.order)
        for i, axis in enumerate(self.order):
            inverse[axis] = i
        return rows.permute(inverse)


def _layout_of(
    name: str, z: Tensor, batch: int, declared: str | None, width: int | None
) -> _Layout:
    """The batch and feature axes of latent ``name``: declared, or inferred and checked."""
    shape = _shape(z)
    if declared is not None:
        letters = declared.upper()
        if (
            len(letters) != z.dim()
            or letters.count("B") != 1
            or not set(letters) <= _LAYOUT_LETTERS
        ):
            raise ValueError(
                f"layout {declared!r} for latent {name!r} of shape {shape}: expected one letter "
                "per axis, one 'B' (batch) and one feature letter 'D' or 'C' (e.g. 'TBD', 'BCT', "
                "'BCHW')"
            )
        feature_letter = "D" if "D" in letters else "C"
        if feature_letter not in letters:
            raise ValueError(
                f"layout {declared!r} for latent {name!r} names no feature axis ('D' or 'C')"
            )
        b, f = letters.index("B"), letters.index(feature_letter)
        if shape[b] != batch:
            raise ValueError(
                f"layout {declared!r} puts the batch of latent {name!r} {shape} on axis {b} "
                f"(size {shape[b]}), but the labels' batch is {batch}"
            )
        if width is not None and shape[f] != width:
            raise ValueError(
                f"layout {declared!r} puts the features of latent {name!r} {shape} on axis {f} "
                f"(size {shape[f]}), but latent_dims gives {width}"
            )
        return _Layout(b, f, shape)
    if z.dim() < 2:
        raise ValueError(
            f"expected latent {name!r} with a batch and a feature axis, got shape {shape}"
        )
    if shape[0] == batch:
        b = 0
    else:
        fits = [a for a, s in enumerate(shape) if s == batch]
        if len(fits) > 1 and width is not None and z.dim() == 3 and shape[-1] == width:
            fits = [a for a in fits if a != z.dim() - 1]  # (T, B, D) with B == D: D is last
        if len(fits) != 1:
            found = "no axis" if not fits else f"axes {fits}"
            raise ValueError(
                f"latent {name!r} of shape {shape}: {found} of the labels' batch size {batch}, "
                "so its batch axis is unknown; declare it with layout= (e.g. layout={"
                f"{name!r}: 'TBD'}})"
            )
        b = fits[0]
    rest = [a for a in range(z.dim()) if a != b]
    default = rest[-1] if z.dim() <= 3 else rest[0]
    if width is None:
        return _Layout(b, default, shape)
    fits = [a for a in rest if shape[a] == width]
    if not fits:
        raise ValueError(
            f"latent {name!r} of shape {shape}: batch axis {b} (size {batch}, like the labels), "
            f"but no other axis has the width {width} that latent_dims gives; declare the axes "
            "with layout= (e.g. 'BTD', 'TBD', 'BCT')"
        )
    return _Layout(b, default if default in fits else fits[0], shape)


class CallRecord:
    """The arguments of one fusion call and how to read them (:meth:`FusionCall.of`)."""

    def __init__(self, reading: FusionCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.reading, self.args, self.kwargs = reading, args, kwargs

    def bind(self, batch: int, latent_dims: Sequence[int] | None = None) -> BoundCall:
        """The latents in MCR's layout and the rebuilt call, for a batch of ``batch`` samples."""
        return BoundCall(self, batch, latent_dims)

    def __repr__(self) -> str:
        leaves = pytree.tree_flatten_with_path((self.args, self.kwargs))[0]
        parts = [
            f"{_path_name(p)}: {_shape(v) if isinstance(v, Tensor) else type(v).__name__}"
            for p, v in leaves
        ]
        return f"CallRecord({', '.join(parts)})"


class FusionCall:
    """How to read the arguments of a fusion call: which are the latents, their layouts, and
    what the other arguments are.

    Build it once; in the step, ``mcr(reading.of(*args, **kwargs), y, logits)`` takes the same
    arguments as the fusion call ``fusion(*args, **kwargs)`` (the fusion head given to MCR).
    :class:`~mcr_reg.FusionInputs` takes the same options and records the call itself.

    Args:
        latents: which arguments are the latents, in modality order: keyword or dict-key names
            (``"audio"``) or paths (``"[0][1]"``, ``"feats['audio']"``). Default: every
            floating-point tensor that requires a gradient and carries the batch axis, in the
            order of the call.
        names: modality names for MCR's diagnostics (default: the dict keys or keyword names
            of the latents, else their paths).
        layout: each latent's axes, one letter per axis (``B`` batch, ``D`` or ``C``
            features, any other letter for positions): one string for all latents or a
            ``{name: layout}`` mapping. Default: inferred (see the module docstring).
        follows: ``{argument: latent}``: arguments permuted together with a latent (its
            padding mask, its lengths).
        per_sample: arguments with the batch axis that belong to the sample: every perturbed
            row keeps its own sample's value.
        unchanged: arguments passed as they are although their axis 0 has the batch size
            (e.g. a ``(T, T)`` attention mask with ``T == B``).
    """

    def __init__(
        self,
        *,
        latents: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        layout: str | Mapping[str, str] | None = None,
        follows: Mapping[str, str] | None = None,
        per_sample: Sequence[str] = (),
        unchanged: Sequence[str] = (),
    ) -> None:
        for what, value in (("latents", latents), ("names", names)):
            if isinstance(value, str):
                raise TypeError(f"expected {what} as a sequence of names, got the string {value!r}")
        for what, seq in (("per_sample", per_sample), ("unchanged", unchanged)):
            if isinstance(seq, str):
                raise TypeError(f"expected {what} as a sequence of names, got the string {seq!r}")
        self.latents = tuple(latents) if latents is not None else None
        self.names = tuple(str(n) for n in names) if names is not None else None
        self.layout = layout
        self.follows = dict(follows or {})
        self.per_sample, self.unchanged = tuple(per_sample), tuple(unchanged)

    @property
    def plain(self) -> bool:
        """No option set: a call of positional batch-first latents needs nothing more."""
        return (
            self.latents is None and self.layout is None and not self.follows
            and not self.per_sample and not self.unchanged
        )  # fmt: skip

    def of(self, *args: Any, **kwargs: Any) -> CallRecord:
        """The arguments of one call, exactly as the fusion head is called with them."""
        return CallRecord(self, args, kwargs)

    def __repr__(self) -> str:
        options = {
            "latents": self.latents, "names": self.names, "layout": self.layout,
            "follows": self.follows or None, "per_sample": self.per_sample or None,
            "unchanged": self.unchanged or None,
        }  # fmt: skip
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if v is not None)
        return f"FusionCall({shown})"


class BoundCall:
    """One recorded call, read for a batch of B samples: the latents in MCR's layout
    (:attr:`latents`, :attr:`names`) and :meth:`call`, which rebuilds the call on stacked rows.

    Raises (on construction):
        ValueError: fewer than two latents, a name that matches no argument, an axis that
            cannot be inferred, or a batch-carrying argument that is neither declared nor
            inferable (the message says how to declare it).
    """

    def __init__(self, record: CallRecord, batch: int, latent_dims: Sequence[int] | None) -> None:
        reading = record.reading
        flat, self.spec = pytree.tree_flatten_with_path((record.args, record.kwargs))
        self.leaves = [leaf for _, leaf in flat]
        self.paths = [_path_name(p) for p, _ in flat]
        shorts = [_short_name(p) for p, _ in flat]
        self.batch = batch
        self.latent_at = self._select_latents(reading, shorts, batch)
        labels = [shorts[i] or self.paths[i] for i in self.latent_at]
        if reading.names is not None:
            if len(reading.names) != len(self.latent_at):
                raise ValueError(
                    f"expected {len(self.latent_at)} names for the latents {labels}, got "
                    f"{list(reading.names)}"
                )
            labels = list(reading.names)
        if len(set(labels)) != len(labels):
            labels = [self.paths[i] for i in self.latent_at]
        self.names = tuple(labels)
        dims = list(latent_dims) if latent_dims is not None else None
        if dims is not None and len(dims) != len(self.latent_at):
            raise ValueError(
                f"expected {len(dims)} latents (latent_dims={tuple(dims)}), but the fusion call "
                f"has {len(self.latent_at)}: {self._listing(self.latent_at)}; name them with "
                "latents=[...]"
            )
        self.layouts = [
            _layout_of(
                self.names[m], self.leaves[i], batch, self._declared_layout(reading, m, i, shorts),
                dims[m] if dims is not None else None,
            )
            for m, i in enumerate(self.latent_at)
        ]  # fmt: skip
        self.latents = [lay.to_mcr(self.leaves[i]) for lay, i in zip(self.layouts, self.latent_at)]
        self.kinds = self._passthrough_kinds(reading, shorts, batch)
        self.packed = False

    # ------------------------------------------------------------------ reading the call

    def _matches(self, ref: str, i: int, shorts: list[str | None]) -> bool:
        return ref in (self.paths[i], shorts[i])

    def _find(self, ref: str, shorts: list[str | None], what: str) -> int:
        hits = [i for i in range(len(self.leaves)) if self._matches(ref, i, shorts)]
        if len(hits) != 1:
            found = "no argument" if not hits else f"{len(hits)} arguments"
            raise ValueError(
                f"{what} names {ref!r}, but {found} of the fusion call match it; its arguments "
                f"are {self._listing(range(len(self.leaves)))}"
            )
        return hits[0]

    def _listing(self, indices: Sequence[int] | range) -> str:
        parts = []
        for i in indices:
            leaf = self.leaves[i]
            what = f"Tensor {_shape(leaf)}" if isinstance(leaf, Tensor) else type(leaf).__name__
            parts.append(f"{self.paths[i]}: {what}")
        return ", ".join(parts) if parts else "none"

    def _select_latents(
        self, reading: FusionCall, shorts: list[str | None], batch: int
    ) -> list[int]:
        if reading.latents is not None:
            chosen = [self._find(ref, shorts, "latents=") for ref in reading.latents]
            for i in chosen:
                if not isinstance(self.leaves[i], Tensor) or not self.leaves[i].is_floating_point():
                    raise ValueError(
                        f"latents= names {self.paths[i]!r}, which is not a floating-point tensor"
                    )
        else:
            chosen = [
                i for i, leaf in enumerate(self.leaves)
                if isinstance(leaf, Tensor) and leaf.is_floating_point() and leaf.requires_grad
                and leaf.dim() >= 2 and batch in leaf.shape
            ]  # fmt: skip
        if len(chosen) < 2:
            detached = [
                i for i, leaf in enumerate(self.leaves)
                if isinstance(leaf, Tensor) and leaf.is_floating_point() and not leaf.requires_grad
                and leaf.dim() >= 2 and batch in leaf.shape
            ]  # fmt: skip
            hint = (
                f" The arguments {[self.paths[i] for i in detached]} have the batch axis but no "
                "gradient: computed under torch.no_grad() or detached, they connect to no "
                "trainable encoder (name them with latents=[...] if that is intended)."
                if detached and reading.latents is None
                else ""
            )
            batched = [
                leaf for leaf in self.leaves
                if isinstance(leaf, Tensor) and leaf.dim() >= 1 and batch in leaf.shape
            ]  # fmt: skip
            if len(batched) <= 1:  # one tensor: a concatenation, or not the fusion's inputs
                hint += f" {ONE_TENSOR}"
            raise ValueError(
                f"expected at least two latents in the fusion call (floating-point tensors with "
                f"a gradient and the batch axis of size {batch}), found {len(chosen)}; its "
                f"arguments are {self._listing(range(len(self.leaves)))}.{hint}"
            )
        return chosen

    def _declared_layout(
        self, reading: FusionCall, m: int, i: int, shorts: list[str | None]
    ) -> str | None:
        if reading.layout is None or isinstance(reading.layout, str):
            return reading.layout
        for key, value in reading.layout.items():
            if key == self.names[m] or self._matches(key, i, shorts):
                return value
        return None

    def _passthrough_kinds(
        self, reading: FusionCall, shorts: list[str | None], batch: int
    ) -> dict[int, int | None]:
        """For every non-latent argument whose axis 0 has the batch size: the modality it
        follows, or None (per sample). Arguments not listed pass unchanged."""
        latent_of = {}
        for arg, latent in reading.follows.items():
            target = [m for m, n in enumerate(self.names) if n == latent]
            if not target:
                raise ValueError(
                    f"follows= maps {arg!r} to {latent!r}, which is not a latent; the latents are "
                    f"{list(self.names)}"
                )
            latent_of[self._find(arg, shorts, "follows=")] = target[0]
        per_sample = {self._find(a, shorts, "per_sample=") for a in reading.per_sample}
        unchanged = {self._find(a, shorts, "unchanged=") for a in reading.unchanged}
        kinds: dict[int, int | None] = {}
        undeclared = []
        for i, leaf in enumerate(self.leaves):
            if i in self.latent_at or i in unchanged:
                continue
            if i in latent_of:
                kinds[i] = latent_of[i]
                continue
            if i in per_sample:
                kinds[i] = None
                continue
            if not isinstance(leaf, Tensor) or leaf.dim() == 0 or leaf.shape[0] != batch:
                continue
            owners = [
                m for m, lay in enumerate(self.layouts)
                if lay.positions and _shape(leaf)[1:] == lay.positions
            ]  # fmt: skip
            if leaf.dim() >= 2 and len(owners) == 1:
                kinds[i] = owners[0]
            else:
                undeclared.append(i)
        if undeclared:
            first = self.paths[undeclared[0]]
            raise ValueError(
                f"the fusion call's arguments {self._listing(undeclared)} carry the batch axis "
                f"(size {batch}) but are not latents, and MCR cannot tell what they belong to. "
                f"Declare each: follows={{{first!r}: {self.names[0]!r}}} when it belongs to a "
                "latent (a padding mask or lengths: permuted together with it), "
                f"per_sample=({first!r},) when it belongs to the sample (every perturbed row "
                f"keeps its own), or unchanged=({first!r},) when the batch size is a coincidence"
            )
        return kinds

    # ------------------------------------------------------------------ the rows MCR passes

    @property
    def has_followers(self) -> bool:
        return any(m is not None for m in self.kinds.values())

    def pack(self, zs: Sequence[Tensor]) -> list[Tensor]:
        """The latents with each row's sample index appended, for the latents that other
        arguments follow: after MCR gathers permuted rows, :meth:`call` reads which sample a
        row came from and moves the followers with it. The index costs no gradient."""
        followed = {m for m in self.kinds.values() if m is not None}
        out = []
        for m, z in enumerate(zs):
            if m not in followed:
                out.append(z)
                continue
            index = torch.arange(z.shape[0], device=z.device)
            digits = torch.stack([(index // _BASE**j) % _BASE for j in range(_DIGITS)], dim=1)
            out.append(torch.cat([z.flatten(1), digits.to(z.dtype)], dim=1))
        self.packed = True
        return out

    def call(self, fn: Callable[..., Any], rows: Sequence[Tensor]) -> Any:
        """``fn`` called like the recorded call, with the latents replaced by ``rows``
        (MCR's layout, N stacked rows each) and every other argument passed through."""
        leaves = list(self.leaves)
        n_rows = int(rows[0].shape[0])
        sources: list[Tensor | None] = [None] * len(rows)
        for m, (i, lay, z) in enumerate(zip(self.latent_at, self.layouts, rows)):
            if self.packed and z.dim() == 2 and any(k == m for k in self.kinds.values()):
                width = z.shape[1] - _DIGITS
                digits = z[:, width:].detach().round().long()
                sources[m] = sum(digits[:, j] * _BASE**j for j in range(_DIGITS))  # type: ignore[assignment]
                z = z[:, :width].reshape(n_rows, *self.latents[m].shape[1:])
            leaves[i] = lay.from_mcr(z)
        if n_rows % self.batch:
            raise ValueError(f"expected a multiple of the batch {self.batch} rows, got {n_rows}")
        tiles = n_rows // self.batch
        for i, owner in self.kinds.items():
            leaf = self.leaves[i]
            source = sources[owner] if owner is not None else None
            if source is not None:
                leaves[i] = leaf[source]
            elif tiles > 1:
                leaves[i] = leaf.repeat(tiles, *([1] * (leaf.dim() - 1)))
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return fn(*args, **kwargs)


def signature_error(head: Callable[..., Any], count: int) -> TypeError | None:
    """The message for a head that cannot be called with ``count`` positional latents, or None
    when its signature accepts them (the TypeError came from inside the head)."""
    target = getattr(head, "forward", head)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(count))
    except TypeError as err:
        name = getattr(target, "__qualname__", type(head).__name__)
        zs = ", ".join(f"z{m + 1}" for m in range(count))
        return TypeError(
            f"MCR calls the fusion head with the {count} latents as positional arguments, "
            f"{name}({zs}), but its signature is {name}{signature} ({err}). Either pass MCR the "
            "call's own arguments, in the step: mcr(FusionCall().of(<the arguments of your "
            "fusion call>), y, logits) (or record them: FusionInputs(module)), or give MCR a "
            f"two-line adapter as the head:\n    def fused({zs}):\n        return "
            f"model.fusion(<your call, built from {zs}>)\nand MCRRegularizer(fused, ...)"
        )
    return None


def batch_axis_hint(names: Sequence[str], zs: Sequence[Tensor], batch: int) -> str | None:
    """When the labels' batch differs from the latents' axis 0 but another axis fits: a message
    naming both axes (a sequence-first or channels-last latent passed as it is)."""
    for name, z in zip(names, zs):
        if batch > 0 and z.dim() >= 3 and z.shape[0] != batch:
            fits = [a for a, s in enumerate(z.shape) if s == batch]
            if fits:
                return (
                    f"latent {name!r} of shape {_shape(z)} has its axis 0 of size "
                    f"{int(z.shape[0])}, but the labels' batch is {batch}, the size of its axis "
                    f"{fits[0]}: MCR reads axis 0 as the batch and would permute along axis 0 "
                    "(time steps or channels). Pass the call through FusionCall(layout=...) "
                    f"(e.g. layout={{{name!r}: 'TBD'}}), or move the batch first yourself"
                )
    return None


def batch_of(labels: object) -> int:
    """The batch size the labels give (their length); -1 for what is not a tensor with an
    axis (the label checks report it)."""
    if isinstance(labels, Tensor) and labels.dim() >= 1:
        return int(labels.shape[0])
    return -1


def check_captured_output(logits: Tensor, width: int | None) -> None:
    """What a recorded fusion module returned must be the prediction: a module followed by a
    separate classifier gives features instead, which the logits checks would report without
    the cause."""
    if width is None or logits.dim() != 2 or logits.shape[1] == width:
        return
    raise ValueError(
        f"the module FusionInputs records returned {_shape(logits)}, not the prediction "
        f"({width} values per sample): when a separate classifier follows it, record with "
        "FusionInputs(module, then=classifier), whose head and logits are the two in sequence"
    )
