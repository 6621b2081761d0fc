"""Where the ensemble's advantage over MCR comes from, and whether a fusion-side remedy keeps it.

The protocol, pre-registered, is docs/examples/ensemble-gap.md::

    python -m benchmarks.ensemble_gap --out runs/ensemble-gap \\
        --mnist data/avmnist/mnist --fsdd data/avmnist/fsdd
    python -m benchmarks.ensemble_gap --settings synthetic undertrained --out runs/ensemble-gap

``--report RESULTS_JSON`` prints the tables of a ``results.json`` again (for example
docs/examples/ensemble-gap-results.json). Writes ``results.json`` and ``results.md`` to
``--out``; each trained model's outputs are kept in ``--out``/runs under a digest of its
settings, so the same command after a stop trains only what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import environment
from benchmarks.ensemble_gap.analysis import analyse_seed, decide, pool_seeds
from benchmarks.ensemble_gap.protocol import (
    ALPHA,
    SETTINGS,
    TRIALS,
    Job,
    run_label,
    run_spec,
    train,
)
from benchmarks.ensemble_gap.report import markdown
from benchmarks.harness.store import TensorStore
from benchmarks.harness.sweep import run_sweep
from examples.common.checkpoint import atomic_write_json
from examples.common.provenance import git, provenance

# --------------------------------------------------------------------------- code state
#: The code a run's numbers depend on (MCR, the shared training loop, the pipelines, this file).
CODE_PATHS: tuple[str, ...] = ("mcr_reg", "examples", "benchmarks")
REPOSITORY = Path(__file__).resolve().parents[2]


def code_state(root: Path = REPOSITORY) -> dict[str, Any]:
    """The commit the code is at and the files under :data:`CODE_PATHS` that differ from it.

    A run made with uncommitted changes cannot be reproduced from a commit; the runner records
    this and warns. ``{"commit": None, ...}`` outside a git checkout.
    """
    head = git(root, "rev-parse", "HEAD")
    status = git(root, "status", "--porcelain", "--", *CODE_PATHS)
    changed = sorted(line[3:] for line in (status or "").splitlines() if line.strip())
    return {"commit": head.strip() if head else None, "uncommitted": changed}


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, help="folder for results and runs/ (required to run)")
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="print the tables of a results.json written before, and train nothing",
    )
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--mnist", default="", help="folder with MNIST's idx files (avmnist)")
    p.add_argument("--fsdd", default="", help="folder with FSDD's recordings (avmnist)")
    p.add_argument("--workers", type=int, default=1, help="processes (one torch thread each)")
    p.add_argument("--max-epochs", type=int, default=None, help="override (smoke runs only)")
    p.add_argument(
        "--synthetic-points",
        nargs=3,
        type=int,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="override the synthetic split sizes (smoke runs only)",
    )
    p.add_argument(
        "--pairs",
        nargs=3,
        type=int,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="override AV-MNIST's pairs per digit (smoke runs only)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def make_jobs(args: argparse.Namespace) -> list[Job]:
    """Every run, synthetic settings first, then AV-MNIST in seed order."""
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"expected distinct seeds, got {args.seeds}")
    digest = ""
    if "avmnist" in args.settings:
        if not args.mnist or not args.fsdd:
            raise ValueError(
                "the avmnist setting needs --mnist and --fsdd (see docs/examples/avmnist.md)"
            )
        from benchmarks.avmnist import protocol as avmnist

        digest = avmnist.source(avmnist.DataSpec(args.mnist, args.fsdd)).digest
    common = {
        "max_epochs": args.max_epochs,
        "synthetic_points": tuple(args.synthetic_points) if args.synthetic_points else None,
        "avmnist_pairs": tuple(args.pairs) if args.pairs else None,
        "mnist": args.mnist,
        "fsdd": args.fsdd,
        "digest_of_data": digest,
    }
    return [
        Job(setting, method, seed, **common)
        for setting in args.settings
        for seed in args.seeds
        for method in ("mcr", "ensemble")
    ]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.report is not None:
        if not args.report.is_file():
            raise SystemExit(f"error: expected a results.json at {args.report}, found none")
        stored: dict[str, Any] = json.loads(args.report.read_text(encoding="utf-8"))
        print(markdown(stored))
        return stored
    if args.out is None:
        raise SystemExit("error: expected --out (or --report RESULTS_JSON)")
    if args.workers < 1:
        raise SystemExit(f"error: expected --workers >= 1, got {args.workers}")
    t0 = time.time()
    code = code_state()
    if code["uncommitted"]:
        print(
            "warning: uncommitted changes to the code these runs depend on ("
            + ", ".join(code["uncommitted"][:5])
            + ("" if len(code["uncommitted"]) <= 5 else ", ...")
            + "); the results will not be reproducible from a commit",
            file=sys.stderr,
        )
    try:
        jobs = make_jobs(args)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    outputs = run_sweep(
        train,
        {(j.setting, j.method, j.seed): j for j in jobs},
        store=TensorStore(str(args.out / "runs"), label=run_label),
        spec=run_spec,
        workers=args.workers,
        desc="ensemble-gap runs",
        progress=not args.no_progress,
        log=None,
    )
    settings = {}
    for name in args.settings:
        per_seed = [
            analyse_seed(outputs[name, "mcr", s], outputs[name, "ensemble", s]) for s in args.seeds
        ]
        settings[name] = pool_seeds(per_seed, args.seeds)
        settings[name]["training_seconds"] = sum(
            outputs[name, m, s]["seconds"] for m in ("mcr", "ensemble") for s in args.seeds
        )
        settings[name]["trials"] = TRIALS[name]
    result = {
        "protocol": "docs/examples/ensemble-gap.md",
        "alpha": ALPHA,
        "settings": settings,
        "decision": decide(settings),
        "command": "python -m benchmarks.ensemble_gap "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "wall_seconds": time.time() - t0,
        "code_at_start": code,
        "environment": environment(torch.device("cpu"), threads=1),
        "provenance": provenance(t0, arguments=argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, args.out / "results.json")
    (args.out / "results.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return result
