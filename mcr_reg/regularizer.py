"""The :class:`MCRRegularizer` module: settings, MCR's own small heads, input checks.

The mathematics lives in :mod:`mcr_reg.functional`; this module validates what comes in,
draws the perturbations, calls the functions and assembles :class:`MCROutput`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, cast

import torch
from torch import Tensor, nn

from mcr_reg import functional as MF
from mcr_reg._checks import (
    check_choice,
    check_class_labels,
    check_finite,
    check_head_output,
    check_int,
    check_latent_dims,
    check_latent_widths,
    check_latents,
    check_num_classes,
    check_one_output_labels,
    check_own_dtype,
    check_permutations,
    check_perturbed_latents,
    check_perturbed_rows,
    check_prediction,
    check_subsets_spec,
    check_tensor,
    check_unimodal_logits,
    check_weight,
    compiling,
    split_latents,
)
from mcr_reg._heads import (
    FusionHead,
    ManyOutputsError,
    Output,
    bound,
    current_binding,
    random_in_training,
    select_output,
)
from mcr_reg._messages import (
    UpdateWatch,
    many_outputs_error,
    warn_logits_differ,
    warn_nonfinite,
)
from mcr_reg._randomness import (
    PrivateGenerators,
    check_generator,
    draw_perturbations,
    generator_for,
)
from mcr_reg._terms import (
    TASK_RULES,
    CEBHead,
    MCROutput,
    importance_of,
    linear_per_modality,
    subset_sum,
)
from mcr_reg.audit import FirstStepAudit
from mcr_reg.calls import CallRecord, batch_axis_hint, batch_of, check_captured_output
from mcr_reg.capture import FusionInputs
from mcr_reg.distributed import gather_with_grad
from mcr_reg.functional.head_share import HeadRoute

__all__ = ["MCROutput", "MCRRegularizer"]

Strategy = Literal["greedy", "independent", "collaborative"]
Task = Literal["classification", "binary", "regression"]
Perturbation = Literal["permutation", "noise", "zero"]
Contrastive = Literal["ntxent", "supcon"]
PerturbedRows = Literal["all", "moved", "other_label"]
HeadDropout = Literal["train", "eval"]
Latents = Sequence[Tensor] | Mapping[str, Tensor]

_PERTURBATIONS = ("permutation", "noise", "zero")
_PERTURBED_ROWS = ("all", "moved", "other_label")
_HEAD_GRADIENTS = ("mean", "sum")
_CONTRASTIVE = ("ntxent", "supcon")


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
        subsets: ``"all"``, ``"singletons"``, ``"sampled"`` (every singleton plus
            ``sampled_subsets`` larger subsets drawn anew each step, weighted so that the MIPD
            term and its gradients are unbiased estimates of those of ``"all"``, see
            :func:`mcr_reg.functional.sample_subsets`; for many modalities) or a list of index
            tuples (see :func:`mcr_reg.functional.enumerate_subsets`).
        sampled_subsets: how many larger subsets ``subsets="sampled"`` draws per step.
        mipd_weight: λ_M.
        contrastive_weight: λ_con (0 turns the term off).
        ceb_weight: λ_ceb; > 0 needs ``latent_dims`` (and ``num_classes`` in classification).
        unimodal_weight: λ_uni. MCR owns one linear head per modality when ``latent_dims``
            (and ``num_classes`` in classification) are given; otherwise the term is active only
            when ``unimodal_logits`` are passed to ``forward``, and a call with neither warns
            once that the term is off (``unimodal_weight=0`` leaves it out without a warning).
        temperature: τ of the contrastive loss.
        contrastive: the form of L_Con: ``"ntxent"`` (default; paper eq. 11 and the released
            code: each positive against the negatives only,
            :func:`mcr_reg.functional.contrastive_ntxent`) or ``"supcon"`` (SupCon, the
            denominator over all other samples).
        head_gradient: what the fusion head's parameters receive from MIPD: ``"mean"``
            (default; the mean of the players' factors, ``c(S) = (|S| + k (M - |S|)) / M``
            times the gradient of L_S: nothing for greedy with two modalities, as in the paper's
            eq. 7 and the released code) or ``"sum"`` (the plain sum over subsets, under which
            the greedy head maximises every divergence). See docs/semantics.md, "The game".
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
        audit: watch the first two training steps for the silent integration mistakes
            (detached latents, MCR's loss in no backward, encoders' gradients rewritten after
            the backward, MCR's parameters in no optimizer, MCR's gradients missed by
            ``model.zero_grad()``) and warn once for each (:mod:`mcr_reg.audit`).
        head_dropout: dropout inside the fusion head during MCR's passes: ``"train"`` (default)
            runs the head as it is, so in training mode every reference and perturbed block
            draws its own dropout masks and the divergences include dropout noise; ``"eval"``
            runs every module of the head except BatchNorm with ``training=False`` for MCR's
            passes (``nn.Dropout`` layers and ``F.dropout(x, p, self.training)`` off), so MIPD
            compares the head's deterministic predictions. The task loss keeps its dropout
            either way. See docs/integration.md, "Dropout in the fusion head".

    Example:
        >>> import torch.nn.functional as F
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

    _fusion: FusionHead  # the fusion head as MCR calls it

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
        sampled_subsets: int = 8,
        audit: bool = True,
        head_dropout: HeadDropout = "train",
    ) -> None:
        super().__init__()
        self.output: Output = output
        check_choice(task, "task", tuple(TASK_RULES))
        width = 1 if TASK_RULES[task].one_output else num_classes
        # Held outside the module tree on purpose: the head's parameters belong to the user's
        # model, so they never appear in mcr.parameters() or mcr.state_dict().
        object.__setattr__(self, "_fusion", FusionHead(fusion_head, output, width, batched))
        self._set_call_checks(head_dropout, audit)
        self.k = MF.strategy_factor(strategy)
        self.strategy = strategy
        self.task: Task = task
        check_choice(perturbation, "perturbation", _PERTURBATIONS)
        self.perturbation: Perturbation = perturbation
        check_perturbed_rows(perturbed_rows, _PERTURBED_ROWS, perturbation)
        self.perturbed_rows: PerturbedRows = perturbed_rows
        self.num_classes = check_num_classes(num_classes, task)
        self.latent_dims = check_latent_dims(latent_dims)
        self.num_permutations = cast(
            int, check_int(num_permutations, "num_permutations", minimum=1)
        )
        self._set_subsets(subsets, sampled_subsets)
        self.mipd_weight = check_weight(mipd_weight, "mipd_weight")
        self.contrastive_weight = check_weight(contrastive_weight, "contrastive_weight")
        self.ceb_weight = check_weight(ceb_weight, "ceb_weight")
        self.unimodal_weight = check_weight(unimodal_weight, "unimodal_weight")
        self.noise_scale = check_weight(noise_scale, "noise_scale")
        if not temperature > 0:
            raise ValueError(f"expected a positive temperature, got {temperature}")
        self.temperature = float(temperature)
        check_choice(contrastive, "contrastive", _CONTRASTIVE)
        self.contrastive: Contrastive = contrastive
        check_choice(head_gradient, "head_gradient", _HEAD_GRADIENTS)
        self.head_gradient: MF.HeadGradient = head_gradient
        self.detach_reference = bool(detach_reference)
        self.gather_distributed = bool(gather_distributed)
        self.generator = check_generator(generator)
        self._random = PrivateGenerators(check_int(seed, "seed", none_ok=True))
        self.check_values, self.check_finite = bool(check_values), bool(check_finite)
        self.feature_axis = feature_axis
        self.contrastive_labels = contrastive_labels
        self._warned_logits = self._warned_nonfinite = self._warned_unimodal_off = False
        # set by mcr_reg.check_gradient_path while it runs the user's step
        self._probe: Callable[[Tensor], Tensor] | None = None
        self._build_own_heads(projection_dim, ceb_hidden_dim)

    # ------------------------------------------------------------------ settings helpers

    def _set_call_checks(self, head_dropout: HeadDropout, audit: bool) -> None:
        """Whether MCR's passes run the fusion head without dropout (``"eval"``), and the
        watches over the first steps (the audit, and MCR's parameters in no optimizer)."""
        check_choice(head_dropout, "head_dropout", ("train", "eval"))
        self.head_dropout: HeadDropout = head_dropout
        self._fusion.call.dropout_eval = head_dropout == "eval"  # type: ignore[attr-defined]
        self._updates = UpdateWatch()
        self._audit = FirstStepAudit(bool(audit))

    def _set_subsets(self, subsets: MF.SubsetSpec, sampled_subsets: int) -> None:
        """The perturbed subsets' setting, checked now where the number of modalities is known."""
        self.subsets_spec = subsets
        self._subsets: dict[int, tuple[tuple[int, ...], ...]] = {}
        self.sampled_subsets = cast(int, check_int(sampled_subsets, "sampled_subsets", minimum=1))
        if self.latent_dims is not None and subsets != "sampled":
            self.subsets_for(len(self.latent_dims))  # validate now
        else:
            check_subsets_spec(subsets)

    def _build_own_heads(self, projection_dim: int | None, ceb_hidden_dim: int) -> None:
        """MCR's own parameters, created here so that an optimizer built next is complete:
        projections for the contrastive term, the CEB head, one unimodal head per modality."""
        out_dim = self._output_width()
        dims = self.latent_dims
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
        self.ceb_head: CEBHead | None = None
        if self.ceb_weight > 0:
            missing = [n for n, v in (("latent_dims", dims), ("num_classes", out_dim)) if v is None]
            if missing:
                raise ValueError(
                    f"ceb_weight > 0 needs {' and '.join(missing)} to size the CEB head"
                )
            assert dims is not None and out_dim is not None
            self.ceb_head = CEBHead(out_dim, ceb_hidden_dim, sum(dims))
        self.unimodal_heads: nn.ModuleList | None = None
        if self.unimodal_weight > 0 and dims is not None and out_dim is not None:
            self.unimodal_heads = nn.ModuleList(nn.Linear(d, out_dim) for d in dims)

    @property
    def fusion_head(self) -> Callable[..., Tensor]:
        """The user's fusion head (not a submodule of this module)."""
        return cast(Callable[..., Tensor], self._fusion.head)

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
        """The perturbed subsets for ``num_modalities`` modalities (cached)."""
        if num_modalities not in self._subsets:
            self._subsets[num_modalities] = MF.enumerate_subsets(num_modalities, self.subsets_spec)
        return self._subsets[num_modalities]

    def _subsets_of_step(self, num_modalities: int) -> tuple[tuple[tuple[int, ...], ...], float]:
        """The perturbed subsets of this step and the weight of each larger subset's term (1
        except for ``subsets="sampled"``)."""
        if self.subsets_spec != "sampled":
            return self.subsets_for(num_modalities), 1.0
        if compiling():
            raise ValueError(
                "subsets='sampled' draws the subsets of every step in Python, which a compiled "
                "graph would freeze at its first draw: use subsets='all' or 'singletons' under "
                "torch.compile"
            )
        return MF.sample_subsets(num_modalities, self.sampled_subsets, self._random.subsets)

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
        return (
            f"strategy={self.strategy!r} (k={self.k}), head_gradient={self.head_gradient!r}, "
            f"task={self.task!r}, P={self.num_permutations}, subsets={self.subsets_spec!r}, "
            f"perturbation={self.perturbation!r}, perturbed_rows={self.perturbed_rows!r}, "
            f"weights(mipd={self.mipd_weight}, contrastive={self.contrastive_weight} "
            f"({self.contrastive}), ceb={self.ceb_weight}, unimodal={self.unimodal_weight})"
        )

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
                logits = self._select(captured, None)
                check_captured_output(logits, self._output_width())
        binding = None
        if isinstance(latents, CallRecord):  # a fusion call of any form, read as a tree
            binding = latents.bind(batch_of(labels), self.latent_dims)
            latents = dict(zip(binding.names, binding.latents))
        with bound(self._fusion.call, binding):
            return self._terms(
                latents, labels, logits, permutations, unimodal_logits,
                perturbed_latents,
            )  # fmt: skip

    def _terms(
        self,
        latents: Latents,
        labels: Tensor,
        logits: Tensor | None,
        permutations: Tensor | None,
        unimodal_logits: Sequence[Tensor] | None,
        perturbed_latents: Sequence[Tensor | None] | Mapping[str, Tensor] | None,
    ) -> MCROutput:
        """The terms of :meth:`forward`, once the latents are MCR's."""
        names, zs = split_latents(latents)
        batch, labels, out_dim = self._check_inputs(names, zs, labels, logits)
        subsets, weight = self._subsets_of_step(len(zs))
        extra = check_perturbed_latents(perturbed_latents, names, zs)
        if permutations is not None:
            self._check_given_permutations(permutations, len(zs), batch, zs[0].device)
        if unimodal_logits is not None:
            unimodal_logits = self._check_unimodal_logits(unimodal_logits, len(zs), batch)
        pooled = [MF.pool_latent(z, self.feature_axis) for z in zs]
        terms: dict[str, Tensor] = {}
        importance: Tensor | None = None
        reference: Tensor | None = None
        if self.mipd_weight > 0:  # L_MIPD (eq. 8-10) with the game (section 3.2)
            per_subset, reference = self._mipd_term(zs, labels, subsets, extra, permutations)
            check_head_output(reference, self.task, out_dim)
            if logits is not None:
                self._compare_logits(logits, reference)
            terms["mipd"] = -subset_sum(per_subset, len(zs), weight)
            importance = importance_of(per_subset.detach(), subsets, len(zs))
        if self.contrastive_weight > 0:  # L_Con (eq. 11/15)
            terms["contrastive"] = self._contrastive(pooled, labels, names)
        if self.ceb_head is not None:  # L_CEB (eq. 13)
            terms["ceb"] = self._ceb(zs, pooled, logits if logits is not None else reference)
        own_uni = None
        if self.unimodal_weight > 0:  # L_uni (Algorithm 1, line 4)
            stacked = None
            if self.unimodal_heads is not None:
                heads = cast(Sequence[nn.Linear], self.unimodal_heads)
                own_uni, stacked = linear_per_modality(heads, pooled)
            predictions = own_uni if own_uni is not None else unimodal_logits
            if predictions is not None:
                terms["unimodal"] = self._unimodal_loss(predictions, stacked, labels)
            elif not self._warned_unimodal_off and not compiling():
                self._warn_unimodal_off(pooled)
        if importance is None:
            importance = torch.full((len(zs),), float("nan"), device=zs[0].device)
        out = self._output(terms, zs[0], importance, names, own_uni)
        self._audit.observe(self, names, zs, out.loss)
        return out

    # ------------------------------------------------------------------ the terms

    def _mipd_term(
        self,
        zs: Sequence[Tensor],
        labels: Tensor,
        subsets: tuple[tuple[int, ...], ...],
        extra: list[Tensor | None],
        permutations: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """:func:`mcr_reg.functional.mipd` with this module's settings: ``(per_subset,
        reference)``."""
        generator = generator_for(zs[0].device, self.generator, self._random)
        perms, perturbed = draw_perturbations(
            self.perturbation, zs, extra, permutations, self.num_permutations,
            self.noise_scale, generator,
        )  # fmt: skip
        binding = current_binding(self._fusion.call)
        permuting = perms is not None and all(p is None for p in perturbed)
        if binding is not None and binding.has_followers and permuting:
            zs = binding.pack(zs)  # arguments that follow a latent move with its rows
        row_weights = None
        if self.perturbed_rows != "all":
            if perms is None or any(e is not None for e in extra):
                raise ValueError(
                    f"perturbed_rows={self.perturbed_rows!r} needs MCR's own permutations "
                    "for every modality; perturbed_latents were given"
                )
            row_weights = MF.permutation_row_mask(
                perms, subsets, self.perturbed_rows, self._contrastive_labels(labels)
            )
        head_share = (
            MF.head_factors(subsets, len(zs), self.k) if self.head_gradient == "mean" else None
        )

        def mipd(
            head: Callable[..., Tensor], batched: bool, route: HeadRoute
        ) -> tuple[Tensor, Tensor]:
            return MF.mipd(
                head, zs, subsets, permutations=perms, perturbed=perturbed, k=self.k,
                divergence=TASK_RULES[self.task].divergence,
                detach_reference=self.detach_reference, batched=batched,
                head_share=head_share, row_weights=row_weights, route=route,
            )  # fmt: skip

        try:
            return self._fusion.run(mipd)
        except ManyOutputsError as err:
            raise many_outputs_error(err.what, err.hint, int(zs[0].shape[0])) from None
        finally:
            if binding is not None:
                binding.packed = False

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
        tiled = torch.cat([con_labels] * len(feats))  # (M*B,)
        loss_fn = (
            MF.contrastive_ntxent if self.contrastive == "ntxent" else MF.supervised_contrastive
        )
        return loss_fn(stacked, tiled, temperature=self.temperature)

    def _ceb(self, zs: Sequence[Tensor], pooled: Sequence[Tensor], source: Tensor | None) -> Tensor:
        """The latents reconstructed from the (detached) prediction."""
        assert self.ceb_head is not None
        if source is None:
            with torch.no_grad():
                source = self._fusion.call(*zs)
        source = source.detach()
        if source.dim() == 1:
            source = source.unsqueeze(-1)
        head_dtype = next(self.ceb_head.parameters()).dtype
        return MF.ceb_reconstruction(self.ceb_head(source.to(head_dtype)), pooled)

    def _unimodal_loss(
        self, predictions: Sequence[Tensor], stacked: Tensor | None, labels: Tensor
    ) -> Tensor:
        """Σ_m of the task loss of modality m's prediction; from the ``(M, B, C)`` outputs of one
        batched product, as M times the mean loss over all M·B rows."""
        if stacked is not None:
            tiled = torch.cat([labels] * len(predictions))
            return self._task_loss(stacked.flatten(0, 1), tiled) * len(predictions)
        return torch.stack([self._task_loss(p, labels) for p in predictions]).sum()

    def _output(
        self,
        terms: dict[str, Tensor],
        like: Tensor,
        importance: Tensor,
        names: tuple[str, ...],
        own_uni: tuple[Tensor, ...] | None,
    ) -> MCROutput:
        weights = {
            "mipd": self.mipd_weight,
            "contrastive": self.contrastive_weight,
            "ceb": self.ceb_weight,
            "unimodal": self.unimodal_weight,
        }
        total: Tensor | None = None
        for name, value in terms.items():
            weighted = value if weights[name] == 1.0 else weights[name] * value
            total = weighted if total is None else total + weighted
        if total is None or not total.dtype.is_floating_point or total.dtype.itemsize < 4:
            zero = like.new_zeros((), dtype=torch.float32)
            total = zero if total is None else total + zero
        if self._probe is not None:
            total = self._probe(total)
        return MCROutput(
            loss=total,
            terms={name: value.detach() for name, value in terms.items()},
            importance=importance,
            modalities=names,
            unimodal_logits=own_uni,
        )

    def _contrastive_labels(self, labels: Tensor) -> Tensor:
        if self.contrastive_labels is not None:
            return self.contrastive_labels(labels)
        return TASK_RULES[self.task].classes(labels)

    def _task_loss(self, pred: Tensor, labels: Tensor) -> Tensor:
        return TASK_RULES[self.task].loss(pred, labels)

    # ------------------------------------------------------------------ inputs and checks

    def _output_width(self) -> int | None:
        return 1 if TASK_RULES[self.task].one_output else self.num_classes

    def _select(self, value: object, batch: int | None) -> Tensor:
        """The prediction in what the fusion head returned (``output=``)."""
        try:
            return select_output(value, self.output, self._output_width())
        except ManyOutputsError as err:
            raise many_outputs_error(err.what, err.hint, batch) from None

    def _check_inputs(
        self, names: Sequence[str], zs: Sequence[Tensor], labels: Tensor, logits: Tensor | None
    ) -> tuple[int, Tensor, int | None]:
        """Latents, labels and logits: ``(batch, labels, output width)``; and the checks that
        run once per step (dtype of MCR's heads, NaN latents, parameters nobody updates)."""
        hint = batch_axis_hint(names, zs, batch_of(labels))
        if hint is not None:
            raise ValueError(hint)
        batch, device = check_latents(names, zs)
        if self.latent_dims is not None:
            widths = [int(z.shape[MF.feature_axis_of(z, self.feature_axis)]) for z in zs]
            check_latent_widths(names, zs, widths, self.latent_dims)
        labels = check_tensor(labels, "labels")
        if labels.device != device:
            raise ValueError(f"expected labels on {device} like the latents, got {labels.device}")
        values = self.check_values and not compiling()
        if TASK_RULES[self.task].one_output:
            labels = check_one_output_labels(labels, batch, self.task, values)
        else:
            labels = check_class_labels(labels, batch, self.num_classes, values)
        out_dim = self._output_width()
        if logits is not None:
            out_dim = check_prediction(check_tensor(logits, "logits"), batch, self.task, out_dim)
        check_own_dtype(zs, next(self.parameters(), None))
        if not compiling():
            if self.check_finite:
                for n, z in zip(names, zs):
                    check_finite(z, f"latent {n!r}")
            elif values and not self._warned_nonfinite:
                self._warn_nonfinite(names, zs)
            self._updates.observe(
                list(self.parameters()),
                [p for m in self._fusion.modules() for p in m.parameters(recurse=False)],
            )
        return batch, labels, out_dim

    def _check_given_permutations(
        self, permutations: Tensor, m_count: int, batch: int, device: torch.device
    ) -> None:
        if self.perturbation != "permutation":
            raise ValueError(
                f"permutations were given but perturbation={self.perturbation!r}; "
                "they are only used with perturbation='permutation'"
            )
        values = self.check_values and not compiling()
        check_permutations(permutations, m_count, batch, device, values)

    def _check_unimodal_logits(
        self, unimodal_logits: Sequence[Tensor], m_count: int, batch: int
    ) -> list[Tensor]:
        if self.unimodal_heads is not None:
            raise ValueError(
                "unimodal_logits were given, but MCR owns unimodal heads (unimodal_weight > 0 "
                "with latent_dims); pass unimodal_weight=0 or build MCR without latent_dims"
            )
        return check_unimodal_logits(unimodal_logits, m_count, batch, self.task, self.num_classes)

    def _warn_unimodal_off(self, pooled: Sequence[Tensor]) -> None:
        """Once: unimodal_weight > 0, but there are no unimodal predictions to train."""
        self._warned_unimodal_off = True
        widths = tuple(int(z.shape[-1]) for z in pooled)
        missing = " and ".join(
            n
            for n, v in (("latent_dims", self.latent_dims), ("num_classes", self._output_width()))
            if v is None
        )
        warnings.warn(
            f"the unimodal term is off although unimodal_weight={self.unimodal_weight} > 0: MCR "
            f"has no unimodal heads (they need {missing}) and no unimodal_logits were passed. "
            f"Build MCR with latent_dims={widths} (the widths of these latents) to train its "
            "own heads, pass unimodal_logits=[...] to the call, or set unimodal_weight=0 to "
            "leave the term out on purpose. (Warned once.)",
            UserWarning,
            stacklevel=6,
        )

    def _warn_nonfinite(self, names: Sequence[str], zs: Sequence[Tensor]) -> None:
        """A value check (one host sync per call until it has warned once)."""
        finite = torch.stack([torch.isfinite(z).all() for z in zs])
        if bool(finite.all()):
            return
        self._warned_nonfinite = True
        warn_nonfinite([repr(n) for n, ok in zip(names, finite.tolist()) if not ok])

    def _compare_logits(self, logits: Tensor, reference: Tensor) -> None:
        """Warn once when ``logits`` differ from MCR's own ``fusion_head(*latents)``.

        A value check (one host sync): only with ``check_values``, never while compiling, and
        not for heads whose dropout or BatchNorm layers make two calls differ.
        """
        if self._warned_logits or not self.check_values or compiling():
            return
        if not logits.is_floating_point() or random_in_training(self._fusion.modules()):
            return
        ref = reference.detach().float().reshape(reference.shape[0], -1)
        got = logits.detach().float().reshape(ref.shape)
        eps = max(torch.finfo(reference.dtype).eps, torch.finfo(logits.dtype).eps)
        rel = max(8.0 * eps, 5e-3)  # float32: 5e-3; float16: 7.8e-3; bfloat16: 6.3e-2
        diff = (ref - got).abs().max()
        tol = rel * (1.0 + got.abs().max())
        if bool(diff > tol):
            self._warned_logits = True
            warn_logits_differ(float(diff), float(tol), logits.dtype, self.output)
