"""The synthetic sweep's result: its schema (dataclasses), its version, and reading it back.

:class:`SweepResult` is what :mod:`benchmarks.synthetic.run` builds and what ``results.json`` is
written from (:func:`benchmarks.harness.result_files.to_json`) and read back into
(:func:`load_results`). The file states its ``schema_version`` (:data:`SCHEMA_VERSION`; none
means 1). In version 1 the variants of the ``rules`` ablation were called after the release
that made each rule the default; :data:`RULE_RENAMES` gives their present names, which
:func:`load_results` applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness.result_files import REST, from_json, read_result, stamped

#: The version of the ``results.json`` layout that :mod:`benchmarks.synthetic.run` writes.
SCHEMA_VERSION = 2

#: Version-1 names of the ``rules`` ablation's variants -> the names they have now.
RULE_RENAMES: dict[str, str] = {
    "new (mean head gradient, NT-Xent)": "mean head gradient, NT-Xent (defaults)",
    "old head gradient (sum)": "summed head gradient",
    "old contrastive (SupCon)": "SupCon contrastive",
    "both old": "summed head gradient, SupCon",
}

#: The benchmark keys that are MCR (the claims are checked for each, against the baselines only).
MCR_KEYS: tuple[str, ...] = ("mcr", "mcr_uni_pre")


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` in the current layout (a new dict; the ``rules`` variants renamed).

    Raises:
        ValueError: for a ``schema_version`` newer than this code knows.
    """
    out = stamped(result, SCHEMA_VERSION)
    ablations = result.get("ablations")
    if ablations is not None and "rules" in ablations:
        rules = {RULE_RENAMES.get(k, k): v for k, v in ablations["rules"].items()}
        out["ablations"] = {**ablations, "rules": rules}
    return out


def load_results(path: str | Path) -> SweepResult:
    """Read a ``results.json`` of :mod:`benchmarks.synthetic.run` (any version) as the current
    schema.

    Raises:
        ValueError: when the file is not such a result, or of a newer version.
    """
    raw = read_result(path, producer="benchmarks.synthetic", required="points")
    result: SweepResult = from_json(SweepResult, upgrade(raw), str(path))
    return result


# ------------------------------------------------------------------------------ the schema
@dataclass(kw_only=True)
class MethodResult:
    """One method at one sweep point: the trial selected on validation and its test accuracy
    over the seeds (accuracies in [0, 1])."""

    mean: float
    std: float
    val_mean: float
    trial: dict[str, Any]
    trials_val_mean: list[float]
    per_seed: list[float]
    probe: float | None = None  # linear probe of the slow modality's latent (mean over seeds)
    probe_per_seed: list[float] | None = None
    per_category: dict[str, float | None]  # shared, u1, u2 (None: no such test point)
    importance: list[float] | None  # per modality, mean over seeds (None: not measured)
    seconds: float
    cpu_seconds: float | None = None
    probe_gap: float | None = None  # the ensemble's probe minus this one (None: no ensemble)
    probe_gap_per_seed: list[float] | None = None


@dataclass
class Point:
    """One sweep point (fractions of shared, U1-only and U2-only points) and every method."""

    u1: float
    s: float
    u2: float
    ratio_u1_s: float
    methods: dict[str, MethodResult] = field(default_factory=dict)
    # Figure-5 matrices per method (:meth:`examples.common.metrics.ErrorMatrix.as_dict`)
    error_matrices: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class AblationVariant:
    """One MCR variant: test accuracy over the seeds, its options, the slow-encoder probe."""

    mean: float
    std: float
    options: dict[str, Any]
    probe: float | None = None
    probe_gap: float | None = None


@dataclass
class Ablations:
    """MCR variants at the most imbalanced point (paper Tables 2-4), each family a table."""

    point: dict[str, float]  # u1, s, u2
    base_trial: dict[str, Any]  # MCR's selected trial there, which every variant changes
    cpu_seconds: float | None = None
    families: dict[str, dict[str, AblationVariant]] = field(default_factory=dict, metadata=REST)


@dataclass(kw_only=True)
class Setup:
    """The settings of a sweep: the data regime and generator settings, the budget, the number
    of seeds, the trials per method, and the times."""

    regime: str | None = None  # not recorded before the regimes existed: "fusion"
    spec: dict[str, Any]  # :class:`benchmarks.synthetic.generator.SyntheticSpec` as a mapping
    budget: dict[str, Any]  # :class:`benchmarks.harness.tuning.Budget` as a mapping
    seeds: int
    grid: dict[str, list[dict[str, Any]]]
    quick: bool
    wall_time_s: float
    cpu_seconds: float | None = None  # single-thread CPU time of all training runs


@dataclass
class SweepResult:
    """The whole sweep: what ``results.json`` holds (``claims``: :func:`check_claims` of
    :mod:`benchmarks.synthetic.summary`)."""

    schema_version: int = SCHEMA_VERSION
    points: list[Point] = field(default_factory=list)
    ablations: Ablations | None = None
    claims: dict[str, Any] | None = None
    setup: Setup | None = None
    #: :func:`examples.common.provenance.provenance` of the run that trained (a combination:
    #: of the combining command, its parts' under ``parts``), or a record that the file is
    #: kept from a run made before the record existed
    provenance: dict[str, Any] | None = None
    #: the record of the report command that last rewrote the file from its stored runs
    report_provenance: dict[str, Any] | None = None

    def most_imbalanced(self) -> Point:
        """The point with the largest U1."""
        return max(self.points, key=lambda p: p.u1)

    def method_keys(self) -> list[str]:
        """The methods of the sweep, in table order."""
        return list(self.points[0].methods)
