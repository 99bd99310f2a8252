"""Rows for the evidence tables, built from the gate core's results (no arithmetic here, only shaping)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from maml_evidence.gate import CHECK_NAMES, THRESHOLD_KEYS, GateInputs, GateMetrics, SpikePayload, Verdict
from maml_evidence.gate.economics import INPUT_KEYS, economics
from maml_evidence.gate.thresholds import Settings
from maml_evidence.store.registry import Revision
from maml_evidence.strength import project_effects

Row = dict[str, object]


def spike_run_row(
    run_id: str,
    revision: Revision,
    payload: SpikePayload,
    metrics: GateMetrics,
    payload_path: str,
    ingested_at: datetime,
) -> Row:
    return {
        "spike_run_id": run_id,
        "revision": revision.revision,
        "sha256": revision.sha256,
        "source_file": revision.source_file,
        "accepted_at": revision.accepted_at_dt,
        "ingested_at": ingested_at,
        "baseline_label": payload.baseline.label,
        "candidate_label": payload.candidate.label,
        "score_scale": payload.score_scale,
        "baseline_project_count": len(payload.baseline.projects),
        "candidate_project_count": len(payload.candidate.projects),
        "common_project_count": len(metrics.common_projects),
        "baseline_only_projects": list(metrics.baseline_only),
        "candidate_only_projects": list(metrics.candidate_only),
        "payload_thresholds": json.dumps(payload.threshold_overrides, sort_keys=True),
        "payload_cost_profile": json.dumps(payload.cost_overrides, sort_keys=True),
        "payload_extras": json.dumps(payload.extras, sort_keys=True, default=str),
        "payload_path": payload_path,
    }


def adaptation_rows(run_id: str, metrics: GateMetrics) -> list[Row]:
    return [
        {
            "spike_run_id": run_id,
            "project": row.project,
            "baseline_steps_to_target": row.baseline_steps_to_target,
            "candidate_steps_to_target": row.candidate_steps_to_target,
            "step_reduction": row.step_reduction,
        }
        for row in metrics.per_project
    ]


def adaptation_summary_row(run_id: str, metrics: GateMetrics) -> Row:
    i = metrics.inputs
    return {
        "spike_run_id": run_id,
        "common_project_count": i.common_project_count,
        "baseline_mean_steps": i.baseline_mean_steps,
        "baseline_max_steps": i.baseline_max_steps,
        "candidate_mean_steps": metrics.candidate.mean_steps_to_target,
        "candidate_max_steps": metrics.candidate.max_steps_to_target,
        "mean_step_reduction": i.mean_step_reduction,
        "relative_step_reduction": i.relative_step_reduction,
        "candidate_unreached_projects": i.candidate_unreached_projects,
    }


def project_effect_rows(run_id: str, metrics: GateMetrics) -> list[Row]:
    return [
        {
            "spike_run_id": run_id,
            **effect,
            "baseline_replicates": row.baseline_replicates,
            "candidate_replicates": row.candidate_replicates,
            "baseline_steps_sd": row.baseline_steps_sd,
            "candidate_steps_sd": row.candidate_steps_sd,
            "baseline_reached": row.baseline_reached,
            "candidate_reached": row.candidate_reached,
        }
        for row, effect in zip(metrics.per_project, project_effects(metrics), strict=True)
    ]


def accuracy_rows(run_id: str, metrics: GateMetrics) -> list[Row]:
    return [
        {
            "spike_run_id": run_id,
            "project": row.project,
            "baseline_target_accuracy_pp": row.baseline_target_accuracy_pp,
            "candidate_target_accuracy_pp": row.candidate_target_accuracy_pp,
            "baseline_final_accuracy_pp": row.baseline_final_accuracy_pp,
            "candidate_final_accuracy_pp": row.candidate_final_accuracy_pp,
            "final_accuracy_delta_pp": row.final_accuracy_delta_pp,
            "accuracy_regression_pp": row.accuracy_regression_pp,
        }
        for row in metrics.per_project
    ]


def accuracy_summary_row(run_id: str, payload: SpikePayload, metrics: GateMetrics) -> Row:
    return {
        "spike_run_id": run_id,
        "score_scale": payload.score_scale,
        "baseline_mean_final_accuracy_pp": metrics.baseline.mean_final_accuracy_pp,
        "candidate_mean_final_accuracy_pp": metrics.candidate.mean_final_accuracy_pp,
        "mean_accuracy_regression_pp": metrics.inputs.mean_accuracy_regression_pp,
        "worst_accuracy_project": metrics.inputs.worst_accuracy_project,
        "worst_project_accuracy_regression_pp": metrics.inputs.worst_project_accuracy_regression_pp,
    }


def cost_row(run_id: str, metrics: GateMetrics, verdict: Verdict, price_source: str) -> Row:
    minutes = (
        metrics.baseline.train_minutes,
        metrics.baseline.meta_train_minutes,
        metrics.candidate.train_minutes,
        metrics.candidate.meta_train_minutes,
    )
    inputs = metrics.inputs
    return cost_values_row(
        run_id, minutes, inputs.extra_training_minutes, inputs.training_overhead_pct, verdict, price_source
    )


def cost_values_row(
    run_id: str,
    minutes: tuple[float, float, float, float],
    extra_training_minutes: float,
    training_overhead_pct: float,
    verdict: Verdict,
    price_source: str,
) -> Row:
    """A cost_metrics row; ``minutes`` = baseline train, baseline meta-train, candidate train, candidate meta-train."""
    return {
        "spike_run_id": run_id,
        "baseline_train_minutes": minutes[0],
        "baseline_meta_train_minutes": minutes[1],
        "candidate_train_minutes": minutes[2],
        "candidate_meta_train_minutes": minutes[3],
        "extra_training_minutes": extra_training_minutes,
        "training_overhead_pct": training_overhead_pct,
        "gpu_hour_usd": verdict.gpu_hour_usd,
        "gpu_hour_usd_source": price_source,
        "extra_gpu_cost_usd_per_run": verdict.extra_gpu_cost_usd_per_run,
    }


def decision_row(
    run_id: str,
    verdict: Verdict,
    thresholds: Mapping[str, float | int | None],
    sources_json: str,
    policy_version: str,
    trigger: str,
    evaluated_at: datetime,
) -> Row:
    flags = verdict.flags()
    return {
        "spike_run_id": run_id,
        "decision": verdict.decision,
        "maml_recommended": verdict.maml_recommended,
        "failed_check": verdict.failed_check,
        **{name: flags.get(name) for name in CHECK_NAMES},  # None: an optional check that did not run
        **{key: thresholds[key] for key in THRESHOLD_KEYS},
        "gpu_hour_usd": verdict.gpu_hour_usd,
        "extra_gpu_cost_usd_per_run": verdict.extra_gpu_cost_usd_per_run,
        "threshold_sources": sources_json,
        "policy_version": policy_version,
        "trigger": trigger,
        "evaluated_at": evaluated_at,
    }


def check_rows(run_id: str, verdict: Verdict, evaluated_at: datetime) -> list[Row]:
    rows = []
    for check in verdict.checks:
        decisive = check.decisive
        rows.append(
            {
                "spike_run_id": run_id,
                "check_name": check.name,
                "passed": check.passed,
                "metric": decisive.metric,
                "observed": None if decisive.observed is None else float(decisive.observed),
                "operator": decisive.operator,
                "threshold": decisive.threshold,
                "threshold_key": decisive.threshold_key,
                "margin": decisive.margin,
                "reason": check.reason,
                "evaluated_at": evaluated_at,
            }
        )
    return rows


def history_row(run_id: str, revision: int, verdict: Verdict, policy_version: str, trigger: str, at: datetime) -> Row:
    flags = verdict.flags()
    return {
        "spike_run_id": run_id,
        "revision": revision,
        "policy_version": policy_version,
        "decision": verdict.decision,
        "maml_recommended": verdict.maml_recommended,
        "failed_check": verdict.failed_check,
        **{name: flags.get(name) for name in CHECK_NAMES},  # None: an optional check that did not run
        "trigger": trigger,
        "evaluated_at": at,
    }


def evidence_row(
    run_id: str, evidence: Mapping[str, Any], inputs: GateInputs, policy_version: str, evaluated_at: datetime
) -> Row:
    """An evidence_strength row from a spike run's (unrounded) evidence section and the gate inputs it fed."""
    step, accuracy, reach = evidence["step_reduction"], evidence["accuracy"], evidence.get("reach") or {}
    return {
        "spike_run_id": run_id,
        "projects": evidence["projects"],
        "mean_step_reduction": step["mean"],
        "step_reduction_sd": step["sd"],
        **{key: step[key] for key in ("ci95_low", "ci95_high", "relative_ci95_low", "relative_ci95_high")},
        **{key: step[key] for key in ("t_p_value", "sign_flip_p_value", "sign_flip_exact", "min_attainable_p_value")},
        "step_reduction_p_value": inputs.step_reduction_p_value,
        "projects_for_80pct_power": step["projects_for_80pct_power"],
        "mean_regression_pp": accuracy["mean_regression_pp"],
        "upper95_regression_pp": accuracy["upper95_regression_pp"],
        "lower95_regression_pp": accuracy["lower95_regression_pp"],
        "accuracy_verdict": accuracy["verdict"],
        "worst_project": accuracy["worst_project"],
        "worst_project_regression_pp": accuracy["worst_project_regression_pp"],
        "smallest_gain_project": evidence["smallest_gain_project"],
        "baseline_reach_rate": (reach.get("baseline") or {}).get("reach_rate"),
        "candidate_reach_rate": (reach.get("candidate") or {}).get("reach_rate"),
        "candidate_unreached_projects": inputs.candidate_unreached_projects,
        "grade": evidence["grade"],
        "grade_reason": evidence["grade_reason"],
        "policy_version": policy_version,
        "evaluated_at": evaluated_at,
    }


def breakeven_row(
    run_id: str, mean_step_reduction: float, extra_gpu_cost_usd_per_run: float, settings: Settings, policy_version: str
) -> Row:
    """A cost_breakeven row: the gate's break-even figures at the settings in force (unrounded)."""
    found = economics(mean_step_reduction, extra_gpu_cost_usd_per_run, settings)
    inputs = found["inputs"]
    breakeven = found["breakeven_adaptations_per_run"]
    return {
        "spike_run_id": run_id,
        "saving_per_adaptation_usd": found["saving_per_adaptation_usd"],
        "breakeven_adaptations_per_run": None if breakeven is None else float(breakeven),  # type: ignore[arg-type]
        "monthly_net_usd": found["monthly_net_usd"],
        "extra_gpu_cost_usd_per_run": extra_gpu_cost_usd_per_run,
        **{key: inputs[key]["value"] for key in INPUT_KEYS},  # type: ignore[index]
        "sources": json.dumps({key: inputs[key]["source"] for key in INPUT_KEYS}),  # type: ignore[index]
        "missing": found["missing"],
        "policy_version": policy_version,
    }
