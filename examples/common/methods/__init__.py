"""The training methods compared in the paper, behind one interface (see ``base.Method``).

``build_method(name, model, task, options)`` returns the method named by ``--method``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from examples.common.methods.base import Method, StepOutput, UnimodalHeads
from examples.common.methods.joint import Joint, MultiLoss
from examples.common.methods.mcr import MCR
from examples.common.methods.mmcosine import CosineFusionHead, MMCosine
from examples.common.methods.modulation import AGM, MLB, OGMGE, shapley_responses
from examples.common.methods.unimodal import Ensemble, UniPreFinetuned, UniPreFrozen
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec

METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        Joint,
        MultiLoss,
        Ensemble,
        UniPreFrozen,
        UniPreFinetuned,
        OGMGE,
        AGM,
        MLB,
        MMCosine,
        MCR,
    )
}


def build_method(
    name: str,
    model: MultimodalModel,
    task: TaskSpec,
    options: Mapping[str, Any] | None = None,
) -> Method:
    """Wrap ``model`` in the training method ``name`` with hyper-parameters ``options``.

    Raises:
        ValueError: for an unknown method name or an option the method does not accept.
    """
    if name not in METHOD_CLASSES:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHOD_CLASSES)}")
    return METHOD_CLASSES[name](model, task, **dict(options or {}))


__all__ = [
    "AGM",
    "MCR",
    "METHOD_CLASSES",
    "MLB",
    "OGMGE",
    "CosineFusionHead",
    "Ensemble",
    "Joint",
    "MMCosine",
    "Method",
    "MultiLoss",
    "StepOutput",
    "UniPreFinetuned",
    "UniPreFrozen",
    "UnimodalHeads",
    "build_method",
    "shapley_responses",
]
