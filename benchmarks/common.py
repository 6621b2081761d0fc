"""Pieces shared by the benchmarks: the models, the training-step variants, timing and memory.

Models (the settings of the paper's ResNet and Transformer experiments):

* ``resnet18``: the CREMA-D model of :mod:`examples.av_common.model`, two torchvision ResNet-18
  encoders (audio spectrogram ``(1, F, T)``, video ``(3, frames, H, W)``) and a linear late
  fusion head, 6 classes. Full CREMA-D shapes are audio ``(1, 257, 188)`` and video
  ``(3, 3, 224, 224)``; the CPU runs use smaller ones (stated in every result).
* ``mosei``: the MOSEI V-A-T model of :mod:`examples.mosei.model`, one 5-layer Transformer
  encoder of width 40 per modality on ``(50, 35)``, ``(50, 74)`` and ``(50, 300)`` inputs,
  an MLP fusion head, sentiment regression.

Variants of one training step (forward, backward, Adam step), written as ``name`` or
``name:P``:

* ``joint``: the task loss of the fused output only.
* ``mcr:P``: joint + :class:`mcr_reg.MCRRegularizer` at the released setting of the data set
  with P permutation draws, value checks off (the method the package ships).
* ``input:P``: the same MCR loss, but every perturbed latent comes from *re-encoding permuted
  inputs* (``perturbed_latents=``), the input-space alternative the paper argues against. The
  encoders run P more times per modality; gradients flow through every re-encoding.
* ``ogm_ge``, ``agm``, ``mlb``: the modulation baselines of :mod:`examples.common.methods`.

All variants of one model share the model's weights (each has its own optimizer), so that a
run holds one copy of the encoders.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmarks.harness.timing import make_step, synchronize
from benchmarks.harness.timing import paired_ratios as paired_ratios  # re-exported for benchmarks
from benchmarks.harness.timing import quartiles as quartiles  # re-exported for benchmarks
from benchmarks.harness.timing import time_interleaved as time_interleaved  # re-exported
from examples.av_common.model import build_av_resnet18
from examples.common.methods import MCR, Method, StepOutput, build_method
from examples.common.model import MultimodalModel
from examples.common.task import TaskSpec
from examples.mosei.model import build_model as build_mosei_model
from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import MIPD

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Released MCR settings (docs/hyperparameters.md): CREMA-D ResNet-18 and MOSEI V-A-T Transformer.
RELEASED_MCR: dict[str, dict[str, Any]] = {
    "resnet18": {
        "strategy": "greedy",
        "num_permutations": 32,
        "subsets": "all",
        "mipd_weight": 0.1,
        "contrastive_weight": 1.0,
        "temperature": 0.5,
        "ceb_weight": 0.0,
        "unimodal_weight": 0.01,
    },
    "mosei": {
        "strategy": "greedy",
        "num_permutations": 32,
        "subsets": "all",
        "mipd_weight": 0.001,
        "contrastive_weight": 1.0,
        "temperature": 0.5,
        "ceb_weight": 1.0,
        "unimodal_weight": 0.001,
    },
}

VARIANT_LABELS = {
    "joint": "joint",
    "mcr": "MCR",
    "input": "MCR, input-space",
    "ogm_ge": "OGM-GE",
    "agm": "AGM",
    "mlb": "MLB",
}
MOSEI_FEATURES = {"vision": 35, "audio": 74, "text": 300}


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ModelConfig:
    """One benchmarked model at given input shapes.

    Attributes:
        name: ``"resnet18"`` or ``"mosei"``.
        batch: batch size B.
        inputs: per-sample input shape of each modality, in modality order.
        layers: Transformer layers per encoder (``mosei`` only).
    """

    name: str
    batch: int
    inputs: dict[str, tuple[int, ...]]
    layers: int = 5

    @staticmethod
    def resnet18(
        batch: int = 8,
        audio: Sequence[int] = (1, 128, 94),
        video: Sequence[int] = (3, 3, 112, 112),
    ) -> ModelConfig:
        if len(audio) != 3 or len(video) != 4:
            raise ValueError(
                f"expected audio (1, F, T) and video (3, frames, H, W), got {tuple(audio)} "
                f"and {tuple(video)}"
            )
        return ModelConfig("resnet18", batch, {"audio": tuple(audio), "video": tuple(video)})

    @staticmethod
    def mosei(batch: int = 32, steps: int = 50, layers: int = 5) -> ModelConfig:
        inputs = {m: (steps, f) for m, f in MOSEI_FEATURES.items()}
        return ModelConfig("mosei", batch, inputs, layers)

    def describe(self) -> dict[str, Any]:
        return {"batch": self.batch, "inputs": {m: list(s) for m, s in self.inputs.items()}} | (
            {"layers": self.layers} if self.name == "mosei" else {}
        )


@dataclass(frozen=True)
class Variant:
    """A training-step variant, parsed from ``"joint"``, ``"mcr:32"``, ``"input:8"``, ...."""

    method: str
    permutations: int | None = None

    KINDS: ClassVar[tuple[str, ...]] = tuple(VARIANT_LABELS)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        name, _, p = spec.partition(":")
        if name not in cls.KINDS:
            raise ValueError(f"expected a variant among {list(cls.KINDS)}, got {spec!r}")
        if name in ("mcr", "input"):
            if not p.isdigit() or int(p) < 1:
                raise ValueError(f"expected {name}:P with a positive integer P, got {spec!r}")
            return cls(name, int(p))
        if p:
            raise ValueError(f"variant {name!r} takes no P, got {spec!r}")
        return cls(name)

    @property
    def key(self) -> str:
        return self.method if self.permutations is None else f"{self.method}@{self.permutations}"

    @property
    def label(self) -> str:
        base = VARIANT_LABELS[self.method]
        return base if self.permutations is None else f"{base} (P={self.permutations})"


# --------------------------------------------------------------------------- models and data


def task_of(config: ModelConfig) -> TaskSpec:
    if config.name == "resnet18":
        return TaskSpec("classification", num_classes=6)
    return TaskSpec("regression", monitor="mae", monitor_mode="min")


def build_model(config: ModelConfig, device: torch.device, seed: int = 0) -> MultimodalModel:
    """The model of ``config`` on ``device``, initialised from ``seed``."""
    torch.manual_seed(seed)
    if config.name == "resnet18":
        model = build_av_resnet18(6)
    elif config.name == "mosei":
        features = {m: s[-1] for m, s in config.inputs.items()}
        model = build_mosei_model(features, num_layers=config.layers)
    else:
        raise ValueError(f"expected model 'resnet18' or 'mosei', got {config.name!r}")
    return model.to(device)


def make_batch(config: ModelConfig, device: torch.device, seed: int = 0) -> dict[str, Tensor]:
    """Random inputs of the configured shapes and labels of the model's task."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        m: torch.randn((config.batch, *shape), generator=g) for m, shape in config.inputs.items()
    }
    if config.name == "resnet18":
        batch["label"] = torch.randint(0, 6, (config.batch,), generator=g)
    else:
        batch["label"] = torch.rand(config.batch, generator=g) * 6 - 3
    return {k: v.to(device) for k, v in batch.items()}


def input_space_latents(
    model: MultimodalModel, batch: Mapping[str, Tensor], permutations: Tensor
) -> dict[str, Tensor]:
    """Perturbed latents obtained by permuting the *inputs* and running the encoders again.

    Args:
        model: encoders and fusion head.
        batch: inputs ``{modality: (B, ...)}``.
        permutations: ``(P, M, B)``; draw p of modality m re-encodes ``x_m[permutations[p, m]]``.

    Returns:
        ``{modality: (P, B, d_m)}``, each draw encoded in its own call of B samples (so batch
        statistics of BatchNorm layers are those of a normal batch), with gradients.
    """
    out = {}
    for i, m in enumerate(model.modalities):
        x = batch[m]
        encoder = model.encoders[m]
        out[m] = torch.stack([encoder(x[permutations[p, i]]) for p in range(permutations.shape[0])])
    return out


class InputSpaceMCR(MCR):
    """MCR whose perturbed latents come from re-encoding permuted inputs (benchmark only).

    The loss is the one of :class:`~examples.common.methods.MCR`; for encoders whose output for
    a sample does not depend on the rest of the batch (BatchNorm statistics are invariant to a
    permutation), it even has the same value. Only the cost differs: the encoders run
    ``1 + P`` times per modality instead of once.
    """

    name: ClassVar[str] = "mcr_input_space"

    def training_step(self, batch: Mapping[str, Tensor], stage: str) -> StepOutput:
        outputs, latents = self.model(batch)
        labels = batch["label"]
        device = outputs.device
        if getattr(self, "_perm_generator", None) is None:
            self._perm_generator = torch.Generator(device=device).manual_seed(self.mcr.seed)
        perms = MF.sample_permutations(
            self.mcr.mipd.num_permutations,
            len(self.model.modalities),
            int(labels.shape[0]),
            generator=self._perm_generator,
            device=device,
        )
        perturbed = input_space_latents(self.model, batch, perms)
        task_loss = self.task.loss(outputs, labels)
        out = self.mcr(latents, labels, outputs, perturbed_latents=perturbed)
        return StepOutput(task_loss + out.loss, outputs, {"task": task_loss.detach()})


def build_variant(variant: Variant, model: MultimodalModel, config: ModelConfig) -> Method:
    """The training method of ``variant`` wrapped around ``model``."""
    task = task_of(config)
    if variant.method in ("mcr", "input"):
        options = dict(RELEASED_MCR[config.name])
        options["num_permutations"] = int(variant.permutations or 32)
        options["check_values"] = False
        cls = MCR if variant.method == "mcr" else InputSpaceMCR
        method: Method = cls(model, task, **options)
    else:
        method = build_method(variant.method, model, task)
    return method.to(next(model.parameters()).device)


# --------------------------------------------------------------------------- MCR alone


class ConcatMLPHead(nn.Module):
    """``concat(z_1..z_M) -> Linear -> ReLU -> Linear``: the fusion head of the scaling runs."""

    def __init__(self, num_modalities: int, dim: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_modalities * dim, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, *zs: Tensor) -> Tensor:
        out: Tensor = self.net(torch.cat(zs, dim=-1))
        return out


def mcr_alone_step(
    num_modalities: int,
    permutations: int,
    subsets: str,
    *,
    batch: int,
    dim: int,
    hidden: int = 256,
    classes: int = 6,
    device: torch.device,
    head_gradient: str = "mean",
    closure: bool = False,
) -> tuple[Callable[[], Tensor], int]:
    """Forward and backward of MCR alone on fixed latents; returns ``(step, head rows)``.

    ``head rows`` is the number of rows the one batched fusion-head call processes,
    ``(|S| + |S| P) B`` (one reference block per subset, P perturbed blocks per subset).
    ``closure=True`` passes MCR a plain function over the head instead of the module (the
    head's share then always takes the second-pass route, docs/semantics.md).
    """
    g = torch.Generator().manual_seed(0)
    zs = [
        torch.randn(batch, dim, generator=g).to(device).requires_grad_()
        for _ in range(num_modalities)
    ]
    labels = torch.randint(0, classes, (batch,), generator=g).to(device)
    head = ConcatMLPHead(num_modalities, dim, hidden, classes).to(device)
    fusion: Callable[..., Tensor] = (lambda *z: head(*z)) if closure else head
    mcr = MCRRegularizer(
        fusion,
        num_classes=classes,
        latent_dims=(dim,) * num_modalities,
        check_values=False,
        mipd=MIPD(num_permutations=permutations, subsets=subsets, head_gradient=head_gradient),
    ).to(device)

    def step() -> Tensor:
        for z in zs:
            z.grad = None
        head.zero_grad(set_to_none=True)
        logits = head(*zs)
        out = mcr(zs, labels, logits)
        out.loss.backward()
        return out.loss.detach()

    n_sub = len(MF.enumerate_subsets(num_modalities, subsets))  # type: ignore[arg-type]
    return step, (n_sub + n_sub * permutations) * batch


# --------------------------------------------------------------------------- timing


# --------------------------------------------------------------------------- memory


def _proc_status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class MemoryProbe:
    """Peak memory of a few training steps of one variant (see :func:`measure_memory`)."""

    method: str
    baseline_bytes: int
    peak_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def step_bytes(self) -> int:
        return self.peak_bytes - self.baseline_bytes


def measure_memory(
    config: ModelConfig, variant: Variant, device: torch.device, steps: int = 2
) -> MemoryProbe:
    """Peak memory of ``steps`` training steps, in this process.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the model is
    built (parameters, gradients, optimizer state, inputs and activations count).
    CPU: the peak resident set size (``VmHWM``) minus the resident size before the model is
    built; meaningful only in a fresh process (see :func:`measure_memory_subprocess`).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        method_name = "torch.cuda.max_memory_allocated"
    else:
        base = (_proc_status_kib("VmRSS") or 0) * 1024
        method_name = "peak RSS (VmHWM) of a fresh process"
    model = build_model(config, device)
    batch = make_batch(config, device)
    step = make_step(build_variant(variant, model, config))
    for _ in range(steps):
        step(batch)
    synchronize(device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = (_proc_status_kib("VmHWM") or 0) * 1024
    return MemoryProbe(method_name, base, peak)


def measure_memory_subprocess(
    config: ModelConfig, variant: Variant, *, threads: int, steps: int = 2
) -> MemoryProbe:
    """:func:`measure_memory` on the CPU in a fresh Python process (``python -m benchmarks.common``)."""
    request = {
        "config": asdict(config),
        "variant": [variant.method, variant.permutations],
        "threads": threads,
        "steps": steps,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.common", "memory", json.dumps(request)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        },
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"memory probe for {variant.key} on {config.name} failed:\n{proc.stderr[-3000:]}"
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return MemoryProbe(result["method"], result["baseline_bytes"], result["peak_bytes"])


def _memory_main(request_json: str) -> None:
    request = json.loads(request_json)
    torch.set_num_threads(int(request["threads"]))
    cfg = request["config"]
    config = ModelConfig(
        cfg["name"], cfg["batch"], {m: tuple(s) for m, s in cfg["inputs"].items()}, cfg["layers"]
    )
    variant = Variant(request["variant"][0], request["variant"][1])
    probe = measure_memory(config, variant, torch.device("cpu"), steps=int(request["steps"]))
    print(json.dumps(asdict(probe)))


# --------------------------------------------------------------------------- environment


def environment(device: torch.device, threads: int | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "device": str(device),
    }
    if hasattr(os, "getloadavg"):
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Measure one variant's peak memory in this process (used by measure_memory)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    memory = commands.add_parser("memory", help="peak memory of one training step")
    memory.add_argument("request", help="the JSON request written by measure_memory_subprocess")
    _memory_main(parser.parse_args().request)
