"""Adaptation, accuracy and cost metrics over the projects present in both arms."""

from __future__ import annotations

import math
import sys

from maml_evidence.gate.payload import RATIO, ArmRun, ProjectResult, SpikePayload
from maml_evidence.gate.record import TYPE_CHECKING, Record

FLOAT_MAX = sys.float_info.max
if TYPE_CHECKING:
    # baseline and candidate reached, replicate counts, steps sds and final accuracy sds (pp)
    Extensions = tuple[bool, bool, int, int, float | None, float | None, float | None, float | None]

# ``_extensions`` of two plain entries (their own values, target reached): no replicates, no sds.
PLAIN_EXTENSIONS: Extensions = (True, True, 0, 0, None, None, None, None)


class ProjectComparison(Record):
    """One common project, both arms side by side, accuracies in percentage points."""

    project: str
    baseline_steps_to_target: float
    candidate_steps_to_target: float
    step_reduction: float
    baseline_target_accuracy_pp: float
    candidate_target_accuracy_pp: float
    baseline_final_accuracy_pp: float
    candidate_final_accuracy_pp: float
    final_accuracy_delta_pp: float
    accuracy_regression_pp: float
    # replicates and unreached targets (payload extensions); a plain entry: reached, 0 replicates, no sd
    baseline_reached: bool = True
    candidate_reached: bool = True
    baseline_replicates: int = 0
    candidate_replicates: int = 0
    baseline_steps_sd: float | None = None
    candidate_steps_sd: float | None = None
    baseline_final_accuracy_sd_pp: float | None = None
    candidate_final_accuracy_sd_pp: float | None = None


class ArmSummary(Record):
    """An arm summarised over the common projects."""

    label: str
    project_count: int
    mean_steps_to_target: float
    max_steps_to_target: float
    mean_final_accuracy_pp: float
    train_minutes: float
    meta_train_minutes: float
    unreached_projects: tuple[str, ...] = ()  # common projects whose steps are lower bounds, baseline order
    reach_rate: float = 1.0  # reached common projects / common projects (1 when there are none)


class GateInputs(Record):
    """The price-independent numbers the gate judges; enough to re-judge a spike run under any policy."""

    common_project_count: int
    baseline_mean_steps: float
    baseline_max_steps: float
    mean_step_reduction: float
    relative_step_reduction: float
    mean_accuracy_regression_pp: float
    extra_training_minutes: float
    training_overhead_pct: float
    # Judged only by the optional guards (issue 11); a report of the spec's checks never shows them.
    worst_project_accuracy_regression_pp: float = 0.0  # the largest per-project regression (0 when none)
    worst_accuracy_project: str | None = None  # its project (first of equals, baseline order)
    candidate_unreached_projects: int = 0  # common projects the candidate never reached target on
    # From the statistics (maml_evidence.strength); None where not measured (maml-feasibility-gate) or undefined.
    step_reduction_p_value: float | None = None  # the larger of the t-test and sign-flip one-sided p-values
    upper95_regression_pp: float | None = None  # one-sided 95% upper bound of the mean accuracy regression


# The gate inputs the statistics fill in: None where not measured (maml-feasibility-gate) or undefined.
MEASURED_INPUTS = ("step_reduction_p_value", "upper95_regression_pp")


class GateMetrics(Record):
    """Everything measured from one spike payload."""

    baseline_projects: tuple[str, ...]
    candidate_projects: tuple[str, ...]
    common_projects: tuple[str, ...]
    baseline_only: tuple[str, ...]
    candidate_only: tuple[str, ...]
    baseline: ArmSummary
    candidate: ArmSummary
    per_project: tuple[ProjectComparison, ...]
    inputs: GateInputs
    missed_targets: tuple[str, ...] = ()  # common projects the candidate did not reach where the baseline did


def mean(values: list[float]) -> float:
    """Exact-sum mean (order-independent, so decisions do not depend on project order); 0 when empty.

    Validated numbers are at most ``MAX_NUMBER``, so the sum cannot overflow.
    """
    return math.fsum(values) / len(values) if values else 0.0


def saturated(value: float) -> float:
    """A ratio's value, with an overflow to infinity held at the largest float.

    Validated inputs are finite, but dividing by a valid tiny one (a baseline of 1e-300 minutes) overflows;
    infinity fits neither strict JSON nor the decision history, and the largest float fails every
    threshold (at most ``MAX_NUMBER``) exactly as infinity would.
    """
    return value if -FLOAT_MAX <= value <= FLOAT_MAX else math.copysign(FLOAT_MAX, value)


def cost_deltas(baseline_train: float, candidate_train: float, candidate_meta: float) -> tuple[float, float]:
    """The spec's cost model without the price: (extra_training_minutes, training_overhead_pct)."""
    extra = max(0.0, (candidate_train + candidate_meta) - baseline_train)
    return extra, saturated(extra / baseline_train * 100.0) if baseline_train > 0 else 0.0


def extra_gpu_cost_usd(extra_training_minutes: float, gpu_hour_usd: float) -> float:
    """The spec's cost model: extra minutes priced per GPU hour."""
    if gpu_hour_usd == 0:  # free GPUs cost nothing, even for infinite minutes stored before numbers were bounded
        return 0.0
    return extra_training_minutes / 60.0 * gpu_hour_usd


def _summary(arm: ArmRun, steps: list[float], finals: list[float], unreached: tuple[str, ...]) -> ArmSummary:
    count = len(steps)
    return ArmSummary(
        arm.label,
        count,
        mean(steps),
        max(steps, default=0.0),
        mean(finals),
        arm.train_minutes,
        arm.meta_train_minutes,
        unreached,
        (count - len(unreached)) / count if unreached else 1.0,
    )


def _extensions(b: ProjectResult, c: ProjectResult, factor: float) -> Extensions:
    """A common project's reach, replicate counts and within-project sds, as ``ProjectComparison`` holds them."""
    b_sd, c_sd = b.final_accuracy_sd, c.final_accuracy_sd
    return (
        not b.unreached,
        not c.unreached,
        b.replicates,
        c.replicates,
        b.steps_sd,
        c.steps_sd,
        None if b_sd is None else b_sd * factor,
        None if c_sd is None else c_sd * factor,
    )


def compute_metrics(payload: SpikePayload) -> GateMetrics:
    """Align the arms on their common projects (baseline order) and compute every gate metric."""
    factor = 100.0 if payload.score_scale == RATIO else 1.0
    base, cand = payload.baseline, payload.candidate
    candidate_by_name = {p.project: p for p in cand.projects}
    rows: list[ProjectComparison] = []
    base_steps: list[float] = []
    cand_steps: list[float] = []
    reductions: list[float] = []
    base_finals: list[float] = []
    cand_finals: list[float] = []
    plain = base.plain and cand.plain  # then every project is reached and has no replicates: no need to look
    worst_lost, worst_project = -FLOAT_MAX, None  # the largest final-accuracy loss, first of equals
    b_reached, c_reached, b_count, c_count, b_steps_sd, c_steps_sd, b_final_sd, c_final_sd = PLAIN_EXTENSIONS
    for b in base.projects:
        c = candidate_by_name.get(b.project)
        if c is None:
            continue
        b_steps, c_steps = b.steps_to_target, c.steps_to_target
        b_final, c_final = b.final_accuracy * factor, c.final_accuracy * factor
        reduction, lost = b_steps - c_steps, b_final - c_final
        if lost > worst_lost or worst_project is None:
            worst_lost, worst_project = lost, b.project
        base_steps.append(b_steps)
        cand_steps.append(c_steps)
        reductions.append(reduction)
        base_finals.append(b_final)
        cand_finals.append(c_final)
        if not plain:
            b_reached, c_reached, b_count, c_count, b_steps_sd, c_steps_sd, b_final_sd, c_final_sd = _extensions(
                b, c, factor
            )
        rows.append(
            ProjectComparison._make(
                (
                    b.project,
                    b_steps,
                    c_steps,
                    reduction,
                    b.target_accuracy * factor,
                    c.target_accuracy * factor,
                    b_final,
                    c_final,
                    c_final - b_final,
                    lost if lost > 0.0 else 0.0,
                    b_reached,
                    c_reached,
                    b_count,
                    c_count,
                    b_steps_sd,
                    c_steps_sd,
                    b_final_sd,
                    c_final_sd,
                )
            )
        )
    base_unreached: tuple[str, ...] = ()
    cand_unreached: tuple[str, ...] = ()
    missed: tuple[str, ...] = ()
    if not plain:
        base_unreached = tuple([row.project for row in rows if not row.baseline_reached])
        cand_unreached = tuple([row.project for row in rows if not row.candidate_reached])
        missed = tuple([row.project for row in rows if row.baseline_reached and not row.candidate_reached])
    baseline_summary = _summary(base, base_steps, base_finals, base_unreached)
    candidate_summary = _summary(cand, cand_steps, cand_finals, cand_unreached)
    mean_reduction = mean(reductions)
    base_mean = baseline_summary.mean_steps_to_target
    regression = baseline_summary.mean_final_accuracy_pp - candidate_summary.mean_final_accuracy_pp
    extra, overhead = cost_deltas(base.train_minutes, cand.train_minutes, cand.meta_train_minutes)
    inputs = GateInputs(
        len(rows),
        base_mean,
        baseline_summary.max_steps_to_target,
        mean_reduction,
        saturated(mean_reduction / base_mean) if base_mean > 0 else 0.0,
        regression if regression > 0.0 else 0.0,
        extra,
        overhead,
        worst_lost if worst_lost > 0.0 else 0.0,
        worst_project,
        len(cand_unreached),
        None,  # the statistics are measured by maml_evidence.strength (``with_statistics``)
        None,
    )
    common = tuple([row.project for row in rows])
    baseline_names = tuple([p.project for p in base.projects])
    candidate_names = tuple(candidate_by_name)
    return GateMetrics(
        baseline_names,
        candidate_names,
        common,
        _without(baseline_names, common),
        _without(candidate_names, common),
        baseline_summary,
        candidate_summary,
        tuple(rows),
        inputs,
        missed,
    )


def _without(names: tuple[str, ...], common: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` less the common ones, in order (common names are a subset of each arm's)."""
    if len(names) == len(common):
        return ()
    gone = set(common)
    return tuple([name for name in names if name not in gone])
