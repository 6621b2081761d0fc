"""Operations and time of one training step with MCR next to joint training, on small encoders.

Small encoders are where MCR's own work is not hidden behind the encoders': the multi-view and
synthetic benchmarks and many first trials. For each case (M modalities with two-layer MLP
encoders of 64-d latents, a concatenation + linear fusion head, batch 64, P permutation draws)
this measures, side by side in one run:

* the number of aten operations per training step (``torch.profiler``: every ``aten::`` event,
  nested ones included), joint training and with MCR; a count that does not depend on the load
  of the machine, and a proxy for kernel launches on a GPU;
* forward + backward time of both, in interleaved rounds (CPU time of this process, which does
  not count waiting for a core; wall time too), median of the per-round ratio;
* the peak of the memory the step allocates (from the profiler's allocation events, so it
  counts tensors only, on any device);
* the operations that take the most time in MCR's step.

Cases: M = 2, 3 and 6 with P = 1 and 32 (``subsets="all"`` at M = 2 and 3, ``"singletons"``
and ``"sampled"`` at M = 6, and ``"all"`` at M = 6 to show how that grows), a module head next
to the plain function, and the ResNet-18 audio + video pair of the CREMA-D pipeline
(``--resnet``; needs torchvision). ``--compile`` adds MCR's step under ``torch.compile``.

MCR runs with ``check_values=False`` (the sync-free configuration the speed promises are made
for) and the package defaults otherwise (greedy, contrastive and unimodal terms on).

Usage::

    python -m benchmarks.step_cost --resnet --out benchmarks/results/step_cost.json
    python -m benchmarks.step_cost --quick --out /tmp/s.json    # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import (
    ModelConfig,
    Variant,
    build_model,
    build_variant,
    environment,
    make_batch,
    paired_ratios,
    quartiles,
    time_interleaved,
)
from examples.common.provenance import provenance
from mcr_reg import MCRRegularizer
from mcr_reg.terms import MIPD

SCHEMA = "mcr-reg/step-cost/1"


@dataclass(frozen=True)
class Case:
    """One measured setting."""

    modalities: int
    subsets: str
    draws: int
    head: str  # "function" (a plain function over the module) or "module"

    @property
    def name(self) -> str:
        return f"M={self.modalities} {self.subsets} P={self.draws} {self.head} head"


CASES = (
    Case(2, "all", 1, "function"),
    Case(2, "all", 32, "function"),
    Case(2, "all", 32, "module"),
    Case(3, "all", 1, "function"),
    Case(3, "all", 32, "function"),
    Case(6, "singletons", 1, "function"),
    Case(6, "singletons", 32, "function"),
    Case(6, "sampled", 32, "function"),
    Case(6, "all", 32, "function"),
)

#: how many larger subsets ``subsets="sampled"`` draws per step (besides the singletons)
SAMPLED_SUBSETS = 6


class SmallModel(nn.Module):
    """M two-layer MLP encoders and a linear head on their concatenation."""

    def __init__(self, modalities: int, in_dim: int, latent: int, classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, latent), nn.ReLU(), nn.Linear(latent, latent))
            for _ in range(modalities)
        )
        self.head = nn.Linear(modalities * latent, classes)

    def fuse(self, *zs: Tensor) -> Tensor:
        return self.head(torch.cat(zs, dim=-1))


class ConcatHead(nn.Module):
    """The same fusion as :meth:`SmallModel.fuse`, as a module taking the latents."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, *zs: Tensor) -> Tensor:
        return self.linear(torch.cat(zs, dim=-1))


def build_steps(
    case: Case, *, batch: int, latent: int, seed: int = 0, compiled: bool = False
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(joint_step, mcr_step)``: forward + backward of one batch, gradients reset first.
    ``compiled``: the forward with MCR runs under ``torch.compile(fullgraph=True)``."""
    torch.manual_seed(seed)
    classes, in_dim = 10, 32
    model = SmallModel(case.modalities, in_dim, latent, classes)
    head = model.fuse if case.head == "function" else ConcatHead(model.head)
    mcr = MCRRegularizer(
        head,
        num_classes=classes,
        latent_dims=(latent,) * case.modalities,
        check_values=False,
        seed=seed,
        mipd=MIPD(
            num_permutations=case.draws, subsets=case.subsets, sampled_subsets=SAMPLED_SUBSETS
        ),
    )
    g = torch.Generator().manual_seed(seed + 1)
    xs = [torch.randn(batch, in_dim, generator=g) for _ in range(case.modalities)]
    y = torch.randint(0, classes, (batch,), generator=g)
    params = [*model.parameters(), *mcr.parameters()]

    def joint() -> None:
        for p in params:
            p.grad = None
        zs = [enc(x) for enc, x in zip(model.encoders, xs)]
        F.cross_entropy(model.fuse(*zs), y).backward()

    def loss_with_mcr() -> Tensor:
        zs = [enc(x) for enc, x in zip(model.encoders, xs)]
        logits = model.fuse(*zs)
        return F.cross_entropy(logits, y) + mcr(zs, y, logits).loss

    forward = torch.compile(loss_with_mcr, fullgraph=True) if compiled else loss_with_mcr

    def with_mcr() -> None:
        for p in params:
            p.grad = None
        forward().backward()

    return joint, with_mcr


def count_ops(step: Callable[[], None], top: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """aten events of one call of ``step`` (after one untimed call), and the ``top`` operations
    by self CPU time."""
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    count = sum(int(e.count) for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return count, [
        {"op": e.key, "calls": int(e.count), "self_cpu_us": round(float(e.self_cpu_time_total), 1)}
        for e in ranked
    ]


def peak_bytes(step: Callable[[], None]) -> int:
    """The most memory held at once by the tensors one call of ``step`` allocates: the running
    sum, in time order, of the call's allocations and of the releases of memory the call itself
    allocated. Memory held before the call (parameters, inputs, the previous step's gradients)
    is not counted, and neither is its release during the call; the profiler may report such a
    release with the size of whatever block last had that address, so it is left out by
    address."""
    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(_allocations(prof), key=lambda e: e.start_time_ns)
    live: dict[int, int] = {}  # address -> bytes, of blocks allocated during the call
    held = peak = 0
    for event in events:
        fields = event.extra_fields
        if fields.alloc_size > 0:
            live[fields.ptr] = fields.alloc_size
            held += fields.alloc_size
        else:
            held -= live.pop(fields.ptr, 0)
        peak = max(peak, held)
    return peak


def _allocations(prof: profile) -> list[Any]:
    """The profiler's allocation and release events (each with ``extra_fields.ptr`` and
    ``extra_fields.alloc_size``, negative for a release)."""
    from torch._C._profiler import _EventType

    found = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())  # type: ignore[union-attr]
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            found.append(node)
        stack.extend(node.children)
    return found


def measure_steps(
    name: str, joint: Callable[[], None], with_mcr: Callable[[], None], args: argparse.Namespace
) -> dict[str, Any]:
    """Operations, peak memory and interleaved times of one pair of steps."""
    joint_ops, _ = count_ops(joint)
    mcr_ops, top = count_ops(with_mcr, top=args.top)
    memory = {"joint": peak_bytes(joint), "mcr": peak_bytes(with_mcr)}
    wall, cpu = time_interleaved(
        {"joint": joint, "mcr": with_mcr},
        repeats=args.repeats,
        steps_per_repeat=args.steps,
        warmup=1,
        device=torch.device("cpu"),
    )
    return {
        "name": name,
        "ops": {"joint": joint_ops, "mcr": mcr_ops, "added": mcr_ops - joint_ops},
        "peak_bytes": {**memory, "ratio": memory["mcr"] / max(memory["joint"], 1)},
        "cpu_seconds": {k: quartiles(v) for k, v in cpu.items()},
        "wall_seconds": {k: quartiles(v) for k, v in wall.items()},
        "cpu_ratio": paired_ratios(cpu["mcr"], cpu["joint"]),
        "wall_ratio": paired_ratios(wall["mcr"], wall["joint"]),
        "top_ops": top,
    }


def measure(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    joint, with_mcr = build_steps(case, batch=args.batch, latent=args.latent)
    return {"case": asdict(case), **measure_steps(case.name, joint, with_mcr, args)}


def resnet_steps(draws: int, batch: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(joint_step, mcr_step)`` of the CREMA-D ResNet-18 audio + video model (the shapes of
    :meth:`benchmarks.common.ModelConfig.resnet18`), forward + backward."""
    config = ModelConfig.resnet18(batch)
    data = make_batch(config, torch.device("cpu"))

    def step_of(spec: str) -> Callable[[], None]:
        model = build_model(config, torch.device("cpu"))
        method = build_variant(Variant.parse(spec), model, config)
        method.begin_stage("joint")
        method.set_seed(0)
        method.begin_epoch("joint", 0)
        method.set_train_mode("joint")
        params = list(method.parameters())

        def step() -> None:
            for p in params:
                p.grad = None
            method.training_step(data, "joint").loss.backward()

        return step

    return step_of("joint"), step_of(f"mcr:{draws}")


def compiled_mcr(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    """MCR's step eager (as "joint") and with its forward under ``torch.compile`` (inductor,
    ``fullgraph=True``, so a graph break fails): operations, times, compile time."""
    _, eager = build_steps(case, batch=args.batch, latent=args.latent)
    _, compiled = build_steps(case, batch=args.batch, latent=args.latent, compiled=True)
    started = time.perf_counter()
    compiled()  # compiles, as one graph or not at all
    compile_seconds = time.perf_counter() - started
    result = measure_steps(f"{case.name}: compiled MCR step vs eager", eager, compiled, args)
    return {"case": asdict(case), "compile_seconds": round(compile_seconds, 1), **result}


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| case | aten ops joint | + MCR | joint step (CPU ms) | MCR step (CPU ms) | ratio (CPU) "
        "| ratio (wall) | peak memory, MCR / joint |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['ops']['joint']} | {r['ops']['added']:+d} | "
            f"{1e3 * r['cpu_seconds']['joint']['median']:.2f} | "
            f"{1e3 * r['cpu_seconds']['mcr']['median']:.2f} | "
            f"{r['cpu_ratio']['median']:.2f}x | {r['wall_ratio']['median']:.2f}x | "
            f"{r['peak_bytes']['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="two cases, few repeats (a smoke run)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7, quick 2)")
    p.add_argument("--steps", type=int, default=None, help="steps per round (default 10, quick 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--top", type=int, default=8, help="top operations to list per case")
    p.add_argument("--resnet", action="store_true", help="add the ResNet-18 pair (torchvision)")
    p.add_argument("--resnet-batch", type=int, default=8)
    p.add_argument("--compile", action="store_true", help="add eager vs compiled MCR (inductor)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/step_cost.json"))
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.steps = args.steps or (2 if args.quick else 10)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    started = time.time()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = CASES[:2] if args.quick else CASES
    results = []
    for case in cases:
        print(f"measuring {case.name} ...", flush=True)
        results.append(measure(case, args))
    if args.resnet:
        for draws in (1, 32):
            print(f"measuring ResNet-18 pair P={draws} ...", flush=True)
            joint, with_mcr = resnet_steps(draws, args.resnet_batch)
            name = f"ResNet-18 pair, B={args.resnet_batch}, P={draws}"
            results.append(measure_steps(name, joint, with_mcr, args))
    if args.compile:
        print("measuring compiled MCR ...", flush=True)
        results.append(compiled_mcr(CASES[1], args))
    report = {
        "schema": SCHEMA,
        "command": "python -m benchmarks.step_cost "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "environment": environment(torch.device("cpu"), args.threads),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
        "provenance": provenance(started, arguments=argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    return report


if __name__ == "__main__":
    main()
