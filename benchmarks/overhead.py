"""Training-step time and peak memory of MCR next to joint training and the alternatives.

Measures, in one run, for each model (``resnet18``: CREMA-D audio + video ResNet-18;
``mosei``: three-modality Transformer):

* step time of every variant (see :mod:`benchmarks.common`: ``joint``, ``mcr:P``,
  ``input:P``, ``ogm_ge``, ``agm``, ``mlb``), in interleaved rounds after warm-up; median and
  quartiles of the seconds per step, and of the per-round ratio to ``joint``;
* peak memory of every variant, each in a fresh process on the CPU
  (:func:`benchmarks.common.measure_memory`);
* MCR alone (forward + backward on fixed latents) as the number of draws P and of
  modalities M grow, with ``subsets="all"`` and ``"singletons"``.

It checks the targets of docs/performance.md and writes everything to one JSON file
(schema ``mcr-reg/overhead/1``, documented there) and optionally a plot.

Usage::

    python -m benchmarks.overhead                       # the documented CPU run (~8 min)
    python -m benchmarks.overhead --quick --out /tmp/o.json   # tiny shapes, under a minute
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    ModelConfig,
    Variant,
    build_model,
    build_variant,
    environment,
    make_batch,
    make_step,
    mcr_alone_step,
    measure_memory,
    measure_memory_subprocess,
    paired_ratios,
    quartiles,
    time_interleaved,
)
from examples.common.provenance import provenance

SCHEMA = "mcr-reg/overhead/1"
#: (name, description, limit, "max" if the value must stay below the limit else "min")
TARGETS = (
    ("mcr_time_vs_joint", "ResNet-18: MCR (P=32) step time / joint step time", 1.05, "max"),
    ("input_vs_mcr_time", "ResNet-18: input-space step time / MCR step time, equal P", 5.0, "min"),
    ("mcr_memory_vs_joint", "ResNet-18: MCR (P=32) peak step memory / joint", 1.10, "max"),
)


def build_parser() -> argparse.ArgumentParser:
    """The flags; those left unset get the defaults of a full or a ``--quick`` run in
    :func:`parse_args`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes and few repeats (a smoke run)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--models", nargs="+", default=["resnet18", "mosei"], choices=["resnet18", "mosei"]
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7, quick 2)")
    p.add_argument(
        "--steps", type=int, default=None, help="steps per variant per round (default 1)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the CPUs are shared; see docs)",
    )
    p.add_argument("--resnet-batch", type=int, default=None, help="default 8 (quick 4)")
    p.add_argument(
        "--audio-shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("C", "F", "T"),
        help="audio input per sample (default 1 128 94; CREMA-D is 1 257 188)",
    )
    p.add_argument(
        "--video-shape",
        type=int,
        nargs=4,
        default=None,
        metavar=("C", "T", "H", "W"),
        help="video input per sample (default 3 3 112 112; CREMA-D is 3 3 224 224)",
    )
    p.add_argument(
        "--resnet-variants",
        nargs="+",
        default=None,
        help="default: joint mcr:32 mcr:8 input:8 ogm_ge agm mlb",
    )
    p.add_argument("--mosei-batch", type=int, default=None, help="default 32 (quick 4)")
    p.add_argument("--mosei-steps", type=int, default=None, help="sequence length (default 50)")
    p.add_argument("--mosei-layers", type=int, default=None, help="default 5 (quick 1)")
    p.add_argument(
        "--mosei-variants",
        nargs="+",
        default=None,
        help="default: joint mcr:32 input:32 ogm_ge agm mlb",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument("--no-scaling", action="store_true", help="skip MCR alone vs P and M")
    p.add_argument("--scaling-batch", type=int, default=None, help="default 16 (quick 4)")
    p.add_argument("--scaling-dim", type=int, default=None, help="latent width (default 64)")
    p.add_argument("--scaling-hidden", type=int, default=64, help="fusion-head hidden width")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead.json"))
    p.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags, with the unset ones at the full run's defaults or the ``--quick`` run's."""
    args = build_parser().parse_args(argv)
    q = args.quick
    args.repeats = args.repeats or (2 if q else 7)
    args.steps = args.steps or 1
    args.resnet_batch = args.resnet_batch or (4 if q else 8)
    args.audio_shape = tuple(args.audio_shape or ((1, 32, 24) if q else (1, 128, 94)))
    args.video_shape = tuple(args.video_shape or ((3, 2, 32, 32) if q else (3, 3, 112, 112)))
    args.resnet_variants = args.resnet_variants or (
        ["joint", "mcr:4", "input:2", "mcr:2", "ogm_ge", "agm", "mlb"]
        if q
        else ["joint", "mcr:32", "mcr:8", "input:8", "ogm_ge", "agm", "mlb"]
    )
    args.mosei_batch = args.mosei_batch or (4 if q else 32)
    args.mosei_steps = args.mosei_steps or (6 if q else 50)
    args.mosei_layers = args.mosei_layers or (1 if q else 5)
    args.mosei_variants = args.mosei_variants or (
        ["joint", "mcr:4", "input:4", "ogm_ge", "agm", "mlb"]
        if q
        else ["joint", "mcr:32", "input:32", "ogm_ge", "agm", "mlb"]
    )
    args.scaling_batch = args.scaling_batch or (4 if q else 16)
    args.scaling_dim = args.scaling_dim or (8 if q else 64)
    for name in ("repeats", "steps", "resnet_batch", "mosei_batch", "scaling_batch"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def model_configs(args: argparse.Namespace) -> list[tuple[ModelConfig, list[Variant]]]:
    out = []
    for name in args.models:
        if name == "resnet18":
            cfg = ModelConfig.resnet18(args.resnet_batch, args.audio_shape, args.video_shape)
            specs = args.resnet_variants
        else:
            cfg = ModelConfig.mosei(args.mosei_batch, args.mosei_steps, args.mosei_layers)
            specs = args.mosei_variants
        variants = [Variant.parse(s) for s in specs]
        if variants[0].key != "joint":
            raise SystemExit(
                f"the first {name} variant must be 'joint' (the reference), got {specs}"
            )
        out.append((cfg, variants))
    return out


def clock_name(device: torch.device) -> str:
    """What ``time_s`` measures on ``device``."""
    if device.type == "cpu":
        return "CPU time of the process (time.process_time); wall clock in wall_s"
    return "wall clock after torch.cuda.synchronize"


def primary_clock(
    device: torch.device, wall: dict[str, list[float]], cpu: dict[str, list[float]]
) -> dict[str, list[float]]:
    """CPU seconds on the (shared) CPU, wall-clock seconds on an accelerator."""
    return cpu if device.type == "cpu" else wall


def bench_model(
    config: ModelConfig, variants: list[Variant], args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Time every variant (shared weights, interleaved rounds) and probe its peak memory."""
    print(f"[{config.name}] {config.describe()}", flush=True)
    model = build_model(config, device)
    batch = make_batch(config, device)
    steps = {}
    for v in variants:
        step = make_step(build_variant(v, model, config))
        steps[v.key] = lambda step=step, batch=batch: step(batch)
    wall, cpu = time_interleaved(
        steps, repeats=args.repeats, steps_per_repeat=args.steps, warmup=args.warmup, device=device
    )
    del steps, step, model, batch  # free the shared weights before the memory probes
    times = primary_clock(device, wall, cpu)
    result: dict[str, Any] = {"config": config.describe(), "variants": {}}
    for v in variants:
        entry: dict[str, Any] = {
            "label": v.label,
            "method": v.method,
            "P": v.permutations,
            "time_s": quartiles(times[v.key]),
            "time_vs_joint": paired_ratios(times[v.key], times["joint"]),
            "wall_s": quartiles(wall[v.key]),
            "wall_vs_joint": paired_ratios(wall[v.key], wall["joint"]),
        }
        if not args.no_memory:
            if device.type == "cpu":
                probe = measure_memory_subprocess(config, v, threads=torch.get_num_threads())
            else:
                probe = measure_memory(config, v, device)
            entry["memory"] = {
                "method": probe.method,
                "baseline_bytes": probe.baseline_bytes,
                "peak_bytes": probe.peak_bytes,
                "step_bytes": probe.step_bytes,
            }
        result["variants"][v.key] = entry
        print(
            f"  {v.label:28s} {entry['time_s']['median'] * 1e3:9.1f} ms/step  "
            f"x{entry['time_vs_joint']['median']:.3f} joint"
            + (f"  {entry['memory']['step_bytes'] / 2**20:8.1f} MiB" if "memory" in entry else ""),
            flush=True,
        )
    if not args.no_memory:
        base = result["variants"]["joint"]["memory"]["step_bytes"]
        for entry in result["variants"].values():
            entry["memory"]["vs_joint"] = entry["memory"]["step_bytes"] / base
    return result


def bench_scaling(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """MCR alone: P sweep at M = 2, and M sweep (2..6) at P = 32 for both subset modes."""
    if args.quick:
        grid = [(2, p, "all") for p in (1, 4)] + [
            (m, 2, s) for m in (3, 4) for s in ("all", "singletons")
        ]
    else:
        grid = [(2, p, "all") for p in (1, 2, 4, 8, 16, 32, 64, 128)]
        grid += [(m, 32, s) for m in range(3, 7) for s in ("all", "singletons")]
    rows = []
    steps = {}
    info = {}
    for m, p, s in grid:
        step, head_rows = mcr_alone_step(
            m,
            p,
            s,
            batch=args.scaling_batch,
            dim=args.scaling_dim,
            hidden=args.scaling_hidden,
            device=device,
        )
        key = f"M={m} P={p} {s}"
        steps[key] = step
        info[key] = (m, p, s, head_rows)
    wall, cpu = time_interleaved(
        steps, repeats=args.repeats, steps_per_repeat=args.steps, warmup=args.warmup, device=device
    )
    times = primary_clock(device, wall, cpu)
    for key, (m, p, s, head_rows) in info.items():
        rows.append(
            {"M": m, "P": p, "subsets": s, "head_rows": head_rows, "time_s": quartiles(times[key])}
        )
        print(
            f"  MCR alone {key:22s} rows {head_rows:7d}  {rows[-1]['time_s']['median'] * 1e3:8.2f} ms"
        )
    return rows


def check_targets(models: dict[str, Any]) -> dict[str, Any]:
    """The targets of docs/performance.md on the ResNet-18 results (when measured)."""
    res = models.get("resnet18")
    out: dict[str, Any] = {}
    if res is None:
        return out
    variants = res["variants"]
    values: dict[str, float | None] = {
        "mcr_time_vs_joint": None,
        "input_vs_mcr_time": None,
        "mcr_memory_vs_joint": None,
    }
    if "mcr@32" in variants:
        values["mcr_time_vs_joint"] = variants["mcr@32"]["time_vs_joint"]["median"]
        if "memory" in variants["mcr@32"]:
            values["mcr_memory_vs_joint"] = variants["mcr@32"]["memory"]["vs_joint"]
    for entry in variants.values():
        if entry["method"] == "input" and f"mcr@{entry['P']}" in variants:
            mcr = variants[f"mcr@{entry['P']}"]
            ratio = paired_ratios(entry["time_s"]["values"], mcr["time_s"]["values"])
            values["input_vs_mcr_time"] = ratio["median"]
            out["input_vs_mcr_P"] = entry["P"]
            break
    for name, description, limit, kind in TARGETS:
        value = values[name]
        met = None if value is None else (value <= limit if kind == "max" else value >= limit)
        out[name] = {
            "description": description,
            "value": value,
            "limit": limit,
            "kind": kind,
            "met": met,
        }
    return out


def _plot_model(axes: Any, name: str, res: dict[str, Any]) -> None:
    """One model's row: step time relative to joint (left), peak step memory (right)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    entries = list(res["variants"].values())[::-1]  # joint on top
    labels = [e["label"] for e in entries]
    ys = list(range(len(entries)))
    ratio = [e["time_vs_joint"] for e in entries]
    med = [r["median"] for r in ratio]
    err = [[m - r["q1"] for m, r in zip(med, ratio)], [r["q3"] - m for m, r in zip(med, ratio)]]
    ax = axes[0]
    ax.barh(ys, med, xerr=err, capsize=3, color="tab:blue")
    for y, m in zip(ys, med):
        ax.text(m, y, f" {m:.2f}x", va="center", fontsize=8)
    ax.set_title(f"{name}: step time / joint (median and IQR of paired rounds)", fontsize=9)
    ax = axes[1]
    if all("memory" in e for e in entries):
        mem = [e["memory"]["vs_joint"] for e in entries]
        ax.barh(ys, mem, color="tab:orange")
        for y, m in zip(ys, mem):
            ax.text(m, y, f" {m:.2f}x", va="center", fontsize=8)
    ax.set_title(f"{name}: peak step memory / joint", fontsize=9)
    axes[0].set_xscale("log")
    axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set_xlim(
        0, 1.25 * max(1.10, *(e.get("memory", {}).get("vs_joint", 0) for e in entries))
    )
    for ax, limit in ((axes[0], 1.05), (axes[1], 1.10)):
        ax.set_yticks(ys, labels, fontsize=8)
        ax.axvline(1.0, color="black", lw=0.8)
        if name == "resnet18":
            ax.axvline(limit, color="red", lw=0.8, ls="--", label=f"target {limit}x (MCR P=32)")
            ax.legend(fontsize=7, loc="lower right")


def _plot_scaling(ax_p: Any, ax_n: Any, scaling: list[dict[str, Any]]) -> None:
    """MCR alone: time against the permutation draws P (left) and the modalities M (right)."""
    from matplotlib.ticker import FuncFormatter

    p_rows = [r for r in scaling if r["M"] == 2]
    if p_rows:
        med = [r["time_s"]["median"] * 1e3 for r in p_rows]
        err = [
            [m - r["time_s"]["q1"] * 1e3 for m, r in zip(med, p_rows)],
            [r["time_s"]["q3"] * 1e3 - m for m, r in zip(med, p_rows)],
        ]
        ax_p.errorbar([r["P"] for r in p_rows], med, yerr=err, marker="o", capsize=3)
        ax_p.set_xscale("log", base=2)
        ax_p.set_yscale("log")
        ax_p.set_xlabel("permutation draws P (M = 2)")
        ax_p.set_ylabel("ms (forward + backward)")
        ax_p.set_title("MCR alone vs P", fontsize=9)
    pm = max((r["P"] for r in scaling if r["M"] > 2), default=None)
    for subsets in ("all", "singletons"):
        pts = [r for r in scaling if r["P"] == pm and (r["subsets"] == subsets or r["M"] == 2)]
        if pm is None or len(pts) < 2:
            continue
        pts.sort(key=lambda r: r["M"])
        ax_n.plot(
            [r["M"] for r in pts],
            [r["time_s"]["median"] * 1e3 for r in pts],
            marker="o",
            label=f"subsets={subsets!r}",
        )
        ax_n.set_xlabel(f"modalities M (P = {pm})")
        ax_n.set_ylabel("ms (forward + backward)")
        ax_n.set_yscale("log")
        ax_n.set_title("MCR alone vs M", fontsize=9)
        ax_n.legend(fontsize=8)
    for ax in (ax_p, ax_n):
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.tick_params(axis="y", which="minor", labelsize=7)


def plot(result: dict[str, Any], path: Path) -> None:
    """One row per model (step time and peak memory relative to joint), then MCR alone vs P, M."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result["models"]
    rows = len(models) + 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 3.6 * rows), squeeze=False)
    for row, (name, res) in enumerate(models.items()):
        _plot_model(axes[row], name, res)
    _plot_scaling(*axes[-1], result.get("scaling") or [])
    env = result["meta"]["environment"]
    fig.suptitle(
        f"mcr-reg overhead on {env['device']} ({env['cpu_count']} CPUs, "
        f"{env['torch_threads']} torch thread(s), torch {env['torch']}, {env['date'][:10]})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    """The result tables as Markdown (what docs/performance.md shows)."""
    lines = []
    for name, res in result["models"].items():
        lines += [
            f"**{name}** {json.dumps(res['config'])}",
            "",
            "| variant | ms / step (median [IQR]) | x joint (median [IQR]) | peak step memory (MiB) | x joint |",
            "|---|---|---|---|---|",
        ]
        for entry in res["variants"].values():
            t, r = entry["time_s"], entry["time_vs_joint"]
            mem = entry.get("memory")
            lines.append(
                f"| {entry['label']} | {t['median'] * 1e3:.1f} [{t['q1'] * 1e3:.1f}, {t['q3'] * 1e3:.1f}] "
                f"| {r['median']:.3f} [{r['q1']:.3f}, {r['q3']:.3f}] "
                f"| {mem['step_bytes'] / 2**20:.0f} | {mem['vs_joint']:.3f} |"
                if mem
                else f"| {entry['label']} | {t['median'] * 1e3:.1f} [{t['q1'] * 1e3:.1f}, {t['q3'] * 1e3:.1f}] "
                f"| {r['median']:.3f} [{r['q1']:.3f}, {r['q3']:.3f}] | – | – |"
            )
        lines.append("")
    if result.get("scaling"):
        lines += [
            "| M | P | subsets | fusion-head rows | ms (median [IQR]) |",
            "|---|---|---|---|---|",
        ]
        for r in result["scaling"]:
            t = r["time_s"]
            lines.append(
                f"| {r['M']} | {r['P']} | {r['subsets']} | {r['head_rows']} | "
                f"{t['median'] * 1e3:.2f} [{t['q1'] * 1e3:.2f}, {t['q3'] * 1e3:.2f}] |"
            )
        lines.append("")
    for t in result.get("targets", {}).values():
        if isinstance(t, dict):
            value = "not measured" if t["value"] is None else f"{t['value']:.3f}"
            sign = "<=" if t["kind"] == "max" else ">="
            verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            lines.append(f"- {t['description']}: {value} (target {sign} {t['limit']}): {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.time()
    command = "python -m benchmarks.overhead " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "meta": {
            "command": command.strip(),
            "quick": args.quick,
            "repeats": args.repeats,
            "steps_per_repeat": args.steps,
            "warmup_rounds": args.warmup,
            "clock": clock_name(device),
            "environment": environment(device),
        },
        "models": {},
    }
    for config, variants in model_configs(args):
        result["models"][config.name] = bench_model(config, variants, args, device)
    if not args.no_scaling:
        print(f"[scaling] batch {args.scaling_batch}, latent width {args.scaling_dim}", flush=True)
        result["scaling"] = bench_scaling(args, device)
        result["meta"]["scaling"] = {
            "batch": args.scaling_batch,
            "dim": args.scaling_dim,
            "head": f"concat -> Linear(M*{args.scaling_dim}, {args.scaling_hidden}) -> ReLU -> Linear(6)",
        }
    result["targets"] = check_targets(result["models"])
    result["meta"]["wall_s"] = time.time() - started
    result["meta"]["load_average_end"] = environment(device).get("load_average")
    result["provenance"] = provenance(started, arguments=argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.plot is not None:
        plot(result, args.plot)
    print(markdown(result))
    print(f"wrote {args.out} in {result['meta']['wall_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
