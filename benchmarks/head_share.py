"""What the fusion head's share c(S) costs: MCR alone with the old and the new head rule.

For M = 2 (greedy: c = 0 for both subsets) and M = 3 (greedy: c = -1/3 and 1/3), forward and
backward of MCR alone on fixed latents (:func:`benchmarks.common.mcr_alone_step`), timed in
interleaved rounds:

* ``sum``: ``head_gradient="sum"``, the rule of 0.1 (one head pass);
* ``mean:module``: the default with an ``nn.Module`` head (one pass through
  ``torch.func.functional_call`` when every subset has the same c, else a second pass);
* ``mean:function``: the default with a plain function over the head (always a second pass
  on the detached rows when some c != 1).

Reports the median CPU and wall seconds per step and the per-round ratios to ``sum``.

Usage::

    python -m benchmarks.head_share --out benchmarks/results/head_share_cpu.json
    python -m benchmarks.head_share --quick --out /tmp/h.json     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    environment,
    mcr_alone_step,
    paired_ratios,
    quartiles,
    time_interleaved,
)
from examples.common.provenance import provenance

SCHEMA = "mcr-reg/head-share/1"
VARIANTS: dict[str, dict[str, Any]] = {
    "sum": {"head_gradient": "sum"},
    "mean:module": {"head_gradient": "mean"},
    "mean:function": {"head_gradient": "mean", "closure": True},
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes and few repeats")
    p.add_argument("--device", default="cpu")
    p.add_argument("--modalities", type=int, nargs="+", default=[2, 3])
    p.add_argument("--permutations", type=int, default=None, help="P (default 32, quick 2)")
    p.add_argument("--batch", type=int, default=None, help="default 32 (quick 4)")
    p.add_argument("--dim", type=int, default=None, help="latent width (default 512, quick 8)")
    p.add_argument("--hidden", type=int, default=None, help="head hidden width (default 256)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7, quick 2)")
    p.add_argument("--steps", type=int, default=None, help="steps per round (default 5)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/head_share.json"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    started = time.time()
    args = parse_args(argv)
    device = torch.device(args.device)
    quick = args.quick
    shape = {
        "permutations": args.permutations or (2 if quick else 32),
        "batch": args.batch or (4 if quick else 32),
        "dim": args.dim or (8 if quick else 512),
        "hidden": args.hidden or (16 if quick else 256),
    }
    repeats, steps = args.repeats or (2 if quick else 7), args.steps or (1 if quick else 5)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "environment": environment(device),
        "shape": shape,
        "repeats": repeats,
        "steps_per_repeat": steps,
        "modalities": {},
    }
    for m in args.modalities:
        fns = {
            key: mcr_alone_step(
                m,
                shape["permutations"],
                "all",
                batch=shape["batch"],
                dim=shape["dim"],
                hidden=shape["hidden"],
                device=device,
                **options,
            )[0]
            for key, options in VARIANTS.items()
        }
        wall, cpu = time_interleaved(
            fns, repeats=repeats, steps_per_repeat=steps, warmup=1, device=device
        )
        result["modalities"][str(m)] = {
            key: {
                "cpu_s": quartiles(cpu[key]),
                "wall_s": quartiles(wall[key]),
                "cpu_vs_sum": paired_ratios(cpu[key], cpu["sum"]),
                "wall_vs_sum": paired_ratios(wall[key], wall["sum"]),
            }
            for key in VARIANTS
        }
        line = ", ".join(
            f"{k} {result['modalities'][str(m)][k]['cpu_vs_sum']['median']:.3f}x" for k in VARIANTS
        )
        print(f"M = {m}: CPU time vs sum: {line}", flush=True)
    result["provenance"] = provenance(started, arguments=argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
