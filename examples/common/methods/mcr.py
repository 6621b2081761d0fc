"""MCR: joint training plus the Multimodal Competition Regularizer of ``mcr_reg``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from examples.common.distributed import is_distributed
from examples.common.methods.base import Method, StepOutput
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec


class MCR(Method):
    """Joint task loss + ``MCRRegularizer`` on the latents (Kontras et al., Algorithm 1).

    ``L = L(f_c(z), y) + lambda_M L_MIPD + lambda_con L_Con + lambda_ceb L_CEB + lambda_uni L_uni``
    with the gradient routing of the chosen game strategy. All hyper-parameters are passed to
    :class:`mcr_reg.MCRRegularizer` unchanged (``num_classes`` and ``latent_dims`` come from
    the task and the model; ``gather_distributed`` is on under ``torch.distributed``).

    Hyper-parameters (defaults: the package's, greedy strategy):
        strategy, mipd_weight, contrastive_weight, ceb_weight, unimodal_weight,
        num_permutations, temperature, perturbation, subsets, projection_dim, detach_reference.
    """

    name: ClassVar[str] = "mcr"
    defaults: ClassVar[dict[str, Any]] = {
        "strategy": "greedy",
        "mipd_weight": 0.1,
        "contrastive_weight": 1.0,
        "ceb_weight": 0.0,
        "unimodal_weight": 0.0,
        "num_permutations": 32,
        "temperature": 0.5,
        "perturbation": "permutation",
        "subsets": "all",
        "projection_dim": None,
        "detach_reference": False,
    }

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        try:
            from mcr_reg import MCRRegularizer
        except ImportError as err:  # pragma: no cover - depends on the installation
            raise ImportError(
                "method 'mcr' needs the mcr_reg package (pip install -e . at the repo root)"
            ) from err
        kwargs = dict(self.options)
        strategy = kwargs.pop("strategy")
        if isinstance(strategy, str) and strategy not in ("greedy", "independent", "collaborative"):
            strategy = float(strategy)  # a numeric k given as text on the command line
        self.mcr = MCRRegularizer(
            model.fusion_head,
            strategy=strategy,
            task=task.kind,
            num_classes=task.num_classes if task.kind == "classification" else None,
            latent_dims=tuple(model.latent_dims[m] for m in model.modalities),
            gather_distributed=is_distributed(),
            **kwargs,
        )

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        outputs, latents = self.model(batch)
        labels = batch["label"]
        task_loss = self.task.loss(outputs, labels)
        out = self.mcr(latents, labels, outputs)
        terms = {"task": task_loss.detach()}
        terms.update({f"mcr/{k}": v for k, v in out.terms.items()})
        return StepOutput(task_loss + out.loss, outputs, terms, importance=out.importance)
