"""Cost of MCR against joint training on the multi-view model, M = 2, 3 and 6 views.

One training step (forward, backward, Adam) of the benchmark's model at its batch size, joint
against MCR with ``P`` permutation draws and ``subsets="all"`` or ``"singletons"``. Timing and
the step functions come from :mod:`benchmarks.harness.timing` (interleaved rounds; the primary clock
on the CPU is the process's CPU time, which does not count waiting for a shared core).

Memory is measured as the bytes of the tensors autograd saves for the backward pass during
the step's forward (distinct storages, counted with ``torch.autograd.graph.saved_tensors_hooks``):
exact and repeatable, and the part of a step's memory that MCR adds to. Parameters, gradients
and optimizer state are the same for both up to MCR's small own parameters.

Pre-registered rule: MCR's cost is *negligible* while its median step time is at most
:data:`NEGLIGIBLE` times joint's; the reported ``P*`` is the smallest measured P above that.

With two views ``"all"`` and ``"singletons"`` are the same two subsets (the same computation),
so M = 2 is measured once, as ``"all"``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from benchmarks.harness.timing import make_step, paired_ratios, quartiles, time_interleaved
from benchmarks.multiview.results import CostResult, CostRow, TimeRatio
from examples.common.methods import Method, build_method
from examples.common.reporting import pyplot, save_figure, table
from examples.common.task import TaskSpec
from examples.multiview.data import NUM_CLASSES, VIEW_DIMS, VIEWS
from examples.multiview.model import build_model

#: Step-time ratio up to which MCR's cost counts as negligible.
NEGLIGIBLE = 1.10
#: View sets of the cost run (M = 2, 3, 6).
COST_VIEWS: dict[int, tuple[str, ...]] = {2: VIEWS[:2], 3: VIEWS[:3], 6: VIEWS}
#: The measured (M, subsets) settings: M = 2 once (its "all" and "singletons" coincide).
SETTINGS: tuple[tuple[int, str], ...] = (
    (2, "all"),
    (3, "all"),
    (3, "singletons"),
    (6, "all"),
    (6, "singletons"),
)


def setting_label(m: int, subsets: str) -> str:
    """``"M=3 singletons"``; M = 2 says that its two subset modes are one computation."""
    return f"M={m} all (= singletons)" if m == 2 else f"M={m} {subsets}"


def distinct_settings(rows: list[CostRow]) -> list[tuple[int, str]]:
    """The (M, subsets) of ``rows`` in order, without M = 2 ``"singletons"`` next to M = 2
    ``"all"`` (results written before M = 2 was measured once hold both)."""
    found = sorted({(r.M, r.subsets) for r in rows})
    return [(m, s) for m, s in found if not (m == 2 and s == "singletons" and (2, "all") in found)]


def saved_tensor_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _method(views: tuple[str, ...], variant: str, subsets: str, seed: int = 0) -> Method:
    torch.manual_seed(seed)
    model = build_model({v: VIEW_DIMS[v] for v in views})
    task = TaskSpec("classification", num_classes=NUM_CLASSES)
    if variant == "joint":
        return build_method("joint", model, task)
    p = int(variant.split(":")[1])
    return build_method(
        "mcr", model, task, {"num_permutations": p, "subsets": subsets, "check_values": False}
    )


def _batch(views: tuple[str, ...], batch: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {v: torch.randn(batch, VIEW_DIMS[v], generator=g) for v in views}
    out["label"] = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    return out


def _memory(method: Method, batch: Mapping[str, Tensor]) -> int:
    method.train()
    return saved_tensor_bytes(lambda: method.training_step(batch, "joint").loss)


def measure_setting(
    m: int, subsets: str, ps: Sequence[int], batch: int, repeats: int, steps: int
) -> tuple[list[CostRow], int | None]:
    """One (M, subsets) setting: a row per P (step time against joint's, saved-tensor memory)
    and the smallest P whose median step-time ratio is above :data:`NEGLIGIBLE` (or None)."""
    views = COST_VIEWS[m]
    data = _batch(views, batch)
    fns = {}
    mem = {}
    for v in ["joint", *(f"mcr:{p}" for p in ps)]:
        method = _method(views, v, subsets)
        mem[v] = _memory(method, data)
        step = make_step(method, lr=1e-3)
        fns[v] = lambda step=step, data=data: step(data)
    _, cpu = time_interleaved(
        fns, repeats=repeats, steps_per_repeat=steps, warmup=1, device=torch.device("cpu")
    )
    star = None
    rows = []
    for p in ps:
        key = f"mcr:{p}"
        ratio = paired_ratios(cpu[key], cpu["joint"])
        rows.append(
            CostRow(
                M=m,
                views=list(views),
                subsets=subsets,
                P=p,
                time_s=quartiles(cpu[key])["median"],
                joint_time_s=quartiles(cpu["joint"])["median"],
                time_ratio=TimeRatio(ratio["median"], ratio["q1"], ratio["q3"]),
                saved_bytes=mem[key],
                joint_saved_bytes=mem["joint"],
                memory_ratio=mem[key] / mem["joint"],
            )
        )
        if star is None and ratio["median"] > NEGLIGIBLE:
            star = p
    return rows, star


def measure_cost(
    *,
    quick: bool = False,
    batch: int = 64,
    ps: tuple[int, ...] | None = None,
    repeats: int | None = None,
    steps: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> CostResult:
    """Step time and saved-tensor memory of MCR / joint for M = 2, 3, 6 and both subset modes.

    ``progress`` draws a bar over the :data:`SETTINGS` on stderr; ``log`` gets one line when
    the run starts and one per finished setting (what a log file shows).

    Returns the settings, ``rows`` (one per M, subsets, P: ``time_ratio`` median and
    quartiles, ``memory_ratio``, the absolute numbers) and ``p_star`` per (M, subsets).
    """
    torch.set_num_threads(1)
    ps = ps or ((1, 32) if quick else (1, 4, 16, 32, 64))
    repeats = repeats or (3 if quick else 7)
    steps = steps or (3 if quick else 5)
    rows: list[CostRow] = []
    p_star: dict[str, int | None] = {}
    say = log or (lambda line: None)
    say(
        f"cost run: one training step of MCR against joint, {len(SETTINGS)} settings "
        f"(M = 2, 3, 6 views) x P in {', '.join(map(str, ps))}, {repeats} rounds of {steps} steps"
    )
    t0 = time.time()
    bar = tqdm(SETTINGS, desc="cost", unit="setting", file=sys.stderr, disable=not progress)
    for i, (m, subsets) in enumerate(bar):
        setting_rows, star = measure_setting(m, subsets, ps, batch, repeats, steps)
        rows += setting_rows
        ratios = [f"{r.time_ratio.median:.1f}x at P={r.P}" for r in setting_rows]
        p_star[f"M={m} {subsets}"] = star
        line = (
            f"cost [{i + 1}/{len(SETTINGS)}, {time.time() - t0:.0f} s] "
            f"{setting_label(m, subsets)}: MCR / joint step time {', '.join(ratios)}"
        )
        if progress:
            bar.write(line, file=sys.stdout)  # above the bar
        else:
            say(line)
    bar.close()
    return CostResult(
        batch=batch,
        P=list(ps),
        repeats=repeats,
        steps_per_repeat=steps,
        clock="CPU time of the process (time.process_time), 1 thread",
        memory="bytes of distinct storages saved for backward in one training step",
        negligible_ratio=NEGLIGIBLE,
        rows=rows,
        p_star=p_star,
    )


def verdict(cost: CostResult, m: int, subsets: str) -> str:
    """The pre-registered rule's answer for one setting, in words."""
    rows = cost.setting(m, subsets)
    star = cost.p_star.get(f"M={m} {subsets}")
    limit = f"{cost.negligible_ratio:.2f}x joint's step time"
    if star is None:
        return f"negligible (at most {limit}) at every P measured"
    first = rows[0]
    if star == first.P:
        return (
            f"above {limit} at every P measured, already "
            f"{first.time_ratio.median:.1f}x at P = {first.P}"
        )
    below = max(r.P for r in rows if star > r.P)
    ratio = next(r.time_ratio.median for r in rows if star == r.P)
    return f"negligible up to P = {below}; above {limit} from P = {star} ({ratio:.1f}x)"


def markdown(cost: CostResult) -> str:
    """The cost table of results.md, and the pre-registered rule's answer per setting."""
    header = ["M", "subsets", "P", "step time MCR / joint (median [q1, q3])"]
    header += ["saved-tensor memory MCR / joint", "joint step (ms)"]
    settings = distinct_settings(cost.rows)
    rows = []
    for m, subsets in settings:
        for r in cost.setting(m, subsets):
            t = r.time_ratio
            label = "all (= singletons)" if m == 2 else subsets
            ratio = f"{t.median:.2f} [{t.q1:.2f}, {t.q3:.2f}]"
            rows.append([str(m), label, str(r.P), ratio, f"{r.memory_ratio:.2f}"])
            rows[-1].append(f"{1e3 * r.joint_time_s:.2f}")
    lines = [
        f"## Cost of MCR against joint (batch {cost.batch}, {cost.clock})",
        "",
        f"Median of {cost.repeats} interleaved rounds of {cost.steps_per_repeat} training "
        "steps; with two views `all` and `singletons` are the same two subsets.",
        "",
        *table(header, rows),
        "",
        f"Is MCR's cost negligible? The pre-registered rule: yes while its step time is at most "
        f"{cost.negligible_ratio:.2f}x joint's (P* = the smallest measured P above that).",
        "",
    ]
    lines += [f"- {setting_label(m, s)}: {verdict(cost, m, s)}" for m, s in settings]
    return "\n".join(lines)


def plot_cost(cost: CostResult, path: Path) -> None:
    """Step-time ratio MCR / joint against P, one line per distinct (M, subsets), with the
    quartiles of the rounds as bars and the negligible-cost limit labelled."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    for m, subsets in distinct_settings(cost.rows):
        rows = cost.setting(m, subsets)
        med = [r.time_ratio.median for r in rows]
        ax.errorbar(
            [r.P for r in rows],
            med,
            yerr=[
                [x - r.time_ratio.q1 for x, r in zip(med, rows, strict=True)],
                [r.time_ratio.q3 - x for x, r in zip(med, rows, strict=True)],
            ],
            marker="o",
            capsize=3,
            ls="-" if subsets == "all" else "--",
            label=setting_label(m, subsets),
        )
    limit = cost.negligible_ratio
    ax.axhline(limit, color="grey", lw=1.0, ls=":", label=f"negligible-cost limit ({limit:.2f}x)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("permutation draws P")
    ax.set_ylabel("step time MCR / joint (ratio of CPU times)")
    ax.set_title(
        f"Cost of one training step, MCR against joint (batch {cost.batch})\n"
        f"median of {cost.repeats} rounds of {cost.steps_per_repeat} steps; "
        "bars: quartiles of the rounds",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
