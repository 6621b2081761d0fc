"""Float32 accuracy of the Jensen-Shannon divergence and its gradient, by logit scale.

For each logit scale s, two kinds of row pairs (4,096 rows, 10 classes): *independent* (both
predictions drawn at scale s) and *close* (the second is the first plus a tenth of s in
noise). ``mcr_reg.functional.jensen_shannon`` runs in float32 and is compared with a float64
evaluation of the definition; the table gives the relative error of the gradient (norm of the
difference over norm of the float64 gradient, both logit tensors) and the largest relative
error of the value, next to release 0.2's formula (log-probabilities and softplus through
autograd) for comparison. The figures of docs/semantics.md ("L_MIPD") come from this script.

Usage::

    python -m benchmarks.jsd_accuracy --out benchmarks/results/jsd_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from examples.common.provenance import provenance
from mcr_reg import functional as MF

LN2 = math.log(2.0)
SCALES = (10.0, 1.0, 0.1, 0.01, 0.003, 0.001, 0.0001)


def definition(x: Tensor, y: Tensor) -> Tensor:
    """The JSD from its definition, for float64 inputs."""
    log_p, log_q = x.log_softmax(-1), y.log_softmax(-1)
    log_m = torch.logaddexp(log_p, log_q) - LN2
    return 0.5 * ((log_p.exp() * (log_p - log_m)).sum(-1) + (log_q.exp() * (log_q - log_m)).sum(-1))


def release_0_2(x: Tensor, y: Tensor) -> Tensor:
    """Release 0.2's formula: log-probabilities, ``ln 2 - softplus``, autograd, the clamp."""
    log_p, log_q = x.log_softmax(-1), y.log_softmax(-1)
    delta = log_q - log_p
    kl_pm = (log_p.exp() * (LN2 - F.softplus(delta))).sum(-1)
    kl_qm = (log_q.exp() * (LN2 - F.softplus(-delta))).sum(-1)
    return (0.5 * (kl_pm + kl_qm)).clamp(0.0, LN2)


def value_and_gradient(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor):
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    value = fn(x, y)
    value.sum().backward()
    return value.detach().double(), torch.cat([x.grad, y.grad]).double()  # type: ignore[list-item]


def errors(fn, x64: Tensor, y64: Tensor) -> dict[str, float]:
    value_ref, grad_ref = value_and_gradient(definition, x64, y64)
    value, grad = value_and_gradient(fn, x64.float(), y64.float())
    return {
        "gradient": float((grad - grad_ref).norm() / grad_ref.norm()),
        "value": float((value - value_ref).abs().max() / value_ref.abs().max()),
    }


def measure(rows: int, classes: int, seed: int) -> list[dict[str, object]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for scale in SCALES:
        x = torch.randn(rows, classes, generator=g, dtype=torch.float64) * scale
        pairs = {
            "independent": torch.randn(rows, classes, generator=g, dtype=torch.float64) * scale,
            "close": x + torch.randn(rows, classes, generator=g, dtype=torch.float64) * scale * 0.1,
        }
        for kind, y in pairs.items():
            out.append(
                {
                    "scale": scale,
                    "pairs": kind,
                    "mcr_reg": errors(MF.jensen_shannon, x, y),
                    "release_0_2": errors(release_0_2, x, y),
                }
            )
    return out


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| scale | pairs | gradient (now) | gradient (0.2) | value (now) | value (0.2) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        now, old = r["mcr_reg"], r["release_0_2"]
        lines.append(
            f"| {r['scale']:g} | {r['pairs']} | {now['gradient']:.1e} | "  # type: ignore[index]
            f"{old['gradient']:.1e} | {now['value']:.1e} | {old['value']:.1e} |"  # type: ignore[index]
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    started = time.time()
    results = measure(args.rows, args.classes, args.seed)
    print(table(results))
    if args.out is not None:
        record = {
            "schema": "mcr-reg/jsd-accuracy/1",
            "settings": {"rows": args.rows, "classes": args.classes, "seed": args.seed},
            "results": results,
            "provenance": provenance(started, arguments=argv),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
