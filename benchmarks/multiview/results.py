"""The multi-view benchmark's result: its schema (dataclasses), its version, and reading it back.

:class:`BenchmarkResult` is what :mod:`benchmarks.multiview.run` and
:mod:`benchmarks.multiview.combine` build and what ``results.json`` is written from
(:func:`benchmarks.harness.result_files.to_json`) and read back into (:func:`load_results`). The
file carries ``schema_version`` (:data:`SCHEMA_VERSION`). Files written before the version
field existed (version 1) named three MCR ablations after when their rule was the package's
default; :func:`load_results` reads both versions and returns the current names
(:data:`ABLATION_RENAMES`), so every committed result still renders with
``python -m benchmarks.multiview.report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness.result_files import from_json, read_result, stamped

#: The version of the ``results.json`` layout that :mod:`benchmarks.multiview.run` writes.
SCHEMA_VERSION = 2

#: Version-1 ablation names -> the names they have now (what each ablation sets).
ABLATION_RENAMES: dict[str, str] = {
    "old_head_gradient_sum": "head_gradient_sum",
    "old_contrastive_supcon": "contrastive_supcon",
    "old_rules": "head_gradient_sum_and_supcon",
}

#: The benchmark keys that are MCR (the paired tests compare each with every other method).
MCR_KEYS: tuple[str, ...] = ("mcr", "mcr_uni_pre")


def kind_group(kind: str) -> str:
    """``pair``, ``triple`` (weakest3, strongest3, mixed3) or ``six``."""
    return {"pair": "pair", "all6": "six"}.get(kind, "triple")


def _renamed(mapping: dict[str, Any], suffix: str = "") -> dict[str, Any]:
    renames = {old + suffix: new + suffix for old, new in ABLATION_RENAMES.items()}
    return {renames.get(key, key): value for key, value in mapping.items()}


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` in the current layout (a new dict; the ablation entries renamed).

    Raises:
        ValueError: for a ``schema_version`` newer than this code knows.
    """
    out = stamped(result, SCHEMA_VERSION)
    ablations = result.get("ablations")
    if ablations is not None:
        out["ablations"] = {
            **ablations,
            "variants": _renamed(ablations["variants"]),
            "per_view_set": {k: _renamed(row) for k, row in ablations["per_view_set"].items()},
            "paired": _renamed(ablations["paired"], "-mcr"),
        }
    setup = result.get("setup")
    if setup is not None and setup.get("ablations") is not None:
        out["setup"] = {**setup, "ablations": _renamed(setup["ablations"])}
    return out


def load_results(path: str | Path) -> BenchmarkResult:
    """Read a ``results.json`` of :mod:`benchmarks.multiview.run` (any version) as the current
    schema.

    Raises:
        ValueError: when the file is not such a result, or of a newer version.
    """
    raw = read_result(path, producer="benchmarks.multiview.run", required="view_sets")
    return parse_result(upgrade(raw), str(path))


def parse_result(data: dict[str, Any], where: str = "results.json") -> BenchmarkResult:
    """``data`` (a ``results.json`` in the current layout) as a :class:`BenchmarkResult`."""
    result: BenchmarkResult = from_json(BenchmarkResult, data, where)
    return result


# ------------------------------------------------------------------------------ the schema
@dataclass
class Probe:
    """Linear-probe test accuracy of one view's encoder: the mean and each seed's."""

    mean: float
    per_seed: list[float]


@dataclass
class MethodResult:
    """One method on one view set: the trial selected on validation and its test accuracy
    over the seeds (accuracies in [0, 1])."""

    mean: float
    std: float
    per_seed: list[float]
    val_mean: float
    trial: dict[str, Any]
    trials_val_mean: list[float]
    seconds: float
    epochs: list[int] = field(default_factory=list)
    probe: dict[str, Probe] | None = None  # per view, for the probed methods
    unimodal_test: dict[str, float] | None = None  # per view, for methods with unimodal heads
    unimodal_val: dict[str, float] | None = None


@dataclass
class Undertraining:
    """Per view: the unimodal probe (the ensemble's encoder) minus a method's probe; positive
    means the encoder trained inside the multimodal model is under-trained."""

    per_view: dict[str, float]
    mean: float
    max: float


@dataclass
class ViewSetResult:
    """Every method on one view set (``kind``: pair, weakest3, strongest3, mixed3, all6)."""

    name: str
    views: list[str]
    kind: str
    methods: dict[str, MethodResult] = field(default_factory=dict)
    undertraining: dict[str, Undertraining] | None = None  # per method with probes
    unimodal_test: dict[str, float] | None = None  # the ensemble's, per view


@dataclass
class PairedTest:
    """A paired comparison over (view set, seed) pairs
    (:func:`benchmarks.harness.paired_stats.paired_comparison`)."""

    n: int
    mean_diff: float
    median_diff: float
    wins: int
    ties: int
    losses: int
    sign_p: float
    wilcoxon_p: float
    wilcoxon_statistic: float | None
    resolution: float | None = None  # one test item; None in files from before the rule


@dataclass
class TripleRule:
    """The six-view ensemble's unimodal validation accuracies and the triples they fix."""

    unimodal_val_of_six_view_ensemble: dict[str, float]
    ranked: list[str]
    triples: dict[str, list[str]]


@dataclass
class GainRow:
    """One view set: MCR − joint test accuracy and the joint encoders' under-training."""

    view_set: str
    undertraining: float
    undertraining_max: float
    mcr_gain: float


@dataclass
class GainVsUndertraining:
    """MCR's gain over joint against under-training, and their Spearman correlations (``None``
    when undefined)."""

    rows: list[GainRow]
    spearman_mean: float | None
    spearman_max: float | None


@dataclass
class SeedAccuracies:
    """Test accuracy over seeds: mean, std and each seed's."""

    mean: float
    std: float
    per_seed: list[float]


@dataclass
class Ablations:
    """MCR variants from MCR's selected trial on each view set, and their paired tests
    against MCR (``"<variant>-mcr"``)."""

    variants: dict[str, dict[str, Any]]  # variant -> the MCR options it overrides
    seeds: list[int]
    per_view_set: dict[str, dict[str, SeedAccuracies]]  # view set -> mcr and each variant
    paired: dict[str, PairedTest]


@dataclass
class TimeRatio:
    """MCR's step time over joint's: the median and quartiles over the timing rounds."""

    median: float
    q1: float
    q3: float


@dataclass
class CostRow:
    """One measured setting of the cost run: ``M`` views, the subset mode and ``P`` draws."""

    M: int
    views: list[str]
    subsets: str
    P: int
    time_s: float  # MCR's median step time
    joint_time_s: float
    time_ratio: TimeRatio
    saved_bytes: int  # saved for backward in one step
    joint_saved_bytes: int
    memory_ratio: float


@dataclass
class CostResult:
    """The cost run of :mod:`benchmarks.multiview.cost`: its settings, one row per measured
    (M, subsets, P), and per (M, subsets) the smallest P above the negligible-cost limit."""

    batch: int
    P: list[int]
    repeats: int
    steps_per_repeat: int
    clock: str
    memory: str
    negligible_ratio: float
    rows: list[CostRow]
    p_star: dict[str, int | None]  # "M=3 all" -> P* (None: negligible at every P)

    def setting(self, m: int, subsets: str) -> list[CostRow]:
        """The rows of one (M, subsets) setting, in the order of P."""
        return [r for r in self.rows if (r.M, r.subsets) == (m, subsets)]


@dataclass
class PlanRecord:
    """What a single run trained (:class:`benchmarks.multiview.protocol.Plan` without its
    budget, split sizes and run store)."""

    seeds: list[int]
    grid: int
    methods: list[str]
    triples: bool
    six: bool
    ablations: bool
    ablation_seeds: list[int]
    pairs: list[str] | None  # None: all 15


@dataclass(kw_only=True)
class Setup:
    """The settings a result was made with. A single run records ``data``, ``plan``, the
    trials (``grid``: method -> trials), the ablations' overrides, ``quick`` and its times; a
    combination of parts records ``combined_from`` (each part's file and setup), the shared
    ``seeds`` and ``grid`` (trials per method) and what the protocol still lacks."""

    data: str | None = None
    plan: PlanRecord | None = None
    budget: dict[str, Any]  # :class:`benchmarks.harness.tuning.Budget` as a mapping
    split_per_class: dict[str, int]
    grid: dict[str, list[dict[str, Any]]] | int
    ablations: dict[str, dict[str, Any]] | None = None
    quick: bool | None = None
    training_wall_time_s: float | None = None
    load_average: list[float] | None = None
    wall_time_s: float | None = None
    combined_from: list[Part] | None = None
    seeds: list[int] | None = None
    missing_from_the_protocol: list[str] | None = None


@dataclass
class Part:
    """One part of a combined result: its file and its setup."""

    file: str
    setup: Setup


@dataclass
class BenchmarkResult:
    """The whole benchmark: what ``results.json`` holds."""

    schema_version: int = SCHEMA_VERSION
    view_sets: list[ViewSetResult] = field(default_factory=list)
    triple_rule: TripleRule | None = None
    paired: dict[str, PairedTest] = field(default_factory=dict)
    paired_by_kind: dict[str, dict[str, PairedTest]] = field(default_factory=dict)
    gain_vs_undertraining: GainVsUndertraining | None = None
    ablations: Ablations | None = None
    cost: CostResult | None = None
    setup: Setup | None = None
    #: :func:`examples.common.provenance.provenance` of the run that trained (a combination:
    #: of the combining command, its parts' under ``parts``), or a record that the file is
    #: kept from a run made before the record existed
    provenance: dict[str, Any] | None = None
    #: the record of the report command that last rewrote the file from its stored runs
    report_provenance: dict[str, Any] | None = None

    def view_set(self, name: str) -> ViewSetResult:
        """The view set called ``name``."""
        for vs in self.view_sets:
            if vs.name == name:
                return vs
        names = [vs.name for vs in self.view_sets]
        raise KeyError(f"expected a view set out of {names}, got {name}")

    def method_keys(self) -> list[str]:
        """Every method of any view set, in the order they first appear."""
        keys: list[str] = []
        for vs in self.view_sets:
            keys += [k for k in vs.methods if k not in keys]
        return keys

    def seeds(self) -> list[int]:
        """The seeds of the main runs (from the setup; else 0..n-1 from the per-seed results)."""
        if self.setup is not None:
            plan = self.setup.plan
            seeds = plan.seeds if plan is not None else self.setup.seeds
            if seeds is not None:
                return list(seeds)
        first = next(iter(self.view_sets[0].methods.values()))
        return list(range(len(first.per_seed)))

    @property
    def quick(self) -> bool:
        """Whether the result is a ``--quick`` run."""
        return self.setup is not None and bool(self.setup.quick)

    def trials_per_method(self) -> int | None:
        """The number of tuning trials of every method (``None``: not recorded)."""
        if self.setup is None:
            return None
        if self.setup.plan is not None:
            return self.setup.plan.grid
        return self.setup.grid if isinstance(self.setup.grid, int) else None
