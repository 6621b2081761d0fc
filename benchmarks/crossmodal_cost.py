"""What MCR costs behind a cross-modal transformer (early fusion), on the CPU.

Protocol (registered before the first measurement):

* **Model**: the Multimodal Transformer's shape (Tsai et al., 2019) at its CMU-MOSI settings:
  language (300-d) and audio (74-d) sequences of 50 steps, batch 24, temporal Conv1d
  projections to 30 channels (the encoders), then cross-modal attention both ways (language
  attends to audio and audio to language, 4 layers each, 5 heads, width 30, dropout off), the
  last step of each, and a two-layer regression output; L1 loss. Written anew here.
* **Variants** (MCR's latents are the two projected sequences, read sequence-first through
  ``FusionInputs``; ``contrastive`` and ``unimodal`` terms at their defaults):
  ``joint`` (no MCR); ``mcr P=32`` (the defaults: 2 subsets, 66 batches in the head call);
  ``mcr P=8``; ``mcr P=4``; ``mcr P=4 detached`` (``detach_reference=True``: 9 batches);
  ``late P=32``: MCR captured at the output layers on the pooled cross-modal outputs (the
  lighter capture point; it measures competition in the late part only).
* **Measure**: seconds per training step (forward, backward, SGD step), after 2 warm-up steps,
  7 interleaved rounds of one step per variant, median and quartiles, and the per-round ratio to
  ``joint``; activation memory as the bytes autograd saves for backward in one step (a proxy for
  peak activation memory, since no GPU is lent to this task; ``saved_tensors_hooks``); the
  ratio to ``joint``. ``torch.set_num_threads(1)``. The run takes ``/tmp/mcr_timing_lock``
  while it measures (and waits while another run holds it).
* **Reported** as measured, wins and losses alike, in ``benchmarks/results/crossmodal_cost_cpu.json``
  with the provenance record, and in docs/integration.md ("Early and cross-modal fusion").

Usage::

    python -m benchmarks.crossmodal_cost                 # the documented run (a few minutes)
    python -m benchmarks.crossmodal_cost --quick --out /tmp/c.json   # tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from examples.common.provenance import provenance
from mcr_reg import FusionInputs, MCRRegularizer

LOCK = Path("/tmp/mcr_timing_lock")
OUT = Path(__file__).resolve().parent / "results" / "crossmodal_cost_cpu.json"


class CrossModalLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        x = self.norm1(target + self.attention(target, source, source)[0])
        out: Tensor = self.norm2(x + self.ff(x))
        return out


class CrossModal(nn.Module):
    """Cross-modal attention both ways on sequence-first ``(T, B, D)`` tensors; returns the last
    step of each direction."""

    def __init__(self, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.l_with_a = nn.ModuleList(CrossModalLayer(dim, heads) for _ in range(layers))
        self.a_with_l = nn.ModuleList(CrossModalLayer(dim, heads) for _ in range(layers))

    def forward(self, x_l: Tensor, x_a: Tensor) -> tuple[Tensor, Tensor]:
        h_l, h_a = x_l, x_a
        for layer in self.l_with_a:
            h_l = layer(h_l, x_a)
        for layer in self.a_with_l:
            h_a = layer(h_a, x_l)
        return h_l[-1], h_a[-1]


class Output(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def forward(self, last_l: Tensor, last_a: Tensor) -> Tensor:
        out: Tensor = self.net(torch.cat([last_l, last_a], dim=-1))
        return out


class MulTShape(nn.Module):
    def __init__(self, d_l: int, d_a: int, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.proj_l = nn.Conv1d(d_l, dim, kernel_size=1)
        self.proj_a = nn.Conv1d(d_a, dim, kernel_size=1)
        self.crossmodal = CrossModal(dim, heads, layers)
        self.output = Output(dim)

    def forward(self, x_l: Tensor, x_a: Tensor) -> Tensor:
        p_l = self.proj_l(x_l.transpose(1, 2)).permute(2, 0, 1)
        p_a = self.proj_a(x_a.transpose(1, 2)).permute(2, 0, 1)
        out: Tensor = self.output(*self.crossmodal(p_l, p_a))
        return out


def variant(name: str, size: dict[str, int]) -> Callable[[], None]:
    """One training step of ``name`` on fixed data (built once)."""
    torch.manual_seed(0)
    model = MulTShape(size["d_l"], size["d_a"], size["dim"], size["heads"], size["layers"])
    g = torch.Generator().manual_seed(1)
    x_l = torch.randn(size["batch"], size["steps"], size["d_l"], generator=g)
    x_a = torch.randn(size["batch"], size["steps"], size["d_a"], generator=g)
    y = torch.randn(size["batch"], generator=g)
    captured: FusionInputs | None = None
    if name != "joint":
        options: dict[str, Any] = {"task": "regression", "seed": 0, "audit": False}
        if name.startswith("late"):
            captured = FusionInputs(model.output)
        else:
            captured = FusionInputs(model.crossmodal, then=model.output)
        p = int(name.split("P=")[1].split()[0])
        options["num_permutations"] = p
        options["detach_reference"] = name.endswith("detached")
        mcr = MCRRegularizer(captured.head, latent_dims=(size["dim"], size["dim"]), **options)
        model.add_module("mcr", mcr)  # attached: its heads are in model.parameters()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        preds = model(x_l, x_a)
        loss = F.l1_loss(preds.squeeze(-1), y)
        if captured is not None:
            loss = loss + mcr(captured, y).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def saved_bytes(step: Callable[[], None]) -> int:
    """Bytes autograd saves for backward during one step."""
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


@contextmanager
def timing_lock() -> Any:
    while LOCK.exists():
        time.sleep(10)
    LOCK.write_text(f"benchmarks.crossmodal_cost pid {os.getpid()}\n")
    try:
        yield
    finally:
        LOCK.unlink(missing_ok=True)


NAMES = ["joint", "mcr P=32", "mcr P=8", "mcr P=4", "mcr P=4 detached", "late P=32"]
SIZE = {"d_l": 300, "d_a": 74, "dim": 30, "heads": 5, "layers": 4, "steps": 50, "batch": 24}
QUICK = {"d_l": 12, "d_a": 6, "dim": 10, "heads": 2, "layers": 1, "steps": 6, "batch": 4}


def run(size: dict[str, int], rounds: int, use_lock: bool) -> dict[str, Any]:
    started = time.time()
    torch.set_num_threads(1)
    steps = {name: variant(name, size) for name in NAMES}
    memory = {name: saved_bytes(step) for name, step in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    lock = timing_lock() if use_lock else nullcontext()
    with lock:
        for step in steps.values():  # warm-up
            step()
            step()
        for _ in range(rounds):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    rows = {}
    for name in NAMES:
        ratios = [t / j for t, j in zip(times[name], times["joint"])]
        q = statistics.quantiles(times[name], n=4) if len(times[name]) > 1 else [times[name][0]] * 3
        rows[name] = {
            "seconds_median": statistics.median(times[name]),
            "seconds_quartiles": [q[0], q[2]],
            "time_ratio_median": statistics.median(ratios),
            "saved_bytes": memory[name],
            "memory_ratio": memory[name] / memory["joint"],
        }
    return {
        "schema": "mcr-reg/crossmodal-cost/1",
        "size": size,
        "rounds": rounds,
        "variants": rows,
        "provenance": provenance(started),
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| variant | s / step (median) | time x joint | saved-for-backward x joint |",
             "|---|---|---|---|"]  # fmt: skip
    for name, row in result["variants"].items():
        lines.append(
            f"| {name} | {row['seconds_median']:.3f} | {row['time_ratio_median']:.1f} | "
            f"{row['memory_ratio']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, seconds")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    result = run(QUICK if args.quick else SIZE, 2 if args.quick else args.rounds, not args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
