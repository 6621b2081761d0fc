"""Where the ensemble's advantage over MCR comes from, and whether a fusion-side remedy keeps it.

On each competition setting (the synthetic benchmark and its under-training regime at
U1/S = 7, and AV-MNIST), for every seed: train MCR and the ensemble with the trials their own
benchmarks selected, then compare on the test split MCR's fused prediction, MCR's own
unimodal heads, the ensemble's unimodal models, the ensemble and three remedies applied to the
trained MCR model (examples/common/ensemble_gap.py). The protocol, pre-registered, is
docs/examples/ensemble-gap.md::

    python -m benchmarks.ensemble_gap --out runs/ensemble-gap \\
        --mnist data/avmnist/mnist --fsdd data/avmnist/fsdd
    python -m benchmarks.ensemble_gap --settings synthetic undertrained --out runs/ensemble-gap

``--report RESULTS_JSON`` prints the tables of a ``results.json`` again (for example
docs/examples/ensemble-gap-results.json). Writes ``results.json`` and ``results.md`` to ``--out``; each trained model's outputs are kept
in ``--out``/runs under a digest of its settings, so the same command after a stop trains only
what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.common import environment
from benchmarks.harness.fit import fit_and_score
from benchmarks.harness.paired_stats import item_resolution, mean_std, paired_comparison, verdict
from benchmarks.harness.progress import run_jobs
from benchmarks.harness.store import spec_digest
from benchmarks.harness.tuning import Budget as SyntheticBudget
from examples.common import ensemble_gap as gap
from examples.common.checkpoint import atomic_write_json
from examples.common.methods import Method, build_method
from examples.common.model import ConcatFusionHead, MultimodalModel
from examples.common.provenance import git, provenance
from examples.common.task import TaskSpec
from examples.common.trainer import seed_everything
from examples.synthetic.generator import SyntheticSpec, make_datasets
from mcr_reg.functional import pool_latent

SETTINGS: tuple[str, ...] = ("synthetic", "undertrained", "avmnist")
#: The point of both synthetic regimes (U1/S = 7, the most imbalanced).
SYNTHETIC_POINT: dict[str, float] = {"u1": 0.7, "s": 0.1, "u2": 0.2}
#: The ``undertrained`` regime of docs/examples/synthetic.md (loud nuisance in the slow
#: modality, a 2048-dimensional fast modality).
UNDERTRAINED: dict[str, Any] = {
    "input_dims": (128, 2048),
    "noise": (0.5, 1.0),
    "nuisance_dims": (56, 0),
    "nuisance_std": (12.0, 0.0),
}
#: The trials each setting's own benchmark selected on validation (fixed, not tuned here).
TRIALS: dict[str, dict[str, dict[str, Any]]] = {
    "synthetic": {"mcr": {"mipd_weight": 1.0}, "ensemble": {"lr": 1e-3}},
    "undertrained": {"mcr": {"mipd_weight": 1.0}, "ensemble": {"lr": 1e-3}},
    "avmnist": {"mcr": {"mipd_weight": 1.0}, "ensemble": {"lr": 3e-3}},
}
REMEDIES: tuple[str, ...] = (
    "fused_and_unimodal_heads",
    "refit_fusion_head",
    "temperature_scaled_combination",
)
#: Bonferroni over the three remedies (docs/examples/ensemble-gap.md).
ALPHA = 0.05 / len(REMEDIES)
#: A Wilcoxon test over fewer seeds cannot reach ALPHA.
MIN_SEEDS_FOR_VERDICT = 7


@dataclass(frozen=True)
class Job:
    """One training run: ``method`` ("mcr" or "ensemble") on ``setting`` with ``seed``."""

    setting: str
    method: str
    seed: int
    runs: str = ""
    max_epochs: int | None = None
    synthetic_points: tuple[int, int, int] | None = None
    avmnist_pairs: tuple[int, int, int] | None = None
    mnist: str = ""
    fsdd: str = ""
    digest_of_data: str = field(default="", compare=False)


def synthetic_spec(setting: str, points: tuple[int, int, int] | None = None) -> SyntheticSpec:
    """The generator settings of ``synthetic`` (the ``fusion`` regime) or ``undertrained``."""
    extra = UNDERTRAINED if setting == "undertrained" else {}
    sizes = {}
    if points is not None:
        sizes = dict(zip(("n_train", "n_val", "n_test"), points, strict=True))
    return SyntheticSpec(**SYNTHETIC_POINT, **extra, **sizes)


def synthetic_model(spec: SyntheticSpec, budget: SyntheticBudget) -> MultimodalModel:
    """The synthetic benchmark's model: per modality ``Linear-ReLU-Linear``, late fusion."""
    encoders = {
        f"m{i + 1}": nn.Sequential(
            nn.Linear(d, budget.hidden), nn.ReLU(), nn.Linear(budget.hidden, budget.latent)
        )
        for i, d in enumerate(spec.input_dims)
    }
    dims = {m: budget.latent for m in encoders}
    return MultimodalModel(encoders, ConcatFusionHead(list(dims.values()), spec.num_classes), dims)


def run_spec(job: Job) -> dict[str, Any]:
    """Everything that decides the run's outputs (the key of its stored file)."""
    spec: dict[str, Any] = {
        "setting": job.setting,
        "method": job.method,
        "trial": TRIALS[job.setting][job.method],
        "seed": job.seed,
        "max_epochs": job.max_epochs,
    }
    if job.setting == "avmnist":
        spec.update(pairs=job.avmnist_pairs, data=job.digest_of_data)
    else:
        spec["data"] = asdict(synthetic_spec(job.setting, job.synthetic_points))
    return spec


def _build(job: Job) -> tuple[Method, dict[str, Any], dict[str, Any]]:
    """Data sets, the method on a fresh model (seeded as the benchmarks seed), the budget."""
    trial = dict(TRIALS[job.setting][job.method])
    if job.setting == "avmnist":
        from examples.avmnist import run as avmnist
        from examples.avmnist.data import NUM_CLASSES, PairCounts, build_datasets
        from examples.avmnist.model import build_model

        budget = avmnist.Budget()
        counts = PairCounts(*job.avmnist_pairs) if job.avmnist_pairs else PairCounts()
        source = avmnist.source(avmnist.DataSpec(job.mnist, job.fsdd))
        datasets, _ = build_datasets(source, counts, job.seed)
        seed_everything(job.seed)
        model = build_model(budget.spec_size, channels=budget.channels)
        name, fixed = avmnist.VARIANTS.get(job.method, (job.method, {}))
        classes = NUM_CLASSES
        settings = asdict(budget)
    else:
        spec = synthetic_spec(job.setting, job.synthetic_points)
        sbudget = SyntheticBudget()
        datasets = make_datasets(spec, job.seed)
        seed_everything(job.seed)
        model = synthetic_model(spec, sbudget)
        name, fixed, classes = job.method, {}, spec.num_classes
        settings = asdict(sbudget)
    settings["lr"] = float(trial.pop("lr", settings["lr"]))
    if job.max_epochs is not None:
        settings["max_epochs"] = job.max_epochs
    task = TaskSpec("classification", num_classes=classes)
    method = build_method(name, model, task, {**fixed, **trial})
    method.set_seed(job.seed)
    return method, datasets, settings


@torch.no_grad()
def model_outputs(method: Method, dataset: Any) -> dict[str, Any]:
    """The trained method's outputs on a whole split: final logits, unimodal logits, pooled
    latents, labels (and the synthetic point kinds, ``category``)."""
    method.eval()
    tensors = dataset.tensors
    latents = method.encode({m: tensors[m] for m in method.model.modalities})
    final, unimodal = method.heads(latents, method.stages[-1])
    out: dict[str, Any] = {
        "logits": final.float(),
        "unimodal": {m: v.float() for m, v in (unimodal or {}).items()},
        "latents": {m: pool_latent(z).float() for m, z in latents.items()},
        "labels": tensors["label"],
    }
    if "category" in tensors:
        out["category"] = tensors["category"]
    return out


def train(job: Job) -> dict[str, Any]:
    """Train the job's method to early stopping; its outputs on validation and test."""
    t0 = time.time()
    torch.set_num_threads(1)
    method, datasets, b = _build(job)
    scores, _ = fit_and_score(
        method,
        datasets,
        batch_size=b["batch_size"],
        max_epochs=b["max_epochs"],
        patience=b["patience"],
        lr=b["lr"],
        weight_decay=b["weight_decay"],
        seed=job.seed,
    )
    result = {
        "scores": scores,
        "val": model_outputs(method, datasets["val"]),
        "test": model_outputs(method, datasets["test"]),
        "train": model_outputs(method, datasets["train"]),
        "modalities": list(method.model.modalities),
        "seconds": time.time() - t0,
    }
    if job.method == "mcr":
        linear = method.model.fusion_head.linear
        result["head"] = {"weight": linear.weight.detach().clone(), "bias": linear.bias.detach()}
    return result


def train_or_load(job: Job) -> dict[str, Any]:
    """:func:`train`, or the outputs stored by an earlier run of the same job."""
    path = (
        Path(job.runs)
        / f"{job.setting}-{job.method}-seed{job.seed}-{spec_digest(run_spec(job))}.pt"
    )
    if path.is_file():
        return torch.load(path, weights_only=False)
    result = train(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(result, tmp)
    os.replace(tmp, path)
    return result


# --------------------------------------------------------------------------- one seed
def predictors(mcr: dict[str, Any], ens: dict[str, Any], num_classes: int) -> dict[str, Tensor]:
    """Test probabilities of every predictor and remedy of the protocol, for one seed."""
    mods = mcr["modalities"]
    val, test = mcr["val"], mcr["test"]
    if not test["unimodal"]:
        raise ValueError("expected MCR with its own unimodal heads (unimodal_weight > 0)")
    heads = [test["unimodal"][m] for m in mods]
    out = {"mcr_fused": test["logits"].softmax(-1)}
    out.update({f"mcr_head_{m}": h.softmax(-1) for m, h in zip(mods, heads, strict=True)})
    out["mcr_heads_averaged"] = gap.average_probabilities(heads)
    out.update({f"ensemble_{m}": ens["test"]["unimodal"][m].softmax(-1) for m in mods})
    out["ensemble"] = gap.average_probabilities([ens["test"]["unimodal"][m] for m in mods])
    out["fused_and_unimodal_heads"] = gap.fused_and_unimodal_heads(test["logits"], heads)
    out["refit_fusion_head"] = gap.refit_fusion_head(
        [val["latents"][m] for m in mods],
        val["labels"],
        [test["latents"][m] for m in mods],
        num_classes=num_classes,
    ).softmax(-1)
    out["temperature_scaled_combination"] = gap.temperature_scaled_combination(
        [val["logits"], *(val["unimodal"][m] for m in mods)],
        val["labels"],
        [test["logits"], *heads],
    )
    return out


def training_fit(mcr: dict[str, Any], ens: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """How each trained part fits the training split: accuracy and mean top probability,
    overall and per kind of point where the data has kinds (synthetic)."""
    mods, train = mcr["modalities"], mcr["train"]
    logits = {"mcr_fused": train["logits"]}
    logits.update({f"mcr_head_{m}": train["unimodal"][m] for m in mods})
    logits.update({f"ensemble_{m}": ens["train"]["unimodal"][m] for m in mods})
    probs = {k: v.softmax(-1) for k, v in logits.items()}
    probs["ensemble"] = gap.average_probabilities([ens["train"]["unimodal"][m] for m in mods])
    labels = train["labels"]
    kinds = {"all": torch.ones_like(labels, dtype=torch.bool)}
    if "category" in train:
        kinds.update({n: train["category"] == c for c, n in enumerate(("shared", "u1", "u2"))})
    out: dict[str, dict[str, Any]] = {}
    for k, p in probs.items():
        conf, pred = p.max(dim=-1)
        out[k] = {
            kind: {
                "accuracy": float((pred[mask] == labels[mask]).float().mean()),
                "confidence": float(conf[mask].mean()),
            }
            for kind, mask in kinds.items()
            if bool(mask.any())
        }
    return out


def analyse_seed(mcr: dict[str, Any], ens: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, calibration, reliance and error overlap of one seed's predictors."""
    labels = mcr["test"]["labels"]
    if not torch.equal(labels, ens["test"]["labels"]):
        raise ValueError("expected MCR and the ensemble to be tested on the same points")
    mods = mcr["modalities"]
    probs = predictors(mcr, ens, int(mcr["test"]["logits"].shape[1]))
    right = {k: p.argmax(-1) == labels for k, p in probs.items()}
    scores = {
        k: {
            "accuracy": gap.accuracy(p, labels),
            "ece": gap.expected_calibration_error(p, labels),
            "nll": gap.negative_log_likelihood(p, labels),
        }
        for k, p in probs.items()
    }
    if "category" in mcr["test"]:
        cats = mcr["test"]["category"]
        for k in probs:
            scores[k]["per_category"] = {
                name: float(right[k][cats == c].float().mean()) if bool((cats == c).any()) else None
                for c, name in enumerate(("shared", "u1", "u2"))
            }
    shares = gap.concat_head_shares(
        mcr["head"]["weight"], mcr["head"]["bias"], [mcr["test"]["latents"][m] for m in mods]
    )
    ens_logp = [ens["test"]["unimodal"][m].log_softmax(-1) for m in mods]
    reliance = {
        "mcr_fused": dict(zip(mods, gap.spread_reliance(shares).tolist(), strict=True)),
        "ensemble": dict(zip(mods, gap.spread_reliance(ens_logp).tolist(), strict=True)),
        "mcr_fused_share_accuracy": {
            m: gap.accuracy(s, labels) for m, s in zip(mods, shares, strict=True)
        },
    }
    overlap = {
        k: gap.error_overlap(right["mcr_fused"], right[k]) for k in probs if k != "mcr_fused"
    }
    ensemble_only = right["ensemble"] & ~right["mcr_fused"]
    recoverable = {k: int((right[k] & ensemble_only).sum()) for k in probs}
    result = {
        "n_test": int(labels.numel()),
        "scores": scores,
        "reliance": reliance,
        "overlap_with_mcr_fused": overlap,
        "ensemble_right_mcr_fused_wrong": int(ensemble_only.sum()),
        "of_those_right": recoverable,
    }
    if "train" in mcr and "train" in ens:  # runs stored before the training split was kept lack it
        result["training_fit"] = training_fit(mcr, ens)
    return result


# --------------------------------------------------------------------------- summary
def paired_tests(acc: dict[str, list[float]], step: float) -> dict[str, dict[str, Any]]:
    """The protocol's paired tests of each remedy (and MCR's own predictors) against the
    ensemble and against MCR's fused prediction, over seeds; ``acc``: test accuracy per seed
    of every predictor, ``step``: one test point as a fraction (differences round to it)."""
    tests = {}
    for k in (*REMEDIES, "mcr_fused", "mcr_heads_averaged"):
        against = {"ensemble": paired_comparison(acc[k], acc["ensemble"], step)}
        if k != "mcr_fused":
            against["mcr_fused"] = paired_comparison(acc[k], acc["mcr_fused"], step)
        for comp in against.values():
            comp["verdict"] = verdict(comp, ALPHA)
        tests[k] = against
    return tests


def summarise_setting(per_seed: list[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Means over seeds, the paired tests of the protocol and pooled error counts."""
    names = list(per_seed[0]["scores"])
    acc = {k: [s["scores"][k]["accuracy"] for s in per_seed] for k in names}
    table = {}
    for k in names:
        entry: dict[str, Any] = {**mean_std(acc[k]), "per_seed": acc[k]}
        for metric in ("ece", "nll"):
            entry[metric] = statistics.fmean(s["scores"][k][metric] for s in per_seed)
        if "per_category" in per_seed[0]["scores"][k]:
            entry["per_category"] = {
                c: statistics.fmean(s["scores"][k]["per_category"][c] for s in per_seed)
                for c in per_seed[0]["scores"][k]["per_category"]
            }
        table[k] = entry
    tests = paired_tests(acc, item_resolution(per_seed[0]["n_test"]))
    mods = list(per_seed[0]["reliance"]["mcr_fused"])
    reliance = {
        kind: {m: statistics.fmean(s["reliance"][kind][m] for s in per_seed) for m in mods}
        for kind in per_seed[0]["reliance"]
    }
    overlap = {
        k: {c: sum(s["overlap_with_mcr_fused"][k][c] for s in per_seed) for c in counts}
        for k, counts in per_seed[0]["overlap_with_mcr_fused"].items()
    }
    summary: dict[str, Any] = {
        "seeds": list(seeds),
        "n_test": per_seed[0]["n_test"],
        "predictors": table,
        "tests": tests,
        "reliance": reliance,
        "overlap_with_mcr_fused": overlap,
        "ensemble_right_mcr_fused_wrong": sum(
            s["ensemble_right_mcr_fused_wrong"] for s in per_seed
        ),
        "of_those_right": {k: sum(s["of_those_right"][k] for s in per_seed) for k in names},
    }
    if all("training_fit" in s for s in per_seed):
        first = per_seed[0]["training_fit"]
        summary["training_fit"] = {
            k: {
                kind: {
                    m: statistics.fmean(s["training_fit"][k][kind][m] for s in per_seed)
                    for m in values
                }
                for kind, values in kinds.items()
            }
            for k, kinds in first.items()
        }
    return summary


def decide(settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The protocol's rule: a remedy becomes a default only if it beats the ensemble on all
    three settings, each with enough seeds for a verdict."""
    complete = set(settings) == set(SETTINGS) and all(
        len(s["seeds"]) >= MIN_SEEDS_FOR_VERDICT for s in settings.values()
    )
    out = {}
    for r in REMEDIES:
        wins = {name: s["tests"][r]["ensemble"]["verdict"] == "win" for name, s in settings.items()}
        out[r] = {"wins_per_setting": wins, "becomes_default": complete and all(wins.values())}
    return {"all_settings_measured": complete, "remedies": out}


# --------------------------------------------------------------------------- report
def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(result: dict[str, Any]) -> str:
    """The tables of docs/examples/ensemble-gap.md for one ``results.json``."""
    lines = []
    for name, s in result["settings"].items():
        lines += [f"### {name} (seeds {', '.join(map(str, s['seeds']))})", ""]
        has_cats = "per_category" in next(iter(s["predictors"].values()))
        head = "| predictor | test accuracy % | ECE | NLL |"
        rule = "|---|---|---|---|"
        if has_cats:
            head += " shared | U1 only | U2 only |"
            rule += "---|---|---|"
        lines += [head, rule]
        for k, e in s["predictors"].items():
            row = (
                f"| {k} | {_pct(e['mean'])} ± {_pct(e['std'])} | {e['ece']:.3f} | {e['nll']:.3f} |"
            )
            if has_cats:
                row += "".join(f" {_pct(v)} |" for v in e["per_category"].values())
            lines.append(row)
        lines += [
            "",
            "| comparison | mean diff (points) | wins / ties / losses | sign p | Wilcoxon p | verdict |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for k, against in s["tests"].items():
            for ref, c in against.items():
                lines.append(
                    f"| {k} − {ref} | {100 * c['mean_diff']:+.2f} | {c['wins']} / {c['ties']} / "
                    f"{c['losses']} | {c['sign_p']:.3g} | {c['wilcoxon_p']:.3g} | {c['verdict']} |"
                )
        rel = s["reliance"]
        mods = list(rel["mcr_fused"])
        lines += ["", f"| reliance | {' | '.join(mods)} |", "|---|" + "---|" * len(mods)]
        for kind, values in rel.items():
            fmt = _pct if kind.endswith("accuracy") else (lambda v: f"{v:.3f}")
            lines.append(f"| {kind} | {' | '.join(fmt(values[m]) for m in mods)} |")
        n_adv = s["ensemble_right_mcr_fused_wrong"]
        lines += [
            "",
            f"Error overlap with `mcr_fused` (test points, summed over seeds); the "
            f"ensemble is right and `mcr_fused` wrong on {n_adv} points, of which each "
            "predictor gets right the last column:",
            "",
            "| predictor | both wrong | only mcr_fused wrong | only it wrong | right where only the ensemble was |",
            "|---|---|---|---|---|",
        ]
        for k, o in s["overlap_with_mcr_fused"].items():
            lines.append(
                f"| {k} | {o['both_wrong']} | {o['only_a_wrong']} | {o['only_b_wrong']} | "
                f"{s['of_those_right'][k]} |"
            )
        if "training_fit" in s:
            fit = s["training_fit"]
            kinds = list(next(iter(fit.values())))
            lines += ["", "Training split, accuracy % (mean top probability):", ""]
            lines += [f"| predictor | {' | '.join(kinds)} |", "|---|" + "---|" * len(kinds)]
            for k, per_kind in fit.items():
                cells = [
                    f"{_pct(per_kind[c]['accuracy'])} ({per_kind[c]['confidence']:.2f})"
                    for c in kinds
                ]
                lines.append(f"| {k} | {' | '.join(cells)} |")
        lines.append("")
    d = result["decision"]
    lines += [
        "### Rule",
        "",
        f"All settings measured with enough seeds: {d['all_settings_measured']}.",
        "",
    ]
    for r, v in d["remedies"].items():
        wins = ", ".join(
            f"{k}: {'win' if w else 'no win'}" for k, w in v["wins_per_setting"].items()
        )
        lines.append(f"- `{r}`: {wins}; becomes a default: {v['becomes_default']}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- code state
#: The code a run's numbers depend on (MCR, the shared training loop, the pipelines, this file).
CODE_PATHS: tuple[str, ...] = ("mcr_reg", "examples", "benchmarks")
REPOSITORY = Path(__file__).resolve().parents[1]


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
        from examples.avmnist import run as avmnist

        digest = avmnist.source(avmnist.DataSpec(args.mnist, args.fsdd)).digest
    common = {
        "runs": str(args.out / "runs"),
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
    outputs = run_jobs(
        train_or_load,
        jobs,
        workers=args.workers,
        desc="ensemble-gap runs",
        progress=not args.no_progress,
    )
    by_key = {(j.setting, j.method, j.seed): o for j, o in zip(jobs, outputs, strict=True)}
    settings = {}
    for name in args.settings:
        per_seed = [
            analyse_seed(by_key[name, "mcr", s], by_key[name, "ensemble", s]) for s in args.seeds
        ]
        settings[name] = summarise_setting(per_seed, args.seeds)
        settings[name]["training_seconds"] = sum(
            by_key[name, m, s]["seconds"] for m in ("mcr", "ensemble") for s in args.seeds
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


if __name__ == "__main__":
    main()
