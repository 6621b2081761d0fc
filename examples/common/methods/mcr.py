"""MCR: joint training plus the Multimodal Competition Regularizer of ``mcr_reg``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from examples.common.distributed import is_distributed
from examples.common.methods.base import Method, StepOutput, UnimodalHeads
from examples.common.methods.simple import average_outputs
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec

#: MCRRegularizer arguments the method sets itself (from the task, the model and the run)
_SET_BY_METHOD = (
    "fusion_head",
    "task",
    "num_classes",
    "latent_dims",
    "gather_distributed",
    "generator",
)

#: Options of the method itself (not passed to ``MCRRegularizer``) and their defaults.
_METHOD_DEFAULTS: dict[str, Any] = {"init": "scratch", "finetune_lr_scale": 0.1}
_INITS = ("scratch", "unimodal")


def _regularizer_class() -> Any:
    try:
        from mcr_reg import MCRRegularizer
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError(
            "method 'mcr' needs the mcr_reg package (pip install -e . at the repo root)"
        ) from err
    return MCRRegularizer


class MCR(Method):
    """Joint task loss + ``MCRRegularizer`` on the latents (Kontras et al., Algorithm 1).

    ``L = L(f_c(z), y) + lambda_M L_MIPD + lambda_con L_Con + lambda_ceb L_CEB + lambda_uni L_uni``
    with the gradient routing of the chosen game strategy. Every keyword argument of
    :class:`mcr_reg.MCRRegularizer` except ``task``, ``num_classes``, ``latent_dims``,
    ``gather_distributed`` and ``generator`` is a hyper-parameter of this method, with the
    package's default (``strategy`` comes from ``--strategy``). ``gather_distributed`` is on
    under ``torch.distributed``; the permutation generator is seeded from ``--seed`` and its
    state is part of the method's ``state_dict`` (so a resumed run draws the same
    permutations as an uninterrupted one).

    Hyper-parameters of the method itself:
        init: ``"scratch"`` (default): one ``"joint"`` stage from randomly initialised
            encoders. ``"unimodal"``: the paper's "initialized unimodal encoders" (Algorithm
            1; Table 3 uses unimodally pre-trained ResNets): stages ``("unimodal", "joint")``
            exactly like ``uni_pre_finetuned``: each encoder is first trained alone with its
            own linear head (own early-stopping track), then the joint stage trains with MCR.
        finetune_lr_scale: encoder learning-rate multiplier in the joint stage when
            ``init="unimodal"`` (default 0.1, the paper's "one magnitude lower" for
            pre-trained encoders); ignored for ``init="scratch"``.
    """

    name: ClassVar[str] = "mcr"

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        params = inspect.signature(_regularizer_class().__init__).parameters
        defaults = {
            n: p.default
            for n, p in params.items()
            if n != "self" and n not in _SET_BY_METHOD and p.kind is p.KEYWORD_ONLY
        }
        return {**defaults, **_METHOD_DEFAULTS}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        kwargs = dict(self.options)
        init = kwargs.pop("init")
        if init not in _INITS:
            raise ValueError(f"expected init in {list(_INITS)}, got {init!r}")
        scale = kwargs.pop("finetune_lr_scale")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale >= 0:
            raise ValueError(f"expected finetune_lr_scale to be a number >= 0, got {scale!r}")
        strategy = kwargs.pop("strategy")
        if isinstance(strategy, str) and strategy not in ("greedy", "independent", "collaborative"):
            strategy = float(strategy)  # a numeric k given as text on the command line
        self.seed = 0
        self._generator_device: torch.device | None = None
        self._pending_generator_state: Tensor | None = None
        self.mcr = _regularizer_class()(
            model.fusion_head,
            strategy=strategy,
            task=task.kind,
            num_classes=task.num_classes if task.kind == "classification" else None,
            latent_dims=tuple(model.latent_dims[m] for m in model.modalities),
            gather_distributed=is_distributed(),
            **kwargs,
        )
        self.pre: UnimodalHeads | None = None
        if init == "unimodal":
            self.pre = UnimodalHeads(model.latent_dims, task.out_dim)
            self.stages = ("unimodal", "joint")

    # ----------------------------------------------------------------- permutation generator
    def set_seed(self, seed: int) -> None:
        self.seed = int(seed)
        self._generator_device = None
        self._pending_generator_state = None

    def _seed_generator(self, device: torch.device) -> None:
        if self._generator_device != device:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            if self._pending_generator_state is not None:
                try:
                    g.set_state(self._pending_generator_state)
                except RuntimeError as err:
                    raise ValueError(
                        f"the checkpoint's MCR generator state does not fit a {device.type} "
                        f"generator (was the run resumed on another kind of device?): {err}"
                    ) from None
                self._pending_generator_state = None
            self.mcr.generator = g
            self._generator_device = device

    def get_extra_state(self) -> Tensor:
        """The permutation generator's state (a uint8 tensor; empty before its first draw)."""
        if self._generator_device is not None and self.mcr.generator is not None:
            return self.mcr.generator.get_state()
        if self._pending_generator_state is not None:
            return self._pending_generator_state.clone()
        return torch.empty(0, dtype=torch.uint8)

    def set_extra_state(self, state: Any) -> None:
        """Continue the permutation draws from ``state`` (from :meth:`get_extra_state`).

        The generator is re-created on the training device at the next step; an empty state
        restarts it from the seed.

        Raises:
            TypeError: if ``state`` is not a uint8 tensor.
        """
        if not isinstance(state, Tensor) or state.dtype != torch.uint8:
            got = state.dtype if isinstance(state, Tensor) else type(state).__name__
            raise TypeError(f"expected the MCR generator state as a uint8 tensor, got {got}")
        self._generator_device = None
        self._pending_generator_state = state.detach().cpu().clone() if state.numel() else None

    # ----------------------------------------------------------------- stages
    def begin_stage(self, stage: str) -> None:
        if self.pre is None:
            return
        for p in self.model.encoders.parameters():
            p.requires_grad_(True)
        for p in self.pre.parameters():
            p.requires_grad_(stage == "unimodal")

    def param_groups(self, stage: str) -> list[dict[str, Any]]:
        named: dict[str, list[nn.Parameter]] = {
            f"encoder:{m}": list(self.model.encoders[m].parameters()) for m in self.model.modalities
        }
        if self.pre is not None and stage == "unimodal":
            named["method"] = list(self.pre.parameters())
            return self._groups(named, {})
        named["fusion"] = list(self.model.fusion_head.parameters())
        named["method"] = list(self.mcr.parameters())
        scales: dict[str, float] = {}
        if self.pre is not None:
            scale = float(self.options["finetune_lr_scale"])
            scales = {f"encoder:{m}": scale for m in self.model.modalities}
        return self._groups(named, scales)

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        if self.pre is not None and stage == "unimodal":
            uni = self.pre(self.model.encode(batch))
            loss, terms = self.unimodal_loss(uni, batch["label"])
            return StepOutput(loss, self._combine(uni), terms)
        outputs, latents = self.model(batch)
        self._seed_generator(outputs.device)
        labels = batch["label"]
        task_loss = self.task.loss(outputs, labels)
        out = self.mcr(latents, labels, outputs)
        terms = {"task": task_loss.detach()}
        terms.update({f"mcr/{k}": v for k, v in out.terms.items()})
        return StepOutput(task_loss + out.loss, outputs, terms, importance=out.importance)

    def heads(self, latents: Mapping[str, Tensor], stage: str):
        if self.pre is not None and stage == "unimodal":
            uni = self.pre(latents)
            return self._combine(uni), uni
        fused = self.model.fuse(latents)
        heads = getattr(self.mcr, "unimodal_heads", None)
        if heads is None:
            return fused, None
        from mcr_reg.functional import pool_latent

        uni = {
            m: head(pool_latent(latents[m]))
            for m, head in zip(self.model.modalities, heads, strict=True)
        }
        return fused, uni

    def _combine(self, uni: Mapping[str, Tensor]) -> Tensor:
        """Unimodal stage output: the mean of the unimodal models' probabilities."""
        return average_outputs(self.task, list(uni.values()))

    def tracks(self, stage: str) -> dict[str, tuple[str, ...]]:
        if self.pre is not None and stage == "unimodal":
            return {m: (f"model.encoders.{m}.", f"pre.heads.{m}.") for m in self.model.modalities}
        return super().tracks(stage)

    def monitor(self, stage: str, val: Mapping[str, Any]) -> dict[str, float]:
        if self.pre is not None and stage == "unimodal":
            return {m: float(val["unimodal"][m][self.task.monitor]) for m in self.model.modalities}
        return super().monitor(stage, val)
