"""Adaptation, accuracy and cost metrics over the projects present in both arms."""

from __future__ import annotations

import math

from maml_evidence.gate.payload import RATIO, ArmRun, SpikePayload
from maml_evidence.gate.record import Record


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
    """Exact-sum mean (order-independent, so decisions do not depend on project order); 0 when empty."""
    if not values:
        return 0.0
    try:
        return math.fsum(values) / len(values)
    except OverflowError:  # the sum leaves the float range: average pre-divided values instead
        return math.fsum(value / len(values) for value in values)


def cost_deltas(baseline_train: float, candidate_train: float, candidate_meta: float) -> tuple[float, float]:
    """The spec's cost model without the price: (extra_training_minutes, training_overhead_pct)."""
    extra = max(0.0, (candidate_train + candidate_meta) - baseline_train)
    return extra, extra / baseline_train * 100.0 if baseline_train > 0 else 0.0


def extra_gpu_cost_usd(extra_training_minutes: float, gpu_hour_usd: float) -> float:
    """The spec's cost model: extra minutes priced per GPU hour."""
    if gpu_hour_usd == 0:  # free GPUs cost nothing, even for an overflowing (infinite) number of minutes
        return 0.0
    return extra_training_minutes / 60.0 * gpu_hour_usd


def _summary(arm: ArmRun, rows: list[ProjectComparison], side: str) -> ArmSummary:
    steps = [getattr(row, f"{side}_steps_to_target") for row in rows]
    finals = [getattr(row, f"{side}_final_accuracy_pp") for row in rows]
    return ArmSummary(
        label=arm.label,
        project_count=len(rows),
        mean_steps_to_target=mean(steps),
        max_steps_to_target=max(steps, default=0.0),
        mean_final_accuracy_pp=mean(finals),
        train_minutes=arm.train_minutes,
        meta_train_minutes=arm.meta_train_minutes,
    )


def compute_metrics(payload: SpikePayload) -> GateMetrics:
    """Align the arms on their common projects (baseline order) and compute every gate metric."""
    factor = 100.0 if payload.score_scale == RATIO else 1.0
    base, cand = payload.baseline, payload.candidate
    candidate_by_name = {p.project: p for p in cand.projects}
    baseline_names = tuple(p.project for p in base.projects)
    rows: list[ProjectComparison] = []
    for b in base.projects:
        c = candidate_by_name.get(b.project)
        if c is None:
            continue
        b_final, c_final = b.final_accuracy * factor, c.final_accuracy * factor
        rows.append(
            ProjectComparison(
                project=b.project,
                baseline_steps_to_target=b.steps_to_target,
                candidate_steps_to_target=c.steps_to_target,
                step_reduction=b.steps_to_target - c.steps_to_target,
                baseline_target_accuracy_pp=b.target_accuracy * factor,
                candidate_target_accuracy_pp=c.target_accuracy * factor,
                baseline_final_accuracy_pp=b_final,
                candidate_final_accuracy_pp=c_final,
                final_accuracy_delta_pp=c_final - b_final,
                accuracy_regression_pp=max(0.0, b_final - c_final),
            )
        )
    common = tuple(row.project for row in rows)
    common_set = set(common)
    baseline_summary = _summary(base, rows, "baseline")
    candidate_summary = _summary(cand, rows, "candidate")
    reduction = mean([row.step_reduction for row in rows])
    base_mean = baseline_summary.mean_steps_to_target
    extra, overhead = cost_deltas(base.train_minutes, cand.train_minutes, cand.meta_train_minutes)
    inputs = GateInputs(
        common_project_count=len(rows),
        baseline_mean_steps=base_mean,
        baseline_max_steps=baseline_summary.max_steps_to_target,
        mean_step_reduction=reduction,
        relative_step_reduction=reduction / base_mean if base_mean > 0 else 0.0,
        mean_accuracy_regression_pp=max(
            0.0, baseline_summary.mean_final_accuracy_pp - candidate_summary.mean_final_accuracy_pp
        ),
        extra_training_minutes=extra,
        training_overhead_pct=overhead,
    )
    return GateMetrics(
        baseline_projects=baseline_names,
        candidate_projects=tuple(p.project for p in cand.projects),
        common_projects=common,
        baseline_only=tuple(name for name in baseline_names if name not in common_set),
        candidate_only=tuple(p.project for p in cand.projects if p.project not in common_set),
        baseline=baseline_summary,
        candidate=candidate_summary,
        per_project=tuple(rows),
        inputs=inputs,
    )
