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
* the operations that take the most time in MCR's step.

MCR runs with ``check_values=False`` (the sync-free configuration the speed promises are made
for) and the package defaults otherwise (greedy, contrastive and unimodal terms on).

Usage::

    python -m benchmarks.step_cost --out benchmarks/results/step_cost.json
    python -m benchmarks.step_cost --quick --out /tmp/s.json    # a smoke run, seconds
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import environment, paired_ratios, summarise, time_interleaved
from mcr_reg import MCRRegularizer

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
    Case(3, "all", 32, "function"),
    Case(6, "singletons", 32, "function"),
)


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
    case: Case, *, batch: int, latent: int, seed: int = 0
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(joint_step, mcr_step)``: forward + backward of one batch, gradients reset first."""
    torch.manual_seed(seed)
    classes, in_dim = 10, 32
    model = SmallModel(case.modalities, in_dim, latent, classes)
    head = model.fuse if case.head == "function" else ConcatHead(model.head)
    mcr = MCRRegularizer(
        head,
        num_classes=classes,
        latent_dims=(latent,) * case.modalities,
        num_permutations=case.draws,
        subsets=case.subsets,
        check_values=False,
        seed=seed,
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

    def with_mcr() -> None:
        for p in params:
            p.grad = None
        zs = [enc(x) for enc, x in zip(model.encoders, xs)]
        logits = model.fuse(*zs)
        (F.cross_entropy(logits, y) + mcr(zs, y, logits).loss).backward()

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


def measure(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    joint, with_mcr = build_steps(case, batch=args.batch, latent=args.latent)
    joint_ops, _ = count_ops(joint)
    mcr_ops, top = count_ops(with_mcr, top=args.top)
    wall, cpu = time_interleaved(
        {"joint": joint, "mcr": with_mcr},
        repeats=args.repeats,
        steps_per_repeat=args.steps,
        warmup=1,
        device=torch.device("cpu"),
    )
    return {
        "case": asdict(case),
        "name": case.name,
        "ops": {"joint": joint_ops, "mcr": mcr_ops, "added": mcr_ops - joint_ops},
        "cpu_seconds": {k: summarise(v) for k, v in cpu.items()},
        "wall_seconds": {k: summarise(v) for k, v in wall.items()},
        "cpu_ratio": paired_ratios(cpu["mcr"], cpu["joint"]),
        "wall_ratio": paired_ratios(wall["mcr"], wall["joint"]),
        "top_ops": top,
    }


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| case | aten ops joint | + MCR | joint step (CPU ms) | MCR step (CPU ms) | ratio (CPU) | ratio (wall) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['ops']['joint']} | +{r['ops']['added']} | "
            f"{1e3 * r['cpu_seconds']['joint']['median']:.2f} | "
            f"{1e3 * r['cpu_seconds']['mcr']['median']:.2f} | "
            f"{r['cpu_ratio']['median']:.1f}x | {r['wall_ratio']['median']:.1f}x |"
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
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/step_cost.json"))
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.steps = args.steps or (2 if args.quick else 10)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = CASES[:2] if args.quick else CASES
    results = []
    for case in cases:
        print(f"measuring {case.name} ...", flush=True)
        results.append(measure(case, args))
    report = {
        "schema": SCHEMA,
        "command": "python -m benchmarks.step_cost " + shlex.join(sys.argv[1:] if argv is None else argv),
        "environment": environment(torch.device("cpu"), args.threads),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    return report


if __name__ == "__main__":
    main()
