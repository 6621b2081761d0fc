"""Where the joint-vs-ensemble gap of the synthetic benchmark comes from.

    python -m benchmarks.synthetic.diagnose --u1 0.7 --seeds 0 1 2
    python -m benchmarks.synthetic.diagnose --regime undertrained --u1 0.7

For each method (selected trial of the benchmark's grid given with ``--option``), per seed:
test accuracy of the multimodal prediction on each kind of point (shared, U1-only, U2-only),
and of each modality's *own share* of that prediction: for late fusion ``W [z_1; z_2] + b``
the share of modality m is ``W_m z_m + b / 2`` (for the ensemble: its unimodal model). If the
share of modality 1 is as accurate on the U1 points under joint training as the unimodal
model is, the slow modality's encoder is not under-trained; the gap then comes from how the
other modality's output is combined with it on points where that modality is pure noise. The
mean spread (std over classes) of each share's logits shows how loud each modality is there.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from benchmarks.harness.tuning import Budget
from benchmarks.synthetic.generator import CATEGORIES, SyntheticSpec
from benchmarks.synthetic.protocol import REGIMES
from benchmarks.synthetic.training import fit_trial
from examples.common.methods.base import unimodal_outputs_from_fusion


def diagnose_one(
    spec: SyntheticSpec, budget: Budget, method: str, options: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Train one method on one seed; per-kind accuracy of the output and of each share."""
    m, data, _ = fit_trial(spec, budget, method, options, seed)
    m.eval()
    test = data["test"].tensors
    stage = m.stages[-1]
    with torch.no_grad():
        latents = m.encode(test)
        output, unimodal = m.heads(latents, stage)
        if stage != "unimodal":  # the fused prediction's per-modality shares
            unimodal = unimodal_outputs_from_fusion(m.model, latents)
    assert unimodal is not None
    labels, cats = test["label"], test["category"]
    result: dict[str, Any] = {"method": method, "seed": seed}
    for c, kind in enumerate(CATEGORIES):
        sel = cats == c
        result[kind] = {"output": _accuracy(output[sel], labels[sel])}
        for mod, share in unimodal.items():
            result[kind][mod] = _accuracy(share[sel], labels[sel])
            result[kind][f"{mod}_spread"] = float(share[sel].std(dim=-1).mean())
    return result


def _accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((outputs.argmax(dim=-1) == labels).float().mean())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regime", choices=sorted(REGIMES), default="fusion", help="data regime")
    p.add_argument("--u1", type=float, default=0.7, help="U1 fraction (U2 = 0.2, S the rest)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--option",
        action="append",
        default=None,
        metavar="METHOD=JSON",
        help="method and its options, e.g. mcr='{\"mipd_weight\": 0.1}' (repeatable); "
        "default: joint, ensemble, mcr, mcr_uni_pre with the quick run's selected trials",
    )
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    return p


#: The trials the quick run selected at U1/S = 7 (docs/examples/synthetic.md).
DEFAULT_METHODS: dict[str, dict[str, Any]] = {
    "joint": {"lr": 1e-3},
    "ensemble": {"lr": 1e-3},
    "mcr": {"mipd_weight": 0.1},
    "mcr_uni_pre": {"mipd_weight": 1.0},
}


def _parse_option(text: str) -> tuple[str, dict[str, Any]]:
    if "=" not in text:
        raise ValueError(f"expected --option METHOD=JSON, got {text!r}")
    name, raw = text.split("=", 1)
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object of options for {name!r}, got {raw!r}")
    return name, value


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = build_parser().parse_args(argv)
    methods = dict(_parse_option(t) for t in args.option) if args.option else DEFAULT_METHODS
    spec = replace(REGIMES[args.regime], u1=args.u1, s=round(0.8 - args.u1, 10), u2=0.2)
    if args.n_train is not None:
        spec = replace(spec, n_train=args.n_train, n_val=args.n_train, n_test=args.n_train)
    budget = Budget()
    if args.max_epochs is not None:
        budget = replace(budget, max_epochs=args.max_epochs)
    rows = []
    for method, options in methods.items():
        for seed in args.seeds:
            row = diagnose_one(spec, budget, method, options, seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
