"""Evaluation: :func:`evaluate` runs a method's heads over a loader and gathers the outputs,
labels, unimodal outputs and the permutation-importance diagnostic from every rank."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from examples.common.data import move_to_device
from examples.common.distributed import all_gather_objects
from examples.common.importance import permutation_importance
from examples.common.methods import Method
from examples.common.outcomes import EvalOutputs


@torch.no_grad()
def evaluate(
    method: Method,
    loader: Iterable[Any],
    stage: str,
    *,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
    importance_seed: int | None = 0,
) -> EvalOutputs:
    """Run the method's evaluation heads over ``loader``.

    Args:
        method: the trained method (put in eval mode here).
        loader: batches ``{modality: tensor, "label": tensor}``.
        stage: which stage's heads to use (e.g. ``"unimodal"`` during ensemble training).
        device: where to run.
        max_batches: stop after this many batches (smoke runs).
        importance_seed: seed of the permutations of the importance diagnostic; ``None``
            skips the diagnostic.
    """
    method.eval()
    device = torch.device(device)
    regression = method.task.kind == "regression"
    gen = torch.Generator().manual_seed(importance_seed) if importance_seed is not None else None
    outs: list[Tensor] = []
    labels: list[Tensor] = []
    unis: dict[str, list[Tensor]] | None = None
    imp_sum = torch.zeros(len(method.model.modalities), dtype=torch.float64)
    n_imp = 0

    def head(z: Mapping[str, Tensor]) -> Tensor:
        return method.heads(z, stage)[0]

    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = move_to_device(batch, device)
        latents = method.encode(batch)
        out, uni = method.heads(latents, stage)
        outs.append(out.float().cpu())
        labels.append(batch["label"].cpu())
        if uni is not None:
            unis = unis if unis is not None else {m: [] for m in uni}
            for m, o in uni.items():
                unis[m].append(o.float().cpu())
        if gen is not None and out.shape[0] >= 2:
            imp = permutation_importance(head, latents, regression=regression, generator=gen)
            imp_sum += imp.double() * out.shape[0]
            n_imp += out.shape[0]
    local = (
        torch.cat(outs) if outs else torch.empty(0),
        torch.cat(labels) if labels else torch.empty(0),
        {m: torch.cat(v) for m, v in unis.items()} if unis is not None else None,
        imp_sum,
        n_imp,
    )
    parts = all_gather_objects(local)
    outputs = torch.cat([p[0] for p in parts if p[0].numel()])
    label_t = torch.cat([p[1] for p in parts if p[1].numel()])
    unimodal = None
    if parts[0][2] is not None:
        unimodal = {m: torch.cat([p[2][m] for p in parts if p[2] is not None]) for m in parts[0][2]}
    total_n = sum(p[4] for p in parts)
    importance = None
    if gen is not None and total_n > 0:
        importance = (sum(p[3] for p in parts) / total_n).float()
    return EvalOutputs(outputs, label_t, unimodal, importance)
