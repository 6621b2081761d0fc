"""Balancing by modulation: OGM-GE, AGM and MLB, generalised to M modalities.

All three measure, during training, how well each modality alone already explains the labels
and slow down the modalities that are ahead. They differ in where the unimodal evidence comes
from and in what they modulate; see docs/baselines.md for the papers and hyper-parameters.

* OGM-GE: evidence from the fusion head's per-modality share; modulates each encoder's
  learning rate (down only) and adds Gaussian noise to its gradient.
* AGM: evidence from zero-masking Shapley values of the fusion head; re-weights per-modality
  task losses on those Shapley responses (up and down), with a running average.
* MLB: evidence from separate unimodal heads trained with a multi-loss; modulates each
  encoder's learning rate up and down.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from examples.common.distributed import all_reduce_sum
from examples.common.methods.base import (
    Method,
    StepOutput,
    UnimodalHeads,
    unimodal_outputs_from_fusion,
)
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec


def discrepancy_ratios(scores: Tensor) -> Tensor:
    """``rho_m = s_m / mean_{j != m} s_j`` for scores ``(M,)``; M = 2 gives ``s_1 / s_2``."""
    m = scores.numel()
    others = (scores.sum() - scores) / (m - 1)
    return scores / others.clamp_min(1e-12)


def batch_scores(task: TaskSpec, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
    """Summed true-class score per modality over the batch (summed over ranks), ``(M,)``."""
    local = torch.stack([task.true_class_score(o.detach(), labels).sum() for o in outputs.values()])
    return all_reduce_sum(local)


class _EncoderLrModulation(Method):
    """Shared part of OGM-GE and MLB: a per-encoder lr multiplier set before each step."""

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        self.register_buffer("coefficients", torch.ones(len(model.modalities)), persistent=False)
        self.epoch = 0

    def begin_epoch(self, stage: str, epoch: int) -> None:
        self.epoch = epoch

    def active(self) -> bool:
        start = int(self.options.get("start_epoch", 0))
        end = self.options.get("end_epoch")
        return self.epoch >= start and (end is None or self.epoch < int(end))

    def before_optimizer_step(self, optimizer: torch.optim.Optimizer, stage: str) -> None:
        coeffs = self.coefficients if self.active() else torch.ones_like(self.coefficients)
        by_name = {f"encoder:{m}": float(c) for m, c in zip(self.model.modalities, coeffs)}
        for group in optimizer.param_groups:
            if group.get("name") in by_name:
                group["lr_scale"] = by_name[group["name"]]

    def coefficient_terms(self) -> dict[str, Tensor]:
        return {f"coeff/{m}": c for m, c in zip(self.model.modalities, self.coefficients.clone())}


class OGMGE(_EncoderLrModulation):
    """On-the-fly Gradient Modulation with Generalisation Enhancement (Peng et al., CVPR 2022).

    For each batch, modality m's evidence is ``s_m = sum_i softmax(o_m(x_i))[y_i]`` with
    ``o_m`` its share of the fusion head's output. With ``rho_m = s_m / mean_{j != m} s_j``
    the encoder's learning rate is multiplied by ``k_m = 1 - tanh(alpha * rho_m)`` when
    ``rho_m > 1`` and by 1 otherwise. With ``ge=True`` Gaussian noise with the standard deviation
    of each encoder gradient tensor is added to it (the paper's approximation of SGD noise).

    Hyper-parameters:
        alpha: modulation strength (default 0.5).
        ge: add the generalisation-enhancement noise (default True).
        start_epoch, end_epoch: modulation window in epochs (default: every epoch).
    """

    name: ClassVar[str] = "ogm_ge"
    defaults: ClassVar[dict[str, Any]] = {
        "alpha": 0.5,
        "ge": True,
        "start_epoch": 0,
        "end_epoch": None,
    }

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        self._noise_generators: dict[torch.device, torch.Generator] = {}
        self.noise_seed = 0

    def set_seed(self, seed: int) -> None:
        self.noise_seed = int(seed)
        self._noise_generators.clear()

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        outputs, latents = self.model(batch)
        labels = batch["label"]
        loss = self.task.loss(outputs, labels)
        with torch.no_grad():
            shares = unimodal_outputs_from_fusion(self.model, latents)
            rho = discrepancy_ratios(batch_scores(self.task, shares, labels))
            alpha = float(self.options["alpha"])
            k = torch.where(rho > 1, 1 - torch.tanh(alpha * rho), torch.ones_like(rho))
            self.coefficients.copy_(k)
        terms = {"task": loss.detach(), **self.coefficient_terms()}
        return StepOutput(loss, outputs, terms)

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._noise_generators:
            g = torch.Generator(device=device)
            g.manual_seed(self.noise_seed)
            self._noise_generators[device] = g
        return self._noise_generators[device]

    def before_optimizer_step(self, optimizer: torch.optim.Optimizer, stage: str) -> None:
        super().before_optimizer_step(optimizer, stage)
        if not (self.options["ge"] and self.active()):
            return
        for p in self.model.encoders.parameters():
            if p.grad is None or p.grad.numel() < 2:
                continue
            g = self._generator(p.grad.device)
            noise = torch.randn(p.grad.shape, generator=g, device=p.grad.device, dtype=p.grad.dtype)
            p.grad.add_(noise * p.grad.std())


class MLB(_EncoderLrModulation):
    """Multi-Loss Balancing (Kontras et al., ICASSP 2024).

    Multi-loss training (a linear head per modality) whose unimodal heads supply the evidence
    ``s_m`` (mean true-class probability on the batch); each encoder's learning rate is then
    multiplied by ``k_m = 1 - tanh(alpha * (rho_m - 1))`` in ``(0, 2)``: modalities ahead are
    slowed down, modalities behind are sped up, and the modulation fades by itself once the
    unimodal heads perform alike (``rho_m -> 1``).

    Hyper-parameters:
        unimodal_weight: weight of the unimodal losses (default 1.0).
        alpha: modulation strength (default 1.0).
        start_epoch, end_epoch: modulation window in epochs (default: every epoch).
    """

    name: ClassVar[str] = "mlb"
    defaults: ClassVar[dict[str, Any]] = {
        "unimodal_weight": 1.0,
        "alpha": 1.0,
        "start_epoch": 0,
        "end_epoch": None,
    }

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        self.uni = UnimodalHeads(model.latent_dims, task.out_dim)

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        loss, outputs, uni, terms = self.multiloss_step(self.uni, batch)
        with torch.no_grad():
            rho = discrepancy_ratios(batch_scores(self.task, uni, batch["label"]))
            self.coefficients.copy_(1 - torch.tanh(float(self.options["alpha"]) * (rho - 1)))
        return StepOutput(loss, outputs, {**terms, **self.coefficient_terms()})

    def heads(self, latents: Mapping[str, Tensor], stage: str):
        return self.model.fuse(latents), self.uni(latents)


def shapley_responses(model: MultimodalModel, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Zero-masking Shapley decomposition of the fusion head's output, ``{m: (B, C)}``.

    ``v(S)`` is the fusion output with the latents outside S set to zero. The Shapley value
    ``phi_m = sum_{S not containing m} |S|! (M-|S|-1)! / M! * (v(S + m) - v(S))`` splits
    ``v(all) - v(empty)``; the mono-modal response is ``o_m = phi_m + v(empty) / M`` so that
    the responses sum to the full output. Costs ``2^M`` fusion-head calls (M <= 8).
    """
    names = list(model.modalities)
    m_count = len(names)
    if m_count > 8:
        raise ValueError(f"Shapley responses need 2^M head calls; expected M <= 8, got {m_count}")
    values: dict[frozenset[str], Tensor] = {}
    for r in range(m_count + 1):
        for subset in itertools.combinations(names, r):
            kept = frozenset(subset)
            zs = [latents[n] if n in kept else torch.zeros_like(latents[n]) for n in names]
            values[kept] = model.fusion_head(*zs)
    responses = {}
    for m in names:
        others = [n for n in names if n != m]
        phi = torch.zeros_like(values[frozenset()])
        for r in range(m_count):
            weight = math.factorial(r) * math.factorial(m_count - r - 1) / math.factorial(m_count)
            for subset in itertools.combinations(others, r):
                s = frozenset(subset)
                phi = phi + weight * (values[s | {m}] - values[s])
        responses[m] = phi + values[frozenset()] / m_count
    return responses


class AGM(Method):
    """Adaptive Gradient Modulation (Li et al., ICCV 2023), generalised to M modalities.

    Mono-modal responses ``o_m`` come from zero-masking Shapley values of the fusion head (see
    :func:`shapley_responses`; masking is done on the latents, so encoders run once). Each
    modality's evidence ``s_m`` is its mean true-class score, smoothed by a running average
    with ``momentum``. The loss is ``L(f(x), y) + sum_m c_m L(o_m, y)`` with
    ``c_m = min(exp(alpha * (mean_{j != m} s_j - s_m)), max_coeff)``: the gradient reaching a
    lagging modality through its own response is amplified, a leading one's damped.

    Hyper-parameters:
        alpha: modulation strength (default 1.0).
        momentum: running-average factor of the scores (default 0.9).
        max_coeff: upper bound on ``c_m`` (default 10).
    """

    name: ClassVar[str] = "agm"
    defaults: ClassVar[dict[str, Any]] = {"alpha": 1.0, "momentum": 0.9, "max_coeff": 10.0}

    def __init__(self, model: MultimodalModel, task: TaskSpec, **options: Any) -> None:
        super().__init__(model, task, **options)
        self.register_buffer("running_scores", torch.full((len(model.modalities),), math.nan))

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        latents = self.model.encode(batch)
        labels = batch["label"]
        outputs = self.model.fuse(latents)
        responses = shapley_responses(self.model, latents)
        with torch.no_grad():
            n = all_reduce_sum(torch.tensor(float(labels.shape[0]), device=labels.device))
            scores = batch_scores(self.task, responses, labels) / n
            beta = float(self.options["momentum"])
            if torch.isnan(self.running_scores).any():
                self.running_scores.copy_(scores)
            else:
                self.running_scores.mul_(beta).add_((1 - beta) * scores)
            s = self.running_scores
            others = (s.sum() - s) / (s.numel() - 1)
            coeff = torch.exp(float(self.options["alpha"]) * (others - s))
            coeff = coeff.clamp(max=float(self.options["max_coeff"]))
        task_loss = self.task.loss(outputs, labels)
        uni_losses = [self.task.loss(o, labels) for o in responses.values()]
        loss = task_loss + sum(c * v for c, v in zip(coeff, uni_losses))
        terms = {"task": task_loss.detach()}
        for m, c, v in zip(self.model.modalities, coeff, uni_losses):
            terms[f"coeff/{m}"] = c.detach()
            terms[f"uni/{m}"] = v.detach()
        return StepOutput(loss, outputs, terms)

    def heads(self, latents: Mapping[str, Tensor], stage: str):
        return self.model.fuse(latents), shapley_responses(self.model, latents)
