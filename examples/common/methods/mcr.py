"""MCR: joint training plus the Multimodal Competition Regularizer of ``mcr_reg``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from examples.common.distributed import is_distributed
from examples.common.methods.base import Method, StepOutput
from examples.common.methods.unimodal import average_outputs
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec
from mcr_reg import MCRRegularizer
from mcr_reg.functional import STRATEGIES, pool_latent
from mcr_reg.terms import CEB, MIPD, Contrastive, Term, Unimodal

#: MCRRegularizer arguments the method sets itself (from the task, the model and the run), or
#: that a flat configuration cannot hold (term objects are built from the options below)
_SET_BY_METHOD = (
    "fusion_head",
    "task",
    "num_classes",
    "latent_dims",
    "generator",
    "seed",
    "mipd",
    "contrastive",
    "ceb",
    "unimodal",
    "extra_terms",
)
#: the terms' options as flat hyper-parameters (a config or a tuning grid holds scalars):
#: term -> {option of the term: name of the hyper-parameter}
_TERM_OPTIONS: dict[type[Term], dict[str, str]] = {
    MIPD: {
        "weight": "mipd_weight",
        "num_permutations": "num_permutations",
        "subsets": "subsets",
        "sampled_subsets": "sampled_subsets",
        "perturbation": "perturbation",
        "noise_scale": "noise_scale",
        "perturbed_rows": "perturbed_rows",
        "head_gradient": "head_gradient",
        "detach_reference": "detach_reference",
    },
    Contrastive: {
        "weight": "contrastive_weight",
        "kind": "contrastive",
        "temperature": "temperature",
        "projection_dim": "projection_dim",
    },
    CEB: {"weight": "ceb_weight", "hidden_dim": "ceb_hidden_dim"},
    Unimodal: {"weight": "unimodal_weight"},
}
#: CEB is off unless its weight is set: its hyper-parameter's default is 0
_OFF_BY_DEFAULT = {"ceb_weight": 0.0}

#: Options of the method itself (not passed to ``MCRRegularizer``) and their defaults.
_METHOD_DEFAULTS: dict[str, Any] = {"init": "scratch", "finetune_lr_scale": 0.1}
_INITS = ("scratch", "unimodal")


class MCR(Method):
    """Joint task loss + ``MCRRegularizer`` on the latents (Kontras et al., Algorithm 1).

    ``L = L(f_c(z), y) + lambda_M L_MIPD + lambda_con L_Con + lambda_ceb L_CEB + lambda_uni L_uni``
    with the gradient routing of the chosen game strategy. Every keyword argument of
    :class:`mcr_reg.MCRRegularizer` except ``task``, ``num_classes``, ``latent_dims``,
    ``gather_distributed``, ``generator`` and ``seed`` is a hyper-parameter of this method, with
    the package's default (``strategy`` comes from ``--strategy``). ``gather_distributed`` is on
    under ``torch.distributed``; the permutations are seeded from ``--seed`` and MCR keeps its
    generator state in its own ``state_dict``, so a resumed run draws the same permutations as
    an uninterrupted one.

    Hyper-parameters of the method itself:
        init: ``"scratch"`` (default): one ``"joint"`` stage from randomly initialised
            encoders. ``"unimodal"``: the released recipe (the authors' ``--pre`` runs;
            docs/examples/training-loop.md): stages ``("unimodal", "joint")``. First each
            encoder trains alone with MCR's own unimodal-term head as its classifier (one
            early-stopping track per modality) at ``lr / finetune_lr_scale``; then the whole
            multimodal model (those encoders, those heads, a fresh fusion head) trains with MCR
            at ``lr``. With the default scale 0.1 and a config ``lr`` of 1e-4 that is the
            released 1e-3 for the unimodal models and 1e-4 for MCR.
        finetune_lr_scale: the joint stage's learning rate as a fraction of the unimodal
            stage's (default 0.1, "one magnitude lower"); ignored for ``init="scratch"``.
    """

    name: ClassVar[str] = "mcr"

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        params = inspect.signature(MCRRegularizer.__init__).parameters
        defaults = {
            n: p.default
            for n, p in params.items()
            if n != "self" and n not in _SET_BY_METHOD and p.kind is p.KEYWORD_ONLY
        }
        for term, options in _TERM_OPTIONS.items():
            term_params = inspect.signature(term.__init__).parameters
            defaults.update({flat: term_params[option].default for option, flat in options.items()})
        return {**defaults, **_OFF_BY_DEFAULT, **_METHOD_DEFAULTS}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        kwargs = dict(self.options)
        init = kwargs.pop("init")
        if init not in _INITS:
            raise ValueError(f"expected init in {list(_INITS)}, got {init!r}")
        scale = kwargs.pop("finetune_lr_scale")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            raise ValueError(f"expected finetune_lr_scale to be a number > 0, got {scale!r}")
        strategy = kwargs.pop("strategy")
        if isinstance(strategy, str) and strategy not in STRATEGIES:
            strategy = float(strategy)  # a numeric k given as text on the command line
        terms = _terms(kwargs)
        self.mcr = MCRRegularizer(
            model.fusion_head,
            strategy=strategy,
            task=task.kind,
            num_classes=task.num_classes if task.kind == "classification" else None,
            latent_dims=tuple(model.latent_dims[m] for m in model.modalities),
            seed=0,
            **terms,
            **kwargs,
        )
        self.pretrain = init == "unimodal"
        if self.pretrain:
            if self.mcr.unimodal is None or self.mcr.unimodal.heads is None:
                raise ValueError(
                    "init='unimodal' trains MCR's unimodal-term heads first and keeps them; "
                    f"it needs unimodal_weight > 0, got {self.options['unimodal_weight']}"
                )
            self.stages = ("unimodal", "joint")

    def set_seed(self, seed: int) -> None:
        self.mcr.manual_seed(int(seed))

    # ----------------------------------------------------------------- stages
    def _unimodal_heads(self) -> nn.ModuleList | None:
        """MCR's own unimodal heads (the unimodal term's), if it has them."""
        return self.mcr.unimodal.heads if self.mcr.unimodal is not None else None

    def _unimodal(self, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's prediction by MCR's own unimodal head (the f_{c_m} of eq. 1)."""
        heads = self._unimodal_heads()
        assert heads is not None
        return {
            m: head(pool_latent(latents[m]))
            for m, head in zip(self.model.modalities, heads, strict=True)
        }

    def begin_stage(self, stage: str) -> None:
        if not self.pretrain:
            return
        for p in self.model.encoders.parameters():
            p.requires_grad_(True)

    def param_groups(self, stage: str) -> list[dict[str, Any]]:
        named: dict[str, list[nn.Parameter]] = {
            f"encoder:{m}": list(self.model.encoders[m].parameters()) for m in self.model.modalities
        }
        if self.pretrain and stage == "unimodal":
            heads = self._unimodal_heads()
            assert heads is not None
            named["method"] = list(heads.parameters())
            up = 1.0 / float(self.options["finetune_lr_scale"])
            return self._groups(named, {name: up for name in named})
        named["fusion"] = list(self.model.fusion_head.parameters())
        named["method"] = list(self.mcr.parameters())
        return self._groups(named, {})

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        if self.pretrain and stage == "unimodal":
            uni = self._unimodal(self.model.encode(batch))
            loss, terms = self.unimodal_loss(uni, batch["label"])
            return StepOutput(loss, self._combine(uni), terms)
        outputs, latents = self.model(batch)
        labels = batch["label"]
        task_loss = self.task.loss(outputs, labels)
        out = self.mcr(latents, labels, outputs)  # the one added line: MCR's loss terms
        terms = {"task": task_loss.detach()}
        terms.update({f"mcr/{k}": v for k, v in out.terms.items()})
        return StepOutput(task_loss + out.loss, outputs, terms, importance=out.importance)

    def heads(self, latents: Mapping[str, Tensor], stage: str):
        if self.pretrain and stage == "unimodal":
            uni = self._unimodal(latents)
            return self._combine(uni), uni
        fused = self.model.fuse(latents)
        if self._unimodal_heads() is None:
            return fused, None
        return fused, self._unimodal(latents)

    def _combine(self, uni: Mapping[str, Tensor]) -> Tensor:
        """Unimodal stage output: the mean of the unimodal models' probabilities."""
        return average_outputs(self.task, list(uni.values()))

    def tracks(self, stage: str) -> dict[str, tuple[str, ...]]:
        if self.pretrain and stage == "unimodal":
            return {
                m: (f"model.encoders.{m}.", f"mcr.unimodal.heads.{i}.")
                for i, m in enumerate(self.model.modalities)
            }
        return super().tracks(stage)

    def monitor(self, stage: str, val: Mapping[str, Any]) -> dict[str, float]:
        if self.pretrain and stage == "unimodal":
            return {m: float(val["unimodal"][m][self.task.monitor]) for m in self.model.modalities}
        return super().monitor(stage, val)


def _terms(options: dict[str, Any]) -> dict[str, Term | bool]:
    """The term objects from the flat hyper-parameters, which are taken out of ``options``; a
    weight of 0 leaves a term out."""
    terms: dict[str, Term | bool] = {}
    for term, names in _TERM_OPTIONS.items():
        values = {option: options.pop(flat) for option, flat in names.items()}
        if term is Contrastive:
            values["gather_distributed"] = is_distributed()
        terms[term.name] = term(**values) if values["weight"] > 0 else False
    return terms
