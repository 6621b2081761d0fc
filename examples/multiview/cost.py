"""Cost of MCR against joint training on the multi-view model, M = 2, 3 and 6 views.

One training step (forward, backward, Adam) of the benchmark's model at its batch size, joint
against MCR with ``P`` permutation draws and ``subsets="all"`` or ``"singletons"``. Timing and
the step functions come from :mod:`benchmarks.common` (interleaved rounds; the primary clock
on the CPU is the process's CPU time, which does not count waiting for a shared core).

Memory is measured as the bytes of the tensors autograd saves for the backward pass during
the step's forward (distinct storages, counted with ``torch.autograd.graph.saved_tensors_hooks``):
exact and repeatable, and the part of a step's memory that MCR adds to. Parameters, gradients
and optimizer state are the same for both up to MCR's small own parameters.

Pre-registered rule: MCR's cost is *negligible* while its median step time is at most
:data:`NEGLIGIBLE` times joint's; the reported ``P*`` is the smallest measured P above that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import make_step, paired_ratios, summarise, time_interleaved
from examples.common.methods import Method, build_method
from examples.common.task import TaskSpec
from examples.multiview.data import NUM_CLASSES, VIEW_DIMS, VIEWS
from examples.multiview.model import build_model

#: Step-time ratio up to which MCR's cost counts as negligible.
NEGLIGIBLE = 1.10
#: View sets of the cost run (M = 2, 3, 6).
COST_VIEWS: dict[int, tuple[str, ...]] = {2: VIEWS[:2], 3: VIEWS[:3], 6: VIEWS}


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


def measure_cost(
    *,
    quick: bool = False,
    batch: int = 64,
    ps: tuple[int, ...] | None = None,
    repeats: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Step time and saved-tensor memory of MCR / joint for M = 2, 3, 6 and both subset modes.

    Returns a dict with ``rows`` (one per M, subsets, P: ``time_ratio`` median and quartiles,
    ``memory_ratio``, the absolute numbers), ``p_star`` per (M, subsets) and the settings.
    """
    torch.set_num_threads(1)
    ps = ps or ((1, 32) if quick else (1, 4, 16, 32, 64))
    repeats = repeats or (3 if quick else 7)
    steps = steps or (3 if quick else 5)
    device = torch.device("cpu")
    rows: list[dict[str, Any]] = []
    p_star: dict[str, int | None] = {}
    for m, views in COST_VIEWS.items():
        data = _batch(views, batch)
        for subsets in ("all", "singletons"):
            variants = ["joint", *(f"mcr:{p}" for p in ps)]
            fns = {}
            mem = {}
            for v in variants:
                method = _method(views, v, subsets)
                mem[v] = _memory(method, data)
                step = make_step(method, lr=1e-3)
                fns[v] = lambda step=step, data=data: step(data)
            _, cpu = time_interleaved(
                fns, repeats=repeats, steps_per_repeat=steps, warmup=1, device=device
            )
            star = None
            for p in ps:
                key = f"mcr:{p}"
                ratio = paired_ratios(cpu[key], cpu["joint"])
                rows.append(
                    {
                        "M": m,
                        "views": list(views),
                        "subsets": subsets,
                        "P": p,
                        "time_s": summarise(cpu[key])["median"],
                        "joint_time_s": summarise(cpu["joint"])["median"],
                        "time_ratio": {k: ratio[k] for k in ("median", "q1", "q3")},
                        "saved_bytes": mem[key],
                        "joint_saved_bytes": mem["joint"],
                        "memory_ratio": mem[key] / mem["joint"],
                    }
                )
                if star is None and ratio["median"] > NEGLIGIBLE:
                    star = p
            p_star[f"M={m} {subsets}"] = star
    return {
        "batch": batch,
        "P": list(ps),
        "repeats": repeats,
        "steps_per_repeat": steps,
        "clock": "CPU time of the process (time.process_time), 1 thread",
        "memory": "bytes of distinct storages saved for backward in one training step",
        "negligible_ratio": NEGLIGIBLE,
        "rows": rows,
        "p_star": p_star,
    }


def markdown(cost: dict[str, Any]) -> str:
    """The cost table of results.md."""
    lines = [
        f"## Cost of MCR against joint (batch {cost['batch']}, {cost['clock']})",
        "",
        "| M | subsets | P | step time MCR / joint (median [q1, q3]) | saved-tensor memory MCR / joint | joint step (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for r in cost["rows"]:
        t = r["time_ratio"]
        lines.append(
            f"| {r['M']} | {r['subsets']} | {r['P']} | {t['median']:.2f} [{t['q1']:.2f}, "
            f"{t['q3']:.2f}] | {r['memory_ratio']:.2f} | {1e3 * r['joint_time_s']:.2f} |"
        )
    lines += ["", f"Smallest measured P whose time ratio exceeds {cost['negligible_ratio']}:", ""]
    lines += [
        f"- {k}: {v if v is not None else 'none (negligible at every P measured)'}"
        for k, v in cost["p_star"].items()
    ]
    return "\n".join(lines)


def plot_cost(cost: dict[str, Any], path: Any) -> None:
    """Step-time ratio MCR / joint against P, one line per (M, subsets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    keys = sorted({(r["M"], r["subsets"]) for r in cost["rows"]})
    for m, subsets in keys:
        rows = [r for r in cost["rows"] if r["M"] == m and r["subsets"] == subsets]
        ax.plot(
            [r["P"] for r in rows],
            [r["time_ratio"]["median"] for r in rows],
            marker="o",
            ls="-" if subsets == "all" else "--",
            label=f"M={m} {subsets}",
        )
    ax.axhline(cost["negligible_ratio"], color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("permutation draws P")
    ax.set_ylabel("step time MCR / joint (CPU time)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
