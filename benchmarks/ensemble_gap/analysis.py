"""The ensemble-gap analysis: every predictor and remedy of one seed, scored and compared, then
pooled over seeds and judged by the protocol's rule (docs/examples/ensemble-gap.md)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from benchmarks.ensemble_gap import remedies as gap
from benchmarks.ensemble_gap.protocol import ALPHA, MIN_SEEDS_FOR_VERDICT, REMEDIES, SETTINGS
from benchmarks.harness.paired_stats import item_resolution, mean_std, paired_comparison, verdict


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


def pool_seeds(per_seed: list[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
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
