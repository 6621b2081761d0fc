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
* **Measured CPU peak** (added to the protocol before its first measurement, beside the proxy,
  which stays): each variant in a process of its own (``python -m benchmarks.crossmodal_cost
  --peak-of NAME``), one thread; after the model, the data and MCR are built, the kernel's
  peak-resident record is reset (``/proc/self/clear_refs``) and the resident size read
  (``VmRSS``, the baseline); then 2 training steps; the peak is ``VmHWM`` (where the record
  cannot be reset, ``getrusage(RUSAGE_SELF).ru_maxrss`` before and after, which can only
  under-count). Reported: the peak minus the baseline, 5 repeats interleaved across the
  variants, median (and all repeats), and its ratio to ``joint``'s median. It counts everything
  the steps make resident (activations, gradients, the allocator's and autograd's own memory,
  and memory the C allocator keeps after a free), so it is what a user's machine would need on
  top of the built model, not the activations alone. No GPU peak: none is lent to this task.
* **Reported** as measured, wins and losses alike, in ``benchmarks/results/crossmodal_cost_cpu.json``
  with the provenance record, and in docs/integration.md ("Early and cross-modal fusion").

Usage::

    python -m benchmarks.crossmodal_cost                 # the documented run (a few minutes)
    python -m benchmarks.crossmodal_cost --quick --out /tmp/c.json   # tiny, seconds
    python -m benchmarks.crossmodal_cost --peak-of "mcr P=8"   # one variant's peak, as JSON
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
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
from mcr_reg.terms import MIPD

LOCK = Path("/tmp/mcr_timing_lock")
OUT = Path(__file__).resolve().parent / "results" / "crossmodal_cost_cpu.json"
ROOT = Path(__file__).resolve().parents[1]
PEAK_STEPS = 2  # training steps in each peak-measuring process


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
        options["mipd"] = MIPD(num_permutations=p, detach_reference=name.endswith("detached"))
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


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or ``None`` off Linux."""
    try:
        lines = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    """Reset the kernel's record of this process's peak resident size (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def peak_resident_increase(step: Callable[[], None], steps: int = PEAK_STEPS) -> dict[str, Any]:
    """The peak resident memory of this process while ``step`` runs ``steps`` times, above the
    resident memory just before (bytes), and how it was read."""
    gc.collect()
    if _reset_peak() and (rss := _status_kib("VmRSS")) is not None:
        baseline, source = rss, "VmHWM - VmRSS (peak record reset after the build)"
        for _ in range(steps):
            step()
        peak = _status_kib("VmHWM") or 0
    else:  # ru_maxrss cannot be reset: a peak of the build above the steps' hides the steps'
        baseline, source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
        for _ in range(steps):
            step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "baseline_bytes": baseline * 1024,
        "peak_bytes": peak * 1024,
        "increase_bytes": max(0, peak - baseline) * 1024,
        "source": source,
    }


def measure_peak_in_process(name: str, size: dict[str, int]) -> dict[str, Any]:
    """Build ``name`` in this process and measure its steps' peak (what ``--peak-of`` runs)."""
    torch.set_num_threads(1)
    return peak_resident_increase(variant(name, size))


def measured_peaks(quick: bool, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Each variant's peak, measured ``repeats`` times, each time in a fresh process, the
    variants interleaved."""
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(repeats):
        for name in NAMES:
            command = [sys.executable, "-m", "benchmarks.crossmodal_cost", "--peak-of", name]
            proc = subprocess.run(
                command + (["--quick"] if quick else []),
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"measuring the peak of {name!r} failed:\n{proc.stderr}")
            found[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return found


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


def run(size: dict[str, int], rounds: int, use_lock: bool, peak_repeats: int = 5) -> dict[str, Any]:
    started = time.time()
    peaks = measured_peaks(size == QUICK, peak_repeats)  # before the timing: its own processes
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
    peak = {name: statistics.median(r["increase_bytes"] for r in peaks[name]) for name in NAMES}
    for name in NAMES:
        ratios = [t / j for t, j in zip(times[name], times["joint"])]
        q = statistics.quantiles(times[name], n=4) if len(times[name]) > 1 else [times[name][0]] * 3
        rows[name] = {
            "seconds_median": statistics.median(times[name]),
            "seconds_quartiles": [q[0], q[2]],
            "time_ratio_median": statistics.median(ratios),
            "saved_bytes": memory[name],
            "memory_ratio": memory[name] / memory["joint"],
            "peak_rss_increase_bytes_median": peak[name],
            "peak_rss_ratio": peak[name] / peak["joint"] if peak["joint"] else None,
            "peak_rss_repeats": peaks[name],
        }
    return {
        "schema": "mcr-reg/crossmodal-cost/2",
        "size": size,
        "rounds": rounds,
        "memory_columns": {
            "saved_bytes": "proxy: bytes autograd saves for backward in one step, in this process",
            "peak_rss_increase_bytes_median": (
                f"measured: peak resident memory of a fresh process over {PEAK_STEPS} training "
                f"steps minus its resident memory after the build, median of {peak_repeats} "
                "processes (CPU; no GPU lent)"
            ),
        },
        "variants": rows,
        "provenance": provenance(started),
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| variant | s / step (median) | time x joint | saved for backward x joint (proxy) "
             "| measured CPU peak increase, MiB | x joint |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in result["variants"].items():
        ratio = row["peak_rss_ratio"]
        lines.append(
            f"| {name} | {row['seconds_median']:.3f} | {row['time_ratio_median']:.1f} | "
            f"{row['memory_ratio']:.1f} | {row['peak_rss_increase_bytes_median'] / 2**20:.1f} | "
            f"{'n/a' if ratio is None else f'{ratio:.1f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, seconds")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--peak-repeats", type=int, default=5, help="processes per variant")
    parser.add_argument(
        "--peak-of", choices=NAMES, help="measure this variant's peak here, print it as JSON"
    )
    args = parser.parse_args(argv)
    size = QUICK if args.quick else SIZE
    if args.peak_of:
        print(json.dumps(measure_peak_in_process(args.peak_of, size)))
        return
    result = run(size, 2 if args.quick else args.rounds, not args.quick, args.peak_repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
