"""MCR: joint training plus the Multimodal Competition Regularizer of ``mcr_reg``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from examples.common.distributed import is_distributed
from examples.common.methods.base import Method, StepOutput
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
    under ``torch.distributed``; the permutation generator is seeded from ``--seed``.
    """

    name: ClassVar[str] = "mcr"

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        params = inspect.signature(_regularizer_class().__init__).parameters
        return {
            n: p.default
            for n, p in params.items()
            if n != "self" and n not in _SET_BY_METHOD and p.kind is p.KEYWORD_ONLY
        }

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        kwargs = dict(self.options)
        strategy = kwargs.pop("strategy")
        if isinstance(strategy, str) and strategy not in ("greedy", "independent", "collaborative"):
            strategy = float(strategy)  # a numeric k given as text on the command line
        self.seed = 0
        self._generator_device: torch.device | None = None
        self.mcr = _regularizer_class()(
            model.fusion_head,
            strategy=strategy,
            task=task.kind,
            num_classes=task.num_classes if task.kind == "classification" else None,
            latent_dims=tuple(model.latent_dims[m] for m in model.modalities),
            gather_distributed=is_distributed(),
            **kwargs,
        )

    def set_seed(self, seed: int) -> None:
        self.seed = int(seed)
        self._generator_device = None

    def _seed_generator(self, device: torch.device) -> None:
        if self._generator_device != device:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            self.mcr.generator = g
            self._generator_device = device

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        outputs, latents = self.model(batch)
        self._seed_generator(outputs.device)
        labels = batch["label"]
        task_loss = self.task.loss(outputs, labels)
        out = self.mcr(latents, labels, outputs)
        terms = {"task": task_loss.detach()}
        terms.update({f"mcr/{k}": v for k, v in out.terms.items()})
        return StepOutput(task_loss + out.loss, outputs, terms, importance=out.importance)

    def heads(self, latents: Mapping[str, Tensor], stage: str):
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
