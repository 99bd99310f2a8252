"""Adaptation, accuracy and cost metrics over the projects present in both arms."""

from __future__ import annotations

import math
import sys

from maml_evidence.gate.payload import RATIO, ArmRun, SpikePayload
from maml_evidence.gate.record import Record

FLOAT_MAX = sys.float_info.max


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


class ArmSummary(Record):
    """An arm summarised over the common projects."""

    label: str
    project_count: int
    mean_steps_to_target: float
    max_steps_to_target: float
    mean_final_accuracy_pp: float
    train_minutes: float
    meta_train_minutes: float


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


def _summary(arm: ArmRun, steps: list[float], finals: list[float]) -> ArmSummary:
    return ArmSummary(
        arm.label,
        len(steps),
        mean(steps),
        max(steps, default=0.0),
        mean(finals),
        arm.train_minutes,
        arm.meta_train_minutes,
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
    for b in base.projects:
        c = candidate_by_name.get(b.project)
        if c is None:
            continue
        b_steps, c_steps = b.steps_to_target, c.steps_to_target
        b_final, c_final = b.final_accuracy * factor, c.final_accuracy * factor
        reduction, lost = b_steps - c_steps, b_final - c_final
        base_steps.append(b_steps)
        cand_steps.append(c_steps)
        reductions.append(reduction)
        base_finals.append(b_final)
        cand_finals.append(c_final)
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
                )
            )
        )
    baseline_summary = _summary(base, base_steps, base_finals)
    candidate_summary = _summary(cand, cand_steps, cand_finals)
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
    )


def _without(names: tuple[str, ...], common: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` less the common ones, in order (common names are a subset of each arm's)."""
    if len(names) == len(common):
        return ()
    gone = set(common)
    return tuple([name for name in names if name not in gone])
