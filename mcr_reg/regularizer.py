"""The :class:`MCRRegularizer` module: settings, MCR's own small heads, input checks.

The mathematics lives in :mod:`mcr_reg.functional`; this module validates what comes in,
draws the perturbations, calls the functions and assembles :class:`MCROutput`.
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcr_reg import functional as MF
from mcr_reg._checks import (
    check_finite,
    check_permutation_values,
    check_same_batch,
    check_same_device,
    check_tensor,
    compiling,
    shape_of,
)
from mcr_reg.capture import FusionInputs, mcr_internal_calls
from mcr_reg.distributed import gather_with_grad

__all__ = ["MCROutput", "MCRRegularizer"]

Strategy = Literal["greedy", "independent", "collaborative"]
Task = Literal["classification", "binary", "regression"]
Perturbation = Literal["permutation", "noise", "zero"]
Contrastive = Literal["ntxent", "supcon"]
PerturbedRows = Literal["all", "moved", "other_label"]
Latents = Sequence[Tensor] | Mapping[str, Tensor]

_TASKS = ("classification", "binary", "regression")
_PERTURBATIONS = ("permutation", "noise", "zero")
_HEAD_GRADIENTS = ("mean", "sum")
_CONTRASTIVE = ("ntxent", "supcon")


@dataclass(frozen=True)
class MCROutput:
    """What :meth:`MCRRegularizer.forward` returns.

    Attributes:
        loss: the weighted total of the active terms; a differentiable scalar to add to the
            task loss.
        terms: detached, *unweighted* values of the active terms, keys among ``"mipd"`` (the sum
            over subsets of ``L_S``), ``"contrastive"``, ``"ceb"``, ``"unimodal"``.
        importance: detached ``(M,)``: for each modality, the mean divergence of the prediction
            when that modality alone is perturbed (NaN for a modality whose singleton subset is
            not among the perturbed subsets).
        modalities: the modality names, in the order of ``importance``.
        unimodal_logits: the outputs of MCR's own unimodal heads ``(B, C)`` per modality, when
            it has them; else ``None``.
    """

    loss: Tensor
    terms: dict[str, Tensor]
    importance: Tensor
    modalities: tuple[str, ...]
    unimodal_logits: tuple[Tensor, ...] | None = field(default=None)


def _batch_dependent_in_training(modules: Sequence[nn.Module]) -> bool:
    """BatchNorm modules in training mode: their output depends on the whole batch."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in modules)


def _random_in_training(modules: Sequence[nn.Module]) -> bool:
    """Dropout or BatchNorm modules in training mode: two calls need not agree."""
    kinds = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
    return any(isinstance(m, kinds) and m.training for m in modules)


def _outermost(modules: Sequence[nn.Module]) -> list[nn.Module]:
    """The modules that are not inside another module of ``modules``."""
    inner = {id(sub) for m in modules for sub in m.modules() if sub is not m}
    return [m for m in modules if id(m) not in inner]


@contextmanager
def _recording_modules(found: list[nn.Module]) -> Iterator[None]:
    """Collect every module whose forward runs in the block (a global forward pre-hook)."""

    def hook(module: nn.Module, args: object) -> None:
        if not any(module is m for m in found):
            found.append(module)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


Output = int | str | None


class _ManyOutputsError(TypeError):
    """The fusion head returned a tuple/list/dict and no ``output=`` selects the prediction."""

    def __init__(self, value: object, hint: str) -> None:
        super().__init__(_describe(value))
        self.what, self.hint = _describe(value), hint


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {list(value)}"
    if isinstance(value, tuple | list):
        parts = [
            f"Tensor {shape_of(v)}" if isinstance(v, Tensor) else type(v).__name__ for v in value
        ]
        return f"a {type(value).__name__} of {len(value)} ({', '.join(parts)})"
    return f"a {type(value).__name__}"


def _selection_hint(value: object, fits: list[object]) -> str:
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


def _select_output(value: object, output: Output, width: int | None) -> Tensor:
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
            raise _ManyOutputsError(value, _selection_hint(value, fits))
        return value  # type: ignore[return-value]  # the row check reports it
    if isinstance(value, Tensor):
        raise TypeError(
            f"output={output!r} was given, but the fusion head returned a Tensor "
            f"{shape_of(value)}; leave output=None for a head that returns its prediction"
        )
    if isinstance(output, str):
        if not isinstance(value, Mapping):
            raise TypeError(
                f"output={output!r} selects a key, but the fusion head returned {_describe(value)}"
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
                f"{_describe(value)}"
            )
        if not -len(value) <= output < len(value):
            raise ValueError(f"output={output!r}, but the fusion head returned {_describe(value)}")
        chosen = value[output]
    if not isinstance(chosen, Tensor):
        raise TypeError(
            f"expected output={output!r} to select the prediction tensor, got "
            f"{type(chosen).__name__}"
        )
    return chosen


class _HeadCall(nn.Module):
    """An ``nn.Module`` head as MCR calls it: its calls marked as MCR's own (FusionInputs skips
    them) and the prediction selected from its output. A module itself, so that
    ``torch.func.functional_call`` reaches the head's parameters."""

    def __init__(self, head: nn.Module, output: Output, width: int | None) -> None:
        super().__init__()
        self.head, self.output, self.width = head, output, width

    def forward(self, *latents: Tensor) -> Tensor:
        return _call_selected(self.head, self.output, self.width, latents)


class _ModulesOfFunctionHead(nn.Module):
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


class _FunctionHeadCall:
    """The same for a head that is a plain callable (a function, a bound method); picklable
    whenever the head is."""

    def __init__(self, head: Callable[..., object], output: Output, width: int | None) -> None:
        self.head, self.output, self.width = head, output, width

    def __call__(self, *latents: Tensor) -> Tensor:
        return _call_selected(self.head, self.output, self.width, latents)


def _call_selected(
    head: Callable[..., object], output: Output, width: int | None, latents: Sequence[Tensor]
) -> Tensor:
    """``head(*latents)`` marked as MCR's own call, with the prediction selected."""
    with mcr_internal_calls():
        value = head(*latents)
    return _select_output(value, output, width)


def _head_call(
    head: Callable[..., object], output: Output, width: int | None
) -> Callable[..., Tensor]:
    if isinstance(head, nn.Module):
        return _HeadCall(head, output, width)
    return _FunctionHeadCall(head, output, width)


_warned_generator_under_compile = [False]  # once per process: comptime cannot see the instance


def _warn_generator_under_compile(ctx: object = None) -> None:
    """Called by Dynamo at trace time (``comptime``): eager Python, no graph break."""
    if _warned_generator_under_compile[0]:
        return
    _warned_generator_under_compile[0] = True
    warnings.warn(
        "MCRRegularizer(generator=...) or (seed=...) is not used under torch.compile (Dynamo "
        "cannot trace torch.Generator objects): the compiled step draws its permutations from "
        "the global RNG. Seed that (torch.manual_seed, differently per rank) for reproducible "
        "runs, or pass permutations= explicitly. (Warned once.)",
        RuntimeWarning,
        stacklevel=2,
    )


def _warn_at_compile_time_that_the_generator_is_ignored() -> None:
    try:
        from torch._dynamo.comptime import comptime
    except ImportError:  # pragma: no cover - a torch without Dynamo's comptime
        return
    comptime(_warn_generator_under_compile)


class _CEBHead(nn.Module):
    """``h``: Linear(C, H, no bias) -> ReLU -> Linear(H, Σd_m, no bias) (paper eq. 13)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.net(x))


class MCRRegularizer(nn.Module):
    """The Multimodal Competition Regularizer as a drop-in loss module.

    ``L_MCR = λ_M·L_MIPD + λ_con·L_Con + λ_ceb·L_CEB + λ_uni·L_uni`` (paper eq. 6, Algorithm 1).
    The latents of the user's encoders are perturbed within the batch (no encoder re-runs) and
    passed through the user's own fusion head; the MIPD gradients reaching each encoder follow the
    chosen game strategy.

    The fusion head is *not* registered as a submodule: ``mcr.parameters()`` holds only MCR's
    own parameters (CEB head, projections, unimodal heads), created here in ``__init__``.

    Args:
        fusion_head: any callable ``fusion_head(z_1, ..., z_M) -> predictions (N, C)``
            (``(N,)`` or ``(N, 1)`` for binary and regression).
        strategy: ``"greedy"`` (k = -1), ``"independent"`` (k = 0), ``"collaborative"``
            (k = +1) or a float k.
        task: ``"classification"`` (JSD of softmaxes), ``"binary"`` (one logit, Bernoulli JSD)
            or ``"regression"`` (squared error).
        num_classes: classes of the fusion head's output; checked against the logits, needed
            for the CEB head and the unimodal heads in classification.
        latent_dims: feature width of each latent (modality order); checked against the
            latents, needed for MCR's own heads and projections.
        num_permutations: P, the number of permutation draws per step.
        subsets: ``"all"``, ``"singletons"`` or a list of index tuples (see
            :func:`mcr_reg.functional.enumerate_subsets`).
        mipd_weight: λ_M.
        contrastive_weight: λ_con (0 turns the term off).
        ceb_weight: λ_ceb; > 0 needs ``latent_dims`` (and ``num_classes`` in classification).
        unimodal_weight: λ_uni. MCR owns one linear head per modality when ``latent_dims``
            (and ``num_classes`` in classification) are given; otherwise the term is active only
            when ``unimodal_logits`` are passed to ``forward``.
        temperature: τ of the contrastive loss.
        contrastive: the form of L_Con: ``"ntxent"`` (default; paper eq. 11 and the released
            code: each positive against the negatives only,
            :func:`mcr_reg.functional.contrastive_ntxent`) or ``"supcon"`` (SupCon, the
            denominator over all other samples; the form of mcr-reg 0.1).
        head_gradient: what the fusion head's parameters receive from MIPD: ``"mean"``
            (default; the mean of the players' factors, ``c(S) = (|S| + k (M - |S|)) / M``
            times the gradient of L_S: nothing for greedy with two modalities, as in the paper's
            eq. 7 and the released code) or ``"sum"`` (the plain sum over subsets, the rule of
            mcr-reg 0.1). See docs/semantics.md, "The game".
        projection_dim: width of per-modality linear projections before the contrastive loss;
            needed when latent widths differ.
        perturbation: ``"permutation"`` (the paper's default), ``"noise"`` (latent + Gaussian
            noise with the latent's per-feature batch standard deviation times
            ``noise_scale``) or ``"zero"`` (latent replaced by zeros; one draw).
        detach_reference: stop gradients through the unperturbed prediction (what the
            released code's runs did; no measurable difference, see docs/semantics.md).
        gather_distributed: gather latents and labels from all ranks (with gradients) for the
            contrastive term.
        generator: source of the permutations and noise; by default a private generator per
            device, seeded from ``seed``, so the global RNG is never touched.
        seed: seed of the private generators (default: drawn from the OS). The generators'
            state is part of ``state_dict()`` (as extra state), so a resumed run draws the
            same permutations as an uninterrupted one.
        check_values: run the checks that read tensor values (label range, permutations,
            finiteness, and whether the ``logits`` passed to ``forward`` agree with MCR's own
            ``fusion_head(*latents)``). They synchronise with the device; they are skipped under
            ``torch.compile`` and can be turned off for sync-free GPU steps.
        check_finite: raise on NaN/Inf latents (a value check).
        feature_axis: the latents' feature axis: ``"auto"`` (last for ``(B, D)`` and
            ``(B, T, D)``, 1 for ``(B, C, H, W)`` and longer) or an int.
        ceb_hidden_dim: hidden width H of the CEB head.
        noise_scale: multiplier of the noise standard deviation for ``perturbation="noise"``.
        contrastive_labels: maps labels to the integer classes that define contrastive
            positives; default: identity (classification), ``round`` (regression), ``0/1``
            (binary).
        batched: ``None`` (default) stacks every pass into one fusion-head call unless the head
            contains BatchNorm layers in training mode (then one call per block, with a one-time
            warning); ``True``/``False`` force either.
        perturbed_rows: which rows of a permuted block count in L_S: ``"all"`` (default; the
            paper's uniform permutations, whose fixed points count with divergence 0),
            ``"moved"`` (rows that some permutation of S moves) or ``"other_label"`` (rows
            that receive a sample of another class), the row rules of the released code; see
            :func:`mcr_reg.functional.permutation_row_mask`. Only with
            ``perturbation="permutation"``.
        output: for a fusion head that returns several values, the position (``int``) or key
            (``str``) of the prediction in what it returns, e.g. ``-1`` for a head returning
            ``(out_audio, out_video, logits)``; ``None`` (default): the head returns the
            prediction itself.

    Example:
        >>> head = torch.nn.Linear(16, 3)
        >>> fusion = lambda a, v: head(torch.cat([a, v], dim=-1))
        >>> mcr = MCRRegularizer(fusion, strategy="greedy", num_classes=3, latent_dims=(8, 8),
        ...                      generator=torch.Generator().manual_seed(0))
        >>> za, zv = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
        >>> y = torch.tensor([0, 1, 2, 1])
        >>> logits = fusion(za, zv)
        >>> out = mcr([za, zv], y, logits)
        >>> (F.cross_entropy(logits, y) + out.loss).backward()
        >>> sorted(out.terms), tuple(out.importance.shape)
        (['contrastive', 'mipd', 'unimodal'], (2,))
    """

    _head: Callable[..., Tensor]  # the fusion head as MCR calls it (see _head_call)

    def __init__(
        self,
        fusion_head: Callable[..., Tensor],
        *,
        strategy: Strategy | float = "greedy",
        task: Task = "classification",
        num_classes: int | None = None,
        latent_dims: Sequence[int] | None = None,
        num_permutations: int = 32,
        subsets: MF.SubsetSpec = "all",
        mipd_weight: float = 0.1,
        contrastive_weight: float = 1.0,
        ceb_weight: float = 0.0,
        unimodal_weight: float = 0.01,
        temperature: float = 0.5,
        contrastive: Contrastive = "ntxent",
        head_gradient: MF.HeadGradient = "mean",
        projection_dim: int | None = None,
        perturbation: Perturbation = "permutation",
        detach_reference: bool = False,
        gather_distributed: bool = False,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        check_values: bool = True,
        check_finite: bool = False,
        feature_axis: int | Literal["auto"] = "auto",
        ceb_hidden_dim: int = 128,
        noise_scale: float = 1.0,
        contrastive_labels: Callable[[Tensor], Tensor] | None = None,
        batched: bool | None = None,
        output: Output = None,
        perturbed_rows: PerturbedRows = "all",
    ) -> None:
        super().__init__()
        if not callable(fusion_head):
            raise TypeError(
                f"expected fusion_head to be callable (z_1, ..., z_M) -> logits, "
                f"got {type(fusion_head).__name__}"
            )
        # Held outside the module tree on purpose: the head's parameters belong to the user's
        # model, so they never appear in mcr.parameters() or mcr.state_dict().
        object.__setattr__(self, "_fusion_head", fusion_head)
        if output is not None and (isinstance(output, bool) or not isinstance(output, int | str)):
            raise TypeError(f"expected output to be None, an int or a str, got {output!r}")
        self.output: Output = output
        width = 1 if task != "classification" else num_classes
        # how MCR calls the head (also not a submodule: the head's parameters stay the user's)
        object.__setattr__(self, "_head", _head_call(fusion_head, output, width))
        self.k = MF.strategy_factor(strategy)
        self.strategy = strategy
        if task not in _TASKS:
            raise ValueError(f"expected task in {list(_TASKS)}, got {task!r}")
        self.task: Task = task
        if perturbation not in _PERTURBATIONS:
            raise ValueError(
                f"expected perturbation in {list(_PERTURBATIONS)}, got {perturbation!r}"
            )
        self.perturbation: Perturbation = perturbation
        if perturbed_rows not in ("all", "moved", "other_label"):
            raise ValueError(
                f"expected perturbed_rows in ['all', 'moved', 'other_label'], got {perturbed_rows!r}"
            )
        if perturbed_rows != "all" and perturbation != "permutation":
            raise ValueError(
                f"perturbed_rows={perturbed_rows!r} selects rows by their permutation, but "
                f"perturbation={perturbation!r}; use perturbation='permutation'"
            )
        self.perturbed_rows: PerturbedRows = perturbed_rows
        self.num_classes = self._check_num_classes(num_classes, task)
        self.latent_dims = self._check_latent_dims(latent_dims)
        if isinstance(num_permutations, bool) or not isinstance(num_permutations, int):
            raise TypeError(f"expected num_permutations to be an int, got {num_permutations!r}")
        if num_permutations < 1:
            raise ValueError(f"expected num_permutations >= 1, got {num_permutations}")
        self.num_permutations = num_permutations
        self.subsets_spec = subsets
        self._subsets: dict[int, tuple[tuple[int, ...], ...]] = {}
        if self.latent_dims is not None:
            self.subsets_for(len(self.latent_dims))  # validate now
        elif not isinstance(subsets, str):
            if any(len(tuple(s)) == 0 for s in subsets):
                raise ValueError("expected non-empty subsets, got an empty one")
        elif subsets not in ("all", "singletons"):
            raise ValueError(
                f"expected subsets 'all', 'singletons' or a list of index tuples, got {subsets!r}"
            )
        for name, w in (
            ("mipd_weight", mipd_weight),
            ("contrastive_weight", contrastive_weight),
            ("ceb_weight", ceb_weight),
            ("unimodal_weight", unimodal_weight),
            ("noise_scale", noise_scale),
        ):
            if not (isinstance(w, int | float) and math.isfinite(w) and w >= 0):
                raise ValueError(f"expected {name} to be a finite number >= 0, got {w!r}")
        self.mipd_weight = float(mipd_weight)
        self.contrastive_weight = float(contrastive_weight)
        self.ceb_weight = float(ceb_weight)
        self.unimodal_weight = float(unimodal_weight)
        self.noise_scale = float(noise_scale)
        if not temperature > 0:
            raise ValueError(f"expected a positive temperature, got {temperature}")
        self.temperature = float(temperature)
        if contrastive not in _CONTRASTIVE:
            raise ValueError(f"expected contrastive in {list(_CONTRASTIVE)}, got {contrastive!r}")
        self.contrastive: Contrastive = contrastive
        if head_gradient not in _HEAD_GRADIENTS:
            raise ValueError(
                f"expected head_gradient in {list(_HEAD_GRADIENTS)}, got {head_gradient!r}"
            )
        self.head_gradient: MF.HeadGradient = head_gradient
        self.detach_reference = bool(detach_reference)
        self.gather_distributed = bool(gather_distributed)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"expected a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"expected seed to be an int or None, got {seed!r}")
        self.seed = int(seed) if seed is not None else secrets.randbits(63)
        self._seed_given = seed is not None
        self._private_generators: dict[str, torch.Generator] = {}
        self._pending_states: dict[str, Tensor] = {}
        self.check_values = bool(check_values)
        self.check_finite = bool(check_finite)
        self.feature_axis = feature_axis
        self.contrastive_labels = contrastive_labels
        self.batched = batched
        self._warned_batch_dependent = False
        self._warned_logits = False
        self._warned_nonfinite = False
        self._warned_not_updated = False
        # the modules a plain-function head runs, found in MCR's first call of it
        self._function_head_modules: list[nn.Module] | None = None
        object.__setattr__(self, "_one_pass", None)  # see _one_pass_head
        # a module head's modules, listed once (never inside a compiled frame: an attribute set
        # there would change the frame's guards and recompile it on the next step)
        self._module_head_modules: list[nn.Module] = (
            list(fusion_head.modules()) if isinstance(fusion_head, nn.Module) else []
        )
        # (version counters of MCR's own parameters, of the head's) at the previous call, and
        # how many optimizer updates of the head in a row left MCR's parameters unchanged
        self._versions: tuple[int, int] | None = None
        self._head_updates_without_mcr = 0
        # set by mcr_reg.check_gradient_path while it runs the user's step
        self._probe: Callable[[Tensor], Tensor] | None = None

        out_dim = self.num_classes if task == "classification" else 1
        dims = self.latent_dims
        # --- projections for the contrastive term
        self.projections: nn.ModuleList | None = None
        if projection_dim is not None:
            if dims is None:
                raise ValueError(
                    "projection_dim needs latent_dims (the input width of each projection)"
                )
            if projection_dim < 1:
                raise ValueError(f"expected projection_dim >= 1, got {projection_dim}")
            self.projections = nn.ModuleList(nn.Linear(d, projection_dim) for d in dims)
        elif dims is not None and self.contrastive_weight > 0 and len(set(dims)) > 1:
            raise ValueError(
                f"the contrastive term compares latents in one space, but latent_dims {tuple(dims)} "
                "differ: set projection_dim (or contrastive_weight=0)"
            )
        # --- CEB head
        self.ceb_head: _CEBHead | None = None
        if self.ceb_weight > 0:
            missing = [n for n, v in (("latent_dims", dims), ("num_classes", out_dim)) if v is None]
            if missing:
                raise ValueError(
                    f"ceb_weight > 0 needs {' and '.join(missing)} to size the CEB head"
                )
            assert dims is not None and out_dim is not None
            self.ceb_head = _CEBHead(out_dim, ceb_hidden_dim, sum(dims))
        # --- unimodal heads
        self.unimodal_heads: nn.ModuleList | None = None
        if self.unimodal_weight > 0 and dims is not None and out_dim is not None:
            self.unimodal_heads = nn.ModuleList(nn.Linear(d, out_dim) for d in dims)

    # ------------------------------------------------------------------ settings helpers

    @property
    def fusion_head(self) -> Callable[..., Tensor]:
        """The user's fusion head (not a submodule of this module)."""
        return cast(Callable[..., Tensor], self._fusion_head)  # type: ignore[has-type]

    @staticmethod
    def _check_num_classes(num_classes: int | None, task: Task) -> int | None:
        if num_classes is None:
            return None
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"expected num_classes to be an int, got {num_classes!r}")
        if task == "classification" and num_classes < 2:
            raise ValueError(f"expected num_classes >= 2 for classification, got {num_classes}")
        if task != "classification" and num_classes != 1:
            raise ValueError(
                f"task={task!r} expects one output per sample: num_classes must be None or 1, "
                f"got {num_classes}"
            )
        return num_classes

    @staticmethod
    def _check_latent_dims(latent_dims: Sequence[int] | None) -> tuple[int, ...] | None:
        if latent_dims is None:
            return None
        if isinstance(latent_dims, Mapping):
            latent_dims = list(latent_dims.values())
        dims = tuple(latent_dims)
        if len(dims) < 2:
            raise ValueError(f"expected latent_dims for at least two modalities, got {dims}")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
            raise ValueError(f"expected positive integer latent_dims, got {dims}")
        return dims

    def subsets_for(self, num_modalities: int) -> tuple[tuple[int, ...], ...]:
        """The perturbed subsets for ``num_modalities`` modalities (cached)."""
        if num_modalities not in self._subsets:
            self._subsets[num_modalities] = MF.enumerate_subsets(num_modalities, self.subsets_spec)
        return self._subsets[num_modalities]

    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        if compiling():
            # Dynamo cannot trace Generator objects: the global RNG is used; say so once
            if self.generator is not None or self._seed_given:
                _warn_at_compile_time_that_the_generator_is_ignored()
            return None
        if self.generator is not None:
            return self.generator
        key = str(device)
        if key not in self._private_generators:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            pending = self._pending_states.pop(key, None)
            if pending is not None:
                g.set_state(pending)
            self._private_generators[key] = g
        return self._private_generators[key]

    def manual_seed(self, seed: int) -> MCRRegularizer:
        """Restart the private generators from ``seed`` (like ``torch.Generator.manual_seed``).

        Example:
            >>> mcr = MCRRegularizer(torch.nn.Linear(8, 3), num_classes=3)
            >>> mcr.manual_seed(0).seed
            0
        """
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"expected seed to be an int, got {seed!r}")
        self.seed = int(seed)
        self._seed_given = True
        self._private_generators.clear()
        self._pending_states.clear()
        return self

    def get_extra_state(self) -> dict[str, object]:
        """The randomness of MCR, saved in ``state_dict()``: the seed and the generators' states.

        ``generators`` maps a device (``"cpu"``, ``"cuda:0"``) to the private generator's state
        there (uint8 tensor); ``generator`` is the state of a user-supplied ``generator``.
        """
        states = {k: g.get_state() for k, g in self._private_generators.items()}
        for k, state in self._pending_states.items():
            states.setdefault(k, state.clone())
        user = self.generator.get_state() if self.generator is not None else None
        return {"seed": self.seed, "generators": states, "generator": user}

    def set_extra_state(self, state: object) -> None:
        """Restore what :meth:`get_extra_state` saved (called by ``load_state_dict``).

        Private generators continue from the saved state the next time they draw on that
        device; a user-supplied ``generator`` is set to the saved state at once.

        Raises:
            TypeError: if ``state`` is not such a mapping.
        """
        if not isinstance(state, Mapping) or not {"seed", "generators"} <= set(state):
            raise TypeError(
                "expected MCR's extra state as a mapping with 'seed' and 'generators' (from "
                f"MCRRegularizer.get_extra_state), got {type(state).__name__}"
            )
        self.manual_seed(int(state["seed"]))
        for key, value in dict(state["generators"]).items():
            if not isinstance(value, Tensor) or value.dtype != torch.uint8:
                raise TypeError(f"expected a uint8 generator state for {key!r}, got {value!r}")
            self._pending_states[str(key)] = value.detach().cpu().clone()
        user = state.get("generator")
        if self.generator is not None and isinstance(user, Tensor):
            self.generator.set_state(user.detach().cpu())

    def extra_repr(self) -> str:
        return (
            f"strategy={self.strategy!r} (k={self.k}), head_gradient={self.head_gradient!r}, "
            f"task={self.task!r}, "
            f"P={self.num_permutations}, subsets={self.subsets_spec!r}, "
            f"perturbation={self.perturbation!r}, perturbed_rows={self.perturbed_rows!r}, "
            f"weights(mipd={self.mipd_weight}, "
            f"contrastive={self.contrastive_weight} ({self.contrastive}), ceb={self.ceb_weight}, "
            f"unimodal={self.unimodal_weight})"
        )

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        latents: Latents | FusionInputs,
        labels: Tensor,
        logits: Tensor | None = None,
        *,
        permutations: Tensor | None = None,
        unimodal_logits: Sequence[Tensor] | None = None,
        perturbed_latents: Sequence[Tensor | None] | Mapping[str, Tensor] | None = None,
    ) -> MCROutput:
        """Compute the MCR loss terms for one batch.

        Args:
            latents: ``[z_1, ..., z_M]`` or ``{name: z_m}``, each batch-first with batch B >= 2,
                in the order the fusion head takes them; or a :class:`~mcr_reg.FusionInputs`
                on the fusion module, whose latest call in this training step gives the latents
                and (unless ``logits`` is passed) the logits: ``mcr(fusion_inputs, y)``.
            labels: ``(B,)`` integer classes (classification); ``(B,)`` or ``(B, 1)`` floats
                (regression) or 0/1 values (binary).
            logits: the fused prediction ``fusion_head(*latents)`` the task loss used; only read
                (detached) by the CEB term, checked for shape and, with ``check_values``,
                compared with MCR's own unperturbed pass (a one-time ``RuntimeWarning`` when they
                differ: the latents are then not the head's inputs). Omitted: MCR uses its own
                unperturbed pass.
            permutations: optional ``(P, M, B)`` LongTensor; row ``[p, m]`` permutes modality m in
                draw p (ignored where m is not perturbed). Only with ``perturbation="permutation"``.
            unimodal_logits: optional per-modality predictions ``(B, C)`` for the unimodal term,
                when MCR does not own unimodal heads.
            perturbed_latents: optional per-modality ``(P, B, ...)`` perturbed latents (e.g. from
                perturbed *inputs* re-encoded by the user); ``None`` entries (or names absent from
                a mapping) fall back to the configured perturbation.

        Returns:
            :class:`MCROutput`.

        Raises:
            TypeError, ValueError: on malformed inputs, before any computation.
        """
        if isinstance(latents, FusionInputs):
            latents, captured = latents.take()
            if logits is None and captured is not None:
                try:
                    logits = _select_output(captured, self.output, self._output_width())
                except _ManyOutputsError as err:
                    raise self._many_outputs_error(err, None) from None
        names, zs = self._split_latents(latents)
        batch, device = self._check_latents(names, zs)
        m_count = len(zs)
        labels = self._check_labels(labels, batch, device)
        out_dim = self._check_logits(logits, batch)
        subsets = self.subsets_for(m_count)
        extra = self._check_perturbed(perturbed_latents, names, zs)
        if permutations is not None:
            self._check_permutations(permutations, m_count, batch, device)
        if unimodal_logits is not None:
            unimodal_logits = self._check_unimodal_logits(unimodal_logits, m_count, batch)
        self._check_own_dtype(zs)
        if not compiling():
            if self.check_finite:
                for n, z in zip(names, zs):
                    check_finite(z, f"latent {n!r}")
            elif self.check_values and not self._warned_nonfinite:
                self._warn_nonfinite(names, zs)
            self._watch_updates()

        terms: dict[str, Tensor] = {}
        total = zs[0].new_zeros((), dtype=torch.float32)
        pooled = [MF.pool_latent(z, self.feature_axis) for z in zs]

        # ---- L_MIPD (eq. 8-10) with the game (section 3.2)
        reference: Tensor | None = None
        importance = torch.full((m_count,), float("nan"), device=device)
        if self.mipd_weight > 0:
            perturbed = self._perturbations(zs, extra, permutations, batch, device)
            row_weights = None
            if self.perturbed_rows != "all":
                if perturbed[0] is None or any(e is not None for e in extra):
                    raise ValueError(
                        f"perturbed_rows={self.perturbed_rows!r} needs MCR's own permutations "
                        "for every modality; perturbed_latents were given"
                    )
                row_weights = MF.permutation_row_mask(
                    perturbed[0], subsets, self.perturbed_rows, self._contrastive_labels(labels)
                )
            try:
                per_subset, reference = self._mipd(zs, subsets, perturbed, row_weights)
            except _ManyOutputsError as err:
                raise self._many_outputs_error(err, batch) from None
            self._check_head_output(reference, out_dim)
            if logits is not None:
                self._compare_logits(logits, reference)
            mipd_loss = -per_subset.sum()
            terms["mipd"] = mipd_loss.detach()
            total = total + self.mipd_weight * mipd_loss
            singles = [subsets.index((i,)) if (i,) in subsets else -1 for i in range(m_count)]
            importance = torch.stack(
                [per_subset[j].detach() if j >= 0 else importance[i] for i, j in enumerate(singles)]
            )

        # ---- L_Con (eq. 11/15)
        if self.contrastive_weight > 0:
            con = self._contrastive(pooled, labels, names)
            terms["contrastive"] = con.detach()
            total = total + self.contrastive_weight * con

        # ---- L_CEB (eq. 13)
        if self.ceb_head is not None:
            source = logits if logits is not None else reference
            if source is None:
                with torch.no_grad():
                    try:
                        source = self._head(*zs)
                    except _ManyOutputsError as err:
                        raise self._many_outputs_error(err, batch) from None
            source = source.detach()
            if source.dim() == 1:
                source = source.unsqueeze(-1)
            head_dtype = next(self.ceb_head.parameters()).dtype
            ceb = MF.ceb_reconstruction(self.ceb_head(source.to(head_dtype)), pooled)
            terms["ceb"] = ceb.detach()
            total = total + self.ceb_weight * ceb

        # ---- L_uni (Algorithm 1, line 4)
        own_uni: tuple[Tensor, ...] | None = None
        if self.unimodal_weight > 0:
            if self.unimodal_heads is not None:
                own_uni = tuple(h(p) for h, p in zip(self.unimodal_heads, pooled))
                uni_preds: Sequence[Tensor] | None = own_uni
            else:
                uni_preds = unimodal_logits
            if uni_preds is not None:
                uni = torch.stack([self._task_loss(p, labels) for p in uni_preds]).sum()
                terms["unimodal"] = uni.detach()
                total = total + self.unimodal_weight * uni

        if self._probe is not None:
            total = self._probe(total)
        return MCROutput(
            loss=total,
            terms=terms,
            importance=importance,
            modalities=names,
            unimodal_logits=own_uni,
        )

    # ------------------------------------------------------------------ pieces

    def _mipd(
        self,
        zs: Sequence[Tensor],
        subsets: tuple[tuple[int, ...], ...],
        perturbed: tuple[Tensor | None, list[Tensor | None]],
        row_weights: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:func:`mcr_reg.functional.mipd` with this module's settings. The first call of a
        plain-function head also records which modules the head runs (BatchNorm and Dropout
        inside it then get the treatment of a module head's, from this call on)."""
        head_share = (
            MF.head_factors(subsets, len(zs), self.k) if self.head_gradient == "mean" else None
        )

        def run(batched: bool) -> tuple[Tensor, Tensor]:
            return MF.mipd(
                self._one_pass_head(),
                zs,
                subsets,
                permutations=perturbed[0],
                perturbed=perturbed[1],
                k=self.k,
                divergence=self._divergence(),
                detach_reference=self.detach_reference,
                batched=batched,
                head_share=head_share,
                row_weights=row_weights,
            )

        batched = self._use_batched()
        if (
            isinstance(self.fusion_head, nn.Module)
            or self._function_head_modules is not None
            or compiling()
        ):
            return run(batched)
        found: list[nn.Module] = []
        with _recording_modules(found):
            result = run(batched)
        self._function_head_modules = found
        if batched and self._use_batched() is False:  # BatchNorm found: the stacked call mixed
            result = run(False)  # the blocks' statistics; run this step per block too
        return result

    def _one_pass_head(self) -> Callable[..., Tensor]:
        """The head as :func:`~mcr_reg.functional.mipd` gets it. A plain-function head is
        wrapped with the modules it runs once an earlier step has shown that every trainable
        tensor its output depends on belongs to those modules: mipd can then scale their
        parameters in one pass instead of running the head a second time."""
        chosen = cast("Callable[..., Tensor] | None", self._one_pass)
        if chosen is not None:
            return chosen
        if isinstance(self.fusion_head, nn.Module) or self._function_head_modules is None:
            return self._head
        seen = MF.head_parameters_seen(self._head)
        if seen is None or compiling():
            return self._head
        roots = _outermost(self._function_head_modules)
        owned = {id(p) for m in roots for p in m.parameters()}
        one_pass: Callable[..., Tensor] = self._head  # parameters outside modules: two passes
        if all(id(t) in owned for t in seen if t.requires_grad):
            # (a parameter reachable by two names keeps the second pass too: mipd checks that)
            one_pass = _ModulesOfFunctionHead(self._head, roots)
        # not a submodule: the head's parameters stay out of mcr.parameters()
        object.__setattr__(self, "_one_pass", one_pass)
        return one_pass

    def _head_modules(self) -> list[nn.Module]:
        """The modules the fusion head runs: a module head's own, or those a function head was
        seen to run (none before its first call)."""
        if isinstance(self.fusion_head, nn.Module):
            return self._module_head_modules
        return self._function_head_modules or []

    def _check_own_dtype(self, zs: Sequence[Tensor]) -> None:
        """float64 latents with MCR's own heads in a lower precision: say what to call."""
        if zs[0].dtype != torch.float64:
            return
        own = next(self.parameters(), None)
        if own is not None and own.dtype != torch.float64:
            raise TypeError(
                f"the latents are float64 but MCR's own heads (unimodal heads, projections, CEB "
                f"head) are {own.dtype}: call mcr.double() (or mcr.to(torch.float64)) once after "
                "building it, as you did for your model; MCR's terms then come out in float64"
            )

    def _warn_nonfinite(self, names: Sequence[str], zs: Sequence[Tensor]) -> None:
        """A value check (one host sync per call until it has warned once)."""
        finite = torch.stack([torch.isfinite(z).all() for z in zs])
        if bool(finite.all()):
            return
        self._warned_nonfinite = True
        bad = [repr(n) for n, ok in zip(names, finite.tolist()) if not ok]
        warnings.warn(
            f"latents {', '.join(bad)} hold NaN or Inf values: every MCR term that reads them is "
            "NaN. check_finite=True raises instead, at the first such batch. (Warned once.)",
            RuntimeWarning,
            stacklevel=3,
        )

    def _watch_updates(self) -> None:
        """Warn once when the optimizer keeps updating the fusion head but never MCR's own
        parameters although they receive gradients (``mcr.parameters()`` in no optimizer).
        Reads version counters only: no host sync."""
        own = list(self.parameters())
        head = [p for m in self._head_modules() for p in m.parameters(recurse=False)]
        if self._warned_not_updated or not own or not head:
            return
        versions = (sum(p._version for p in own), sum(p._version for p in head))
        previous, self._versions = self._versions, versions
        if previous is None:
            return
        if versions[0] != previous[0]:
            self._head_updates_without_mcr = 0
        elif versions[1] != previous[1] and any(p.grad is not None for p in own):
            self._head_updates_without_mcr += 1
        if self._head_updates_without_mcr >= 3:
            self._warned_not_updated = True
            warnings.warn(
                f"the fusion head's parameters were updated {self._head_updates_without_mcr} times "
                "in a row but MCR's own parameters (its unimodal heads, projections, CEB head) "
                "never, although they receive gradients: they are in no optimizer. Add "
                "mcr.parameters() to your optimizer, or attach MCR to your model (model.mcr = "
                "mcr) before building it. (Warned once.)",
                RuntimeWarning,
                stacklevel=3,
            )

    def _output_width(self) -> int | None:
        return 1 if self.task != "classification" else self.num_classes

    def _many_outputs_error(self, err: _ManyOutputsError, batch: int | None) -> TypeError:
        when = (
            "in its latest call (recorded by FusionInputs)"
            if batch is None
            else f"when MCR called it with your latents with batch {batch} (stacked with their "
            "perturbed copies along the batch axis)"
        )
        return TypeError(
            f"the fusion head returned {err.what} {when}; MCR needs the prediction tensor "
            f"alone. {err.hint}"
        )

    def _compare_logits(self, logits: Tensor, reference: Tensor) -> None:
        """Warn once when ``logits`` differ from MCR's own ``fusion_head(*latents)``.

        A value check (one host sync): only with ``check_values``, never while compiling, and
        not for heads whose dropout or BatchNorm layers make two calls differ.
        """
        if self._warned_logits or not self.check_values or compiling():
            return
        if not logits.is_floating_point() or _random_in_training(self._head_modules()):
            return
        ref = reference.detach().float().reshape(reference.shape[0], -1)
        got = logits.detach().float().reshape(ref.shape)
        eps = max(torch.finfo(reference.dtype).eps, torch.finfo(logits.dtype).eps)
        rel = max(8.0 * eps, 5e-3)  # float32: 5e-3; float16: 7.8e-3; bfloat16: 6.3e-2
        diff = (ref - got).abs().max()
        tol = rel * (1.0 + got.abs().max())
        if bool(diff > tol):
            self._warned_logits = True
            warnings.warn(
                f"MCR's own unperturbed pass fusion_head(*latents) differs from the logits you "
                f"passed by up to {float(diff):.3g} (tolerance {float(tol):.2g} for "
                f"{logits.dtype}), so MCR's terms are computed on another function than your "
                "loss. Possible causes: (1) the latents are not the inputs the fusion head was "
                "called with (e.g. encoder outputs that the fusion module re-projects): pass the "
                "fusion head's inputs (mcr_reg.FusionInputs records them); (2) output= selects "
                f"another of the head's outputs ({self.output!r}) than the logits your loss uses; "
                "(3) the head draws randomness or batch statistics MCR cannot see (dropout or "
                "BatchNorm outside nn.Module layers). Warned once; check_values=False turns this "
                "check off.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _divergence(self) -> MF.Divergence:
        return {"classification": "jsd", "binary": "binary_jsd", "regression": "squared_error"}[
            self.task
        ]  # type: ignore[return-value]

    def _use_batched(self) -> bool:
        if self.batched is not None:
            return self.batched
        if _batch_dependent_in_training(self._head_modules()):
            if not self._warned_batch_dependent and not compiling():
                warnings.warn(
                    "the fusion head has BatchNorm layers in training mode, whose output depends "
                    "on the whole batch; MCR runs one fusion-head call per perturbation block "
                    "instead of one batched call (slower). Pass batched=True to override.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._warned_batch_dependent = True
            return False
        return True

    def _perturbations(
        self,
        zs: Sequence[Tensor],
        extra: list[Tensor | None],
        permutations: Tensor | None,
        batch: int,
        device: torch.device,
    ) -> tuple[Tensor | None, list[Tensor | None]]:
        """Return ``(permutations, perturbed)`` for :func:`mcr_reg.functional.mipd`."""
        if all(e is not None for e in extra):
            return None, extra
        given = [e for e in extra if e is not None]
        draws = int(given[0].shape[0]) if given else self.num_permutations
        if self.perturbation == "permutation":
            if permutations is None:
                permutations = MF.sample_permutations(
                    draws, len(zs), batch, generator=self._generator_for(device), device=device
                )
            return permutations, extra
        out: list[Tensor | None] = []
        gen = self._generator_for(device)
        for z, e in zip(zs, extra):
            if e is not None:
                out.append(e)
            elif self.perturbation == "zero":
                out.append(torch.zeros_like(z).unsqueeze(0).expand(draws if given else 1, *z.shape))
            else:
                std = z.detach().std(dim=0, keepdim=True)
                noise = torch.randn(
                    (draws, *z.shape),
                    generator=gen,
                    device=gen.device if gen else device,
                    dtype=z.dtype,
                ).to(device)
                out.append(z.unsqueeze(0) + self.noise_scale * std * noise)
        return None, out

    def _contrastive(
        self, pooled: Sequence[Tensor], labels: Tensor, names: Sequence[str]
    ) -> Tensor:
        feats = list(pooled)
        if self.projections is not None:
            if len(self.projections) != len(feats):
                raise ValueError(
                    f"expected {len(self.projections)} modalities (from latent_dims), got {len(feats)}"
                )
            feats = [p(f.to(next(p.parameters()).dtype)) for p, f in zip(self.projections, feats)]
        widths = {int(f.shape[-1]) for f in feats}
        if len(widths) > 1:
            listing = ", ".join(f"{n} {int(f.shape[-1])}" for n, f in zip(names, feats))
            raise ValueError(
                f"expected latents of one width for the contrastive term, got {listing}; "
                "set projection_dim (with latent_dims) or contrastive_weight=0"
            )
        con_labels = self._contrastive_labels(labels)
        if self.gather_distributed:
            feats = [gather_with_grad(f) for f in feats]
            con_labels = gather_with_grad(con_labels)
        stacked = torch.cat(feats)  # (M*B, D): [z_1; ...; z_M]
        tiled = con_labels.repeat(len(feats))  # (M*B,)
        loss_fn = (
            MF.contrastive_ntxent if self.contrastive == "ntxent" else MF.supervised_contrastive
        )
        return loss_fn(stacked, tiled, temperature=self.temperature)

    def _contrastive_labels(self, labels: Tensor) -> Tensor:
        if self.contrastive_labels is not None:
            return self.contrastive_labels(labels)
        if self.task == "regression":
            return torch.round(labels).long()
        return labels.long()

    def _task_loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        dtype = MF._compute_dtype(pred.dtype)  # float32, or float64 for float64 predictions
        if self.task == "classification":
            return F.cross_entropy(pred.to(dtype), labels)
        pred = pred.reshape(-1).to(dtype)
        if self.task == "binary":
            return F.binary_cross_entropy_with_logits(pred, labels.to(dtype))
        return F.l1_loss(pred, labels.to(dtype))

    # ------------------------------------------------------------------ input checks

    def _split_latents(self, latents: Latents) -> tuple[tuple[str, ...], list[Tensor]]:
        if isinstance(latents, Tensor):
            raise TypeError(
                "expected latents as a sequence or a name->tensor mapping of per-modality "
                f"tensors, got one tensor of shape {shape_of(latents)}"
            )
        if isinstance(latents, Mapping):
            names = tuple(str(n) for n in latents)
            zs = [check_tensor(v, f"latent {n!r}") for n, v in latents.items()]
        elif isinstance(latents, Sequence):
            zs = [check_tensor(v, f"latent {i}") for i, v in enumerate(latents)]
            names = tuple(str(i) for i in range(len(zs)))
        else:
            raise TypeError(
                f"expected latents as a sequence or a mapping, got {type(latents).__name__}"
            )
        if len(zs) < 2:
            listing = ", ".join(f"{n!r} {shape_of(z)}" for n, z in zip(names, zs))
            raise ValueError(
                f"expected at least two modalities, got {len(zs)}: {listing}. If the fusion module "
                "is called on one concatenated tensor, record it with FusionInputs(module, "
                "split=(d_1, ..., d_M)), which splits it into the modalities' latents, and give "
                "MCR fusion_inputs.head, which calls the module on their concatenation"
            )
        return names, zs

    def _check_latents(
        self, names: Sequence[str], zs: Sequence[Tensor]
    ) -> tuple[int, torch.device]:
        for n, z in zip(names, zs):
            if z.dim() < 2:
                raise ValueError(
                    f"expected batch-first latents with a feature axis, got {n!r} {shape_of(z)}"
                )
            if not z.is_floating_point():
                raise TypeError(f"expected floating-point latents, got {n!r} of dtype {z.dtype}")
        batch = check_same_batch(zs, names)
        device = check_same_device(zs, names)
        if batch < 2:
            raise ValueError(
                f"expected a batch of at least 2 (a permutation needs two samples), got {batch}"
            )
        if self.latent_dims is not None:
            if len(self.latent_dims) != len(zs):
                raise ValueError(
                    f"expected {len(self.latent_dims)} modalities (latent_dims={self.latent_dims}), "
                    f"got {len(zs)}"
                )
            widths = tuple(int(z.shape[MF.feature_axis_of(z, self.feature_axis)]) for z in zs)
            if widths != self.latent_dims:
                listing = ", ".join(f"{n} {shape_of(z)}" for n, z in zip(names, zs))
                raise ValueError(
                    f"expected latent widths {self.latent_dims} (latent_dims), got {widths}: {listing}"
                )
        return batch, device

    def _check_labels(self, labels: Tensor, batch: int, device: torch.device) -> Tensor:
        labels = check_tensor(labels, "labels")
        if labels.device != device:
            raise ValueError(f"expected labels on {device} like the latents, got {labels.device}")
        if self.task == "classification":
            if labels.shape != (batch,):
                raise ValueError(
                    f"expected class labels of shape ({batch},), got {shape_of(labels)}"
                )
            if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
                raise TypeError(f"expected integer class labels, got dtype {labels.dtype}")
            if self.check_values and not compiling() and self.num_classes is not None:
                lo, hi = int(labels.min()), int(labels.max())
                if lo < 0 or hi >= self.num_classes:
                    raise ValueError(
                        f"expected labels in [0, {self.num_classes - 1}], got values in [{lo}, {hi}]"
                    )
            return labels.long()
        if labels.shape not in ((batch,), (batch, 1)):
            raise ValueError(
                f"expected {self.task} labels of shape ({batch},) or ({batch}, 1), got {shape_of(labels)}"
            )
        labels = labels.reshape(batch)
        if self.task == "regression":
            if not labels.is_floating_point():
                raise TypeError(f"expected floating-point regression targets, got {labels.dtype}")
            if self.check_values and not compiling():
                check_finite(labels, "regression labels")
            return labels
        if (
            self.check_values
            and not compiling()
            and not bool(((labels == 0) | (labels == 1)).all())
        ):
            raise ValueError("expected binary labels with values 0 or 1, got other values")
        return labels

    def _check_logits(self, logits: Tensor | None, batch: int) -> int | None:
        """Check the fused logits; return the expected output width per sample, if known."""
        expected = self.num_classes if self.task == "classification" else 1
        if logits is None:
            return expected
        logits = check_tensor(logits, "logits")
        if self.task == "classification":
            if logits.dim() != 2 or logits.shape[0] != batch:
                raise ValueError(f"expected logits of shape ({batch}, C), got {shape_of(logits)}")
            if expected is not None and logits.shape[1] != expected:
                raise ValueError(
                    f"expected logits with num_classes={expected} columns, got {shape_of(logits)}"
                )
            return int(logits.shape[1])
        if logits.shape not in ((batch,), (batch, 1)):
            raise ValueError(
                f"expected {self.task} predictions of shape ({batch},) or ({batch}, 1), "
                f"got {shape_of(logits)}"
            )
        return 1

    def _check_head_output(self, reference: Tensor, expected: int | None) -> None:
        """``reference`` is the head's output for one block of B rows."""
        if self.task != "classification":
            if reference.shape[1:] != (1,):
                raise ValueError(
                    f"expected the fusion head to output one value per sample for "
                    f"task={self.task!r}, got {shape_of(reference)} for one batch"
                )
            return
        if reference.dim() != 2:
            raise ValueError(
                f"expected the fusion head to return (N, C) logits, got {shape_of(reference)} "
                "for one batch"
            )
        if expected is not None and reference.shape[1] != expected:
            raise ValueError(
                f"expected the fusion head to output {expected} values per sample (from "
                f"num_classes or the logits), got {shape_of(reference)} for one batch"
            )

    def _check_permutations(
        self, permutations: Tensor, m_count: int, batch: int, device: torch.device
    ) -> None:
        permutations = check_tensor(permutations, "permutations")
        if self.perturbation != "permutation":
            raise ValueError(
                f"permutations were given but perturbation={self.perturbation!r}; "
                "they are only used with perturbation='permutation'"
            )
        if permutations.dtype != torch.long:
            raise TypeError(f"expected permutations of dtype torch.int64, got {permutations.dtype}")
        if permutations.dim() != 3 or permutations.shape[1:] != (m_count, batch):
            raise ValueError(
                f"expected permutations of shape (P, {m_count}, {batch}), got {shape_of(permutations)}"
            )
        if permutations.shape[0] < 1:
            raise ValueError("expected at least one permutation draw, got P = 0")
        if permutations.device != device:
            raise ValueError(f"expected permutations on {device}, got {permutations.device}")
        if self.check_values and not compiling():
            check_permutation_values(permutations)

    def _check_unimodal_logits(
        self, unimodal_logits: Sequence[Tensor], m_count: int, batch: int
    ) -> list[Tensor]:
        if self.unimodal_heads is not None:
            raise ValueError(
                "unimodal_logits were given, but MCR owns unimodal heads (unimodal_weight > 0 with "
                "latent_dims); pass unimodal_weight=0 or build MCR without latent_dims"
            )
        preds = [check_tensor(p, f"unimodal_logits[{i}]") for i, p in enumerate(unimodal_logits)]
        if len(preds) != m_count:
            raise ValueError(f"expected {m_count} unimodal predictions, got {len(preds)}")
        for i, p in enumerate(preds):
            if p.dim() < 1 or p.shape[0] != batch:
                raise ValueError(
                    f"expected unimodal_logits[{i}] with batch {batch}, got {shape_of(p)}"
                )
            if self.task == "classification" and (
                p.dim() != 2 or (self.num_classes is not None and p.shape[1] != self.num_classes)
            ):
                c = self.num_classes if self.num_classes is not None else "C"
                raise ValueError(
                    f"expected unimodal_logits[{i}] of shape ({batch}, {c}), got {shape_of(p)}"
                )
        return preds

    def _check_perturbed(
        self,
        perturbed: Sequence[Tensor | None] | Mapping[str, Tensor] | None,
        names: Sequence[str],
        zs: Sequence[Tensor],
    ) -> list[Tensor | None]:
        if perturbed is None:
            return [None] * len(zs)
        if isinstance(perturbed, Mapping):
            unknown = sorted(set(perturbed) - set(names))
            if unknown:
                raise ValueError(
                    f"perturbed_latents names {unknown} are not modalities {list(names)}"
                )
            items: list[Tensor | None] = [perturbed.get(n) for n in names]
        else:
            items = list(perturbed)
            if len(items) != len(zs):
                raise ValueError(f"expected {len(zs)} perturbed_latents entries, got {len(items)}")
        draws: set[int] = set()
        for n, z, p in zip(names, zs, items):
            if p is None:
                continue
            p = check_tensor(p, f"perturbed_latents[{n!r}]")
            if p.dim() != z.dim() + 1 or p.shape[1:] != z.shape:
                raise ValueError(
                    f"expected perturbed_latents[{n!r}] of shape (P, {', '.join(map(str, z.shape))}), "
                    f"got {shape_of(p)}"
                )
            if p.device != z.device:
                raise ValueError(f"expected perturbed_latents[{n!r}] on {z.device}, got {p.device}")
            draws.add(int(p.shape[0]))
        if len(draws) > 1:
            raise ValueError(
                f"expected one number of draws P in perturbed_latents, got {sorted(draws)}"
            )
        return items
