"""The :class:`MCRRegularizer` module: the fusion head, the game, the terms, the input checks.

The terms of the loss are modules of :mod:`mcr_reg.terms` and the mathematics lives in
:mod:`mcr_reg.functional`; this module checks what comes in once per step, runs the terms
and assembles :class:`MCROutput`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mcr_reg import functional as MF
from mcr_reg._checks import (
    check_choice,
    check_int,
    check_latent_dims,
    check_permutations,
    check_perturbed_latents,
    compiling,
    split_latents,
)
from mcr_reg._flat_keywords import (
    FLAT_ATTRIBUTES,
    read_flat_attribute,
    terms_from_flat,
    write_flat_attribute,
)
from mcr_reg._heads import (
    FusionHead,
    ManyOutputsError,
    Output,
    bound,
    select_output,
)
from mcr_reg._messages import UpdateWatch, many_outputs_error
from mcr_reg._output import MCROutput
from mcr_reg._randomness import PrivateGenerators, check_generator
from mcr_reg._step_checks import check_step_inputs, compare_logits
from mcr_reg._tasks import Task, task_rule
from mcr_reg.audit import FirstStepAudit
from mcr_reg.calls import CallRecord, batch_of, check_captured_output
from mcr_reg.capture import FusionInputs
from mcr_reg.terms import CEB, MIPD, Contrastive, StepInputs, Term, TermSetting, Unimodal

__all__ = ["MCROutput", "MCRRegularizer"]

Strategy = Literal["greedy", "independent", "collaborative"]
HeadDropout = Literal["train", "eval"]
Latents = Sequence[Tensor] | Mapping[str, Tensor]

#: where the parameters of MCR's own heads sat in a state_dict before they moved into the terms
_MOVED_KEYS = {
    "projections.": "contrastive.projections.",
    "ceb_head.": "ceb.head.",
    "unimodal_heads.": "unimodal.heads.",
}


class MCRRegularizer(nn.Module):
    """The Multimodal Competition Regularizer as a drop-in loss module.

    ``L_MCR = λ_M·L_MIPD + λ_con·L_Con + λ_ceb·L_CEB + λ_uni·L_uni`` (paper eq. 6, Algorithm 1),
    one term object each (:mod:`mcr_reg.terms`). The latents of the user's encoders are
    perturbed within the batch (no encoder re-runs) and passed through the user's own fusion
    head; the MIPD gradients reaching each encoder follow the chosen game strategy.

    The fusion head is *not* registered as a submodule: ``mcr.parameters()`` holds only MCR's
    own parameters (the terms': projections, CEB head, unimodal heads), created here in
    ``__init__``.

    Args:
        fusion_head: any callable ``fusion_head(z_1, ..., z_M) -> predictions (N, C)``
            (``(N,)`` or ``(N, 1)`` for binary and regression).
        strategy: the game of the MIPD term: ``"greedy"`` (k = -1), ``"independent"``
            (k = 0), ``"collaborative"`` (k = +1) or a float k.
        task: ``"classification"`` (JSD of softmaxes), ``"binary"`` (one logit, Bernoulli
            JSD), ``"regression"`` (squared error) or ``"multilabel"`` (one logit per label,
            ``(B, L)`` 0/1 targets, per-label Bernoulli JSD averaged over the labels).
        num_classes: classes (labels, for multi-label) of the fusion head's output; checked
            against the logits, needed to size the CEB and unimodal heads.
        latent_dims: feature width of each latent (modality order); checked against the
            latents, needed for MCR's own heads and projections.
        mipd: the MIPD term (:class:`~mcr_reg.terms.MIPD`); True (default): ``MIPD()``,
            λ_M = 0.1, P = 32, every subset; False: none.
        contrastive: the contrastive term (:class:`~mcr_reg.terms.Contrastive`); True
            (default): ``Contrastive()``, λ_con = 1, NT-Xent at τ = 0.5; False: none.
        ceb: the CEB term (:class:`~mcr_reg.terms.CEB`); False (default): none; True:
            ``CEB()``, λ_ceb = 1 (needs ``latent_dims`` and ``num_classes``).
        unimodal: the unimodal term (:class:`~mcr_reg.terms.Unimodal`); True (default):
            ``Unimodal()``, λ_uni = 0.01, with MCR's own linear head per modality when
            ``latent_dims`` (and ``num_classes`` in classification) are given, else on the
            ``unimodal_logits`` passed to the call (warned once when there are neither); False:
            none.
        extra_terms: further terms of your own (subclasses of :class:`~mcr_reg.terms.Term`),
            added with their weights; their names are their keys in ``MCROutput.terms``.
        seed: seed of MCR's private generators (default: drawn from the OS). The generators'
            state is part of ``state_dict()`` (as extra state), so a resumed run draws the same
            permutations as an uninterrupted one.
        generator: source of the permutations and noise instead of the private generators.
        output: for a fusion head that returns several values, the position (``int``) or key
            (``str``) of the prediction in what it returns, e.g. ``-1`` for a head returning
            ``(out_audio, out_video, logits)``; ``None`` (default): the head returns the
            prediction itself.
        batched: ``None`` (default) stacks every pass into one fusion-head call unless the head
            contains BatchNorm layers in training mode (then one call per block, with a one-time
            warning); ``True``/``False`` force either.
        head_dropout: dropout inside the fusion head during MCR's passes: ``"eval"`` (default)
            runs every module of the head except BatchNorm with ``training=False`` for MCR's
            passes (``nn.Dropout`` layers and ``F.dropout(x, p, self.training)`` off), so MIPD
            compares the head's deterministic predictions; ``"train"`` runs the head as it is,
            so in training mode every reference and perturbed block draws its own dropout masks
            and the divergences include dropout noise. The task loss keeps its dropout either
            way. See docs/integration.md, "Dropout in the fusion head".
        feature_axis: the latents' feature axis: ``"auto"`` (last for ``(B, D)`` and
            ``(B, T, D)``, 1 for ``(B, C, H, W)`` and longer) or an int.
        check_values: run the checks that read tensor values (label range, permutations,
            finiteness, and whether the ``logits`` passed to ``forward`` agree with MCR's own
            ``fusion_head(*latents)``). They synchronise with the device; they are skipped under
            ``torch.compile`` and can be turned off for sync-free GPU steps.
        check_finite: raise on NaN/Inf latents (a value check).
        audit: watch the first two training steps for the silent integration mistakes
            (detached latents, MCR's loss in no backward, encoders' gradients rewritten after
            the backward, MCR's parameters in no optimizer, MCR's gradients missed by
            ``model.zero_grad()``) and warn once for each (:mod:`mcr_reg.audit`).
        **flat_keywords: the flat keywords (``mipd_weight``, ``num_permutations``,
            ``subsets``, ``sampled_subsets``, ``perturbation``, ``noise_scale``,
            ``perturbed_rows``, ``head_gradient``, ``detach_reference``, ``contrastive_weight``,
            ``temperature``, ``contrastive="supcon"``, ``projection_dim``,
            ``gather_distributed``, ``contrastive_labels``, ``ceb_weight``, ``ceb_hidden_dim``,
            ``unimodal_weight``): deprecated, they build the same terms and warn
            (``DeprecationWarning``) with the new spelling.

    Example:
        >>> import torch.nn.functional as F
        >>> from mcr_reg.terms import MIPD
        >>> head = torch.nn.Linear(16, 3)
        >>> fusion = lambda a, v: head(torch.cat([a, v], dim=-1))
        >>> mcr = MCRRegularizer(fusion, strategy="greedy", num_classes=3, latent_dims=(8, 8),
        ...                      mipd=MIPD(weight=0.1), seed=0)
        >>> za, zv = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
        >>> y = torch.tensor([0, 1, 2, 1])
        >>> logits = fusion(za, zv)
        >>> out = mcr([za, zv], y, logits)
        >>> (F.cross_entropy(logits, y) + out.loss).backward()
        >>> sorted(out.terms), tuple(out.importance.shape)
        (['contrastive', 'mipd', 'unimodal'], (2,))
    """

    _fusion: FusionHead  # the fusion head as MCR calls it
    mipd: MIPD | None
    contrastive: Contrastive | None
    ceb: CEB | None
    unimodal: Unimodal | None

    def __init__(
        self,
        fusion_head: Callable[..., Tensor],
        *,
        strategy: Strategy | float = "greedy",
        task: Task = "classification",
        num_classes: int | None = None,
        latent_dims: Sequence[int] | None = None,
        mipd: MIPD | bool = True,
        contrastive: Contrastive | bool = True,
        ceb: CEB | bool = False,
        unimodal: Unimodal | bool = True,
        extra_terms: Sequence[Term] = (),
        seed: int | None = None,
        generator: torch.Generator | None = None,
        output: Output = None,
        batched: bool | None = None,
        head_dropout: HeadDropout = "eval",
        feature_axis: int | Literal["auto"] = "auto",
        check_values: bool = True,
        check_finite: bool = False,
        audit: bool = True,
        **flat_keywords: Any,
    ) -> None:
        super().__init__()
        self.task: Task = task
        self.rule = task_rule(task)
        self.num_classes = self.rule.check_num_classes(num_classes)
        self.latent_dims = check_latent_dims(latent_dims)
        self.output: Output = output
        width = self.rule.width(self.num_classes)
        # Held outside the module tree on purpose: the head's parameters belong to the user's
        # model, so they never appear in mcr.parameters() or mcr.state_dict().
        object.__setattr__(self, "_fusion", FusionHead(fusion_head, output, width, batched))
        check_choice(head_dropout, "head_dropout", ("train", "eval"))
        self.head_dropout: HeadDropout = head_dropout
        self._fusion.call.dropout_eval = head_dropout == "eval"  # type: ignore[attr-defined]
        self.k = MF.strategy_factor(strategy)
        self.strategy = strategy
        self.generator = check_generator(generator)
        self._random = PrivateGenerators(check_int(seed, "seed", none_ok=True))
        self.check_values, self.check_finite = bool(check_values), bool(check_finite)
        self.feature_axis = feature_axis
        self._updates = UpdateWatch()
        self._audit = FirstStepAudit(bool(audit))
        self._warned_logits = self._warned_nonfinite = False
        # set by mcr_reg.check_gradient_path while it runs the user's step
        self._probe: Callable[[Tensor], Tensor] | None = None
        given = {"mipd": mipd, "contrastive": contrastive, "ceb": ceb, "unimodal": unimodal}
        self._add_terms(terms_from_flat(given, flat_keywords), extra_terms)
        self._register_load_state_dict_pre_hook(_moved_keys, with_module=True)

    def _add_terms(self, terms: Mapping[str, Term | None], extra: Sequence[Term]) -> None:
        """The terms as submodules (None where a term is left out), each built for this
        regularizer: its parameters are created now, so an optimizer built next is complete."""
        setting = TermSetting(
            self.rule, self.num_classes, self.rule.width(self.num_classes), self.latent_dims,
            self.feature_axis,
        )  # fmt: skip
        for given in extra:
            if not isinstance(given, Term):
                raise TypeError(f"expected extra_terms of mcr_reg.terms.Term, got {given!r}")
        kept = [t for t in extra if t.weight > 0]
        names = [*terms, *(t.name for t in kept)]
        if len(set(names)) != len(names):
            raise ValueError(f"expected terms with distinct names, got {names}")
        pairs: list[tuple[str, Term | None]] = [*terms.items(), *((t.name, t) for t in kept)]
        for name, term in pairs:
            if term is not None:
                term.build(setting)
            self.register_module(name, term)
        self._term_names = tuple(n for n in names if getattr(self, n) is not None)

    # ------------------------------------------------------------------ settings

    def __getattr__(self, name: str) -> Any:
        if name in FLAT_ATTRIBUTES:  # the flat attributes, deprecated
            return read_flat_attribute(self._modules, name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in FLAT_ATTRIBUTES:
            write_flat_attribute(self._modules, name, value)
            return
        super().__setattr__(name, value)

    @property
    def terms(self) -> dict[str, Term]:
        """The active terms by name, in the order they run (MIPD first)."""
        return {name: getattr(self, name) for name in self._term_names}

    @property
    def fusion_head(self) -> Callable[..., Tensor]:
        """The user's fusion head (not a submodule of this module)."""
        return self._fusion.head  # type: ignore[return-value]

    @property
    def batched(self) -> bool | None:
        """One stacked fusion-head call (True), one call per block (False) or automatic (None)."""
        return self._fusion.batched

    @batched.setter
    def batched(self, value: bool | None) -> None:
        self._fusion.batched = value

    @property
    def seed(self) -> int:
        """The seed of the private generators."""
        return self._random.seed

    def subsets_for(self, num_modalities: int) -> tuple[tuple[int, ...], ...]:
        """The subsets the MIPD term perturbs for ``num_modalities`` modalities."""
        if self.mipd is None:
            raise ValueError("this regularizer has no MIPD term, so it perturbs no subsets")
        return self.mipd.subsets_for(num_modalities)

    def manual_seed(self, seed: int) -> MCRRegularizer:
        """Restart the private generators from ``seed`` (like ``torch.Generator.manual_seed``).

        Example:
            >>> mcr = MCRRegularizer(torch.nn.Linear(8, 3), num_classes=3)
            >>> mcr.manual_seed(0).seed
            0
        """
        self._random.restart(seed)
        return self

    def get_extra_state(self) -> dict[str, object]:
        """The randomness of MCR, saved in ``state_dict()``: the seed and the generators' states.

        ``generators`` maps a device (``"cpu"``, ``"cuda:0"``) to the private generator's state
        there (uint8 tensor); ``generator`` is the state of a user-supplied ``generator``.
        """
        user = self.generator.get_state() if self.generator is not None else None
        return {
            "seed": self.seed,
            "generators": self._random.states(),
            "generator": user,
            "subsets": self._random.subsets.getstate(),
        }

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
        self._random.load(int(state["seed"]), dict(state["generators"]), state.get("subsets"))
        user = state.get("generator")
        if self.generator is not None and isinstance(user, Tensor):
            self.generator.set_state(user.detach().cpu())

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r} (k={self.k}), task={self.task!r}"

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        latents: Latents | FusionInputs | CallRecord,
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
                and (unless ``logits`` is passed) the logits: ``mcr(fusion_inputs, y)``; or the
                arguments of a fusion call of any form, ``FusionCall(...).of(*args,
                **kwargs)`` (:mod:`mcr_reg.calls`): MCR permutes the latents among them and
                passes the other arguments through.
            labels: ``(B,)`` integer classes (classification); ``(B,)`` or ``(B, 1)`` floats
                (regression) or 0/1 values (binary).
            logits: the fused prediction ``fusion_head(*latents)`` the task loss used; only read
                (detached) by the CEB term, checked for shape and, with ``check_values``,
                compared with MCR's own unperturbed pass (a one-time ``RuntimeWarning`` when they
                differ: the latents are then not the head's inputs). Omitted: MCR uses its own
                unperturbed pass.
            permutations: optional ``(P, M, B)`` LongTensor; row ``[p, m]`` permutes modality m in
                draw p (ignored where m is not perturbed). Only with the MIPD term's
                ``perturbation="permutation"``.
            unimodal_logits: optional per-modality predictions ``(B, C)`` for the unimodal term,
                when MCR does not own unimodal heads (the unimodal term).
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
                logits = self._select(captured, None)
                check_captured_output(logits, self.rule.width(self.num_classes))
        binding = None
        if isinstance(latents, CallRecord):  # a fusion call of any form, read as a tree
            binding = latents.bind(batch_of(labels), self.latent_dims)
            latents = dict(zip(binding.names, binding.latents))
        with bound(self._fusion.call, binding):
            step = self._step(latents, labels, logits, permutations, unimodal_logits,
                              perturbed_latents)  # fmt: skip
            return self._run_terms(step)

    def _step(
        self,
        latents: Latents,
        labels: Tensor,
        logits: Tensor | None,
        permutations: Tensor | None,
        unimodal_logits: Sequence[Tensor] | None,
        perturbed_latents: Sequence[Tensor | None] | Mapping[str, Tensor] | None,
    ) -> StepInputs:
        """The step's inputs, checked once for every term."""
        names, zs = split_latents(latents)
        batch, labels, width = check_step_inputs(self, names, zs, labels, logits)
        perturbed = check_perturbed_latents(perturbed_latents, names, zs)
        if permutations is not None:  # checked even when no MIPD term uses them
            values = self.check_values and not compiling()
            check_permutations(permutations, len(zs), batch, zs[0].device, values)
        step = StepInputs(
            names=names, latents=zs, pooled=[MF.pool_latent(z, self.feature_axis) for z in zs],
            labels=labels, logits=logits, task=self.rule, width=width, fusion=self._fusion,
            k=self.k, generator=self.generator, private=self._random,
            permutations=permutations, perturbed=perturbed, unimodal_logits=unimodal_logits,
        )  # fmt: skip
        for term in self.terms.values():
            term.check(step)
        return step

    def _run_terms(self, step: StepInputs) -> MCROutput:
        """Every term's value on ``step``, weighted and summed."""
        values: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            value = term(step)
            if value is not None:
                values[name] = value
            if name == "mipd" and step.logits is not None and step.reference is not None:
                compare_logits(self, step.logits, step.reference)
        importance = step.importance
        if importance is None:
            importance = torch.full((len(step.latents),), float("nan"), device=step.labels.device)
        out = self._output(values, step.latents[0], importance, step.names, step.own_unimodal)
        self._audit.observe(self, step.names, step.latents, out.loss)
        return out

    def _output(
        self,
        values: dict[str, Tensor],
        like: Tensor,
        importance: Tensor,
        names: tuple[str, ...],
        own_uni: tuple[Tensor, ...] | None,
    ) -> MCROutput:
        total: Tensor | None = None
        for name, value in values.items():
            weight = self.terms[name].weight
            weighted = value if weight == 1.0 else weight * value
            total = weighted if total is None else total + weighted
        if total is None or not total.dtype.is_floating_point or total.dtype.itemsize < 4:
            zero = like.new_zeros((), dtype=torch.float32)
            total = zero if total is None else total + zero
        if self._probe is not None:
            total = self._probe(total)
        return MCROutput(
            loss=total,
            terms={name: value.detach() for name, value in values.items()},
            importance=importance,
            modalities=names,
            unimodal_logits=own_uni,
        )

    # ------------------------------------------------------------------ inputs and checks

    def _select(self, value: object, batch: int | None) -> Tensor:
        """The prediction in what the fusion head returned (``output=``)."""
        try:
            return select_output(value, self.output, self.rule.width(self.num_classes))
        except ManyOutputsError as err:
            raise many_outputs_error(err.what, err.hint, batch) from None


def _moved_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: object) -> None:
    """Read a state_dict saved before MCR's own heads moved into its terms: their keys are
    renamed in place (``unimodal_heads.0.weight`` -> ``unimodal.heads.0.weight``)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        for before, now in _MOVED_KEYS.items():
            if key.startswith(prefix + before):
                state_dict[prefix + now + key[len(prefix + before) :]] = state_dict.pop(key)
