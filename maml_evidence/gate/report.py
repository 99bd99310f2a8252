"""The decision report (JSON-ready dict) and its plain-language interpretation (Markdown)."""

from __future__ import annotations

from maml_evidence.gate.decision import Verdict, fixed_texts, fmt, judge_observed, observed_values, pct, plan
from maml_evidence.gate.economics import economics, economics_in_force
from maml_evidence.gate.errors import show
from maml_evidence.gate.metrics import ArmSummary, GateMetrics, compute_metrics
from maml_evidence.gate.payload import SpikePayload, validate_payload
from maml_evidence.gate.record import TYPE_CHECKING
from maml_evidence.gate.thresholds import Settings, effective_settings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

REPORT_VERSION = 1


def _r(value: float) -> float:
    """``round(value, 4)``, as the report shows every metric (finite by construction: the JSON stays strict).

    Writing a report rounds about sixty numbers, the largest part of its cost, so this takes two shortcuts
    to the same result: a whole number is its own rounding, and ``float(f"{value:.4f}")`` does the same
    correctly rounded decimal conversion as ``round`` (both round the exact binary value half-to-even to
    four decimals and read the decimal back) in about two thirds of the time.
    """
    return value if value % 1 == 0 else float(f"{value:.4f}")


def _arm(summary: ArmSummary) -> dict[str, object]:
    return {
        "label": summary.label,
        "project_count": summary.project_count,
        "mean_steps_to_target": _r(summary.mean_steps_to_target),
        "max_steps_to_target": _r(summary.max_steps_to_target),
        "mean_final_accuracy_pp": _r(summary.mean_final_accuracy_pp),
        "train_minutes": _r(summary.train_minutes),
        "meta_train_minutes": _r(summary.meta_train_minutes),
    }


def _per_project(metrics: GateMetrics) -> list[dict[str, object]]:
    return [
        {
            "project": row.project,
            "baseline_steps_to_target": _r(row.baseline_steps_to_target),
            "candidate_steps_to_target": _r(row.candidate_steps_to_target),
            "step_reduction": _r(row.step_reduction),
            "baseline_final_accuracy_pp": _r(row.baseline_final_accuracy_pp),
            "candidate_final_accuracy_pp": _r(row.candidate_final_accuracy_pp),
            "final_accuracy_delta_pp": _r(row.final_accuracy_delta_pp),
        }
        for row in metrics.per_project
    ]


def _check_details(verdict: Verdict, shown: Mapping[str, float | None]) -> dict[str, object]:
    details: dict[str, object] = {}
    for check in verdict.checks:  # loops, not nested comprehensions: each comprehension is a function call
        conditions = []
        for c in check.conditions:
            conditions.append(
                {
                    "metric": c.metric,
                    "observed": shown[c.metric],
                    "operator": c.operator,
                    "threshold": c.threshold,
                    "threshold_key": c.threshold_key,
                    "passed": c.passed,
                    "margin": None if c.margin is None else _r(c.margin),
                }
            )
        details[check.name] = {"passed": check.passed, "reason": check.reason, "conditions": conditions}
    return details


def _closest_call(verdict: Verdict, shown: Mapping[str, float | None]) -> dict[str, object] | None:
    """The condition nearest the other outcome, relative to its threshold (its margin in the threshold's unit)."""
    c = verdict.closest_call()
    if c is None or c.margin is None:
        return None
    relative = c.relative_margin
    return {
        "check": c.check,
        "metric": c.metric,
        "observed": shown[c.metric],
        "operator": c.operator,
        "threshold": c.threshold,
        "threshold_key": c.threshold_key,
        "margin": _r(c.margin),
        "relative_margin": None if relative is None else _r(relative),
    }


def build_report(
    payload: SpikePayload,
    metrics: GateMetrics,
    verdict: Verdict,
    settings: Settings,
    fixed: Mapping[str, str | None],
    *,
    with_economics: bool = False,
) -> dict[str, object]:
    """Assemble the report; every number a reader needs to see why the decision was made.

    ``fixed`` is each of ``observed_values`` for this run, as the verdict was judged on, written with four
    decimals (``f"{value:.4f}"``, the text the verdict's sentences were made from).
    """
    values, sources = settings.values, settings.sources
    reasons = verdict.reasons  # a new list
    if metrics.missed_targets:
        reasons.append(missed_targets_reason(metrics.missed_targets))
    # Every metric a check observes, rounded once (``_r``'s rule, read back from the same four-decimal text):
    # the comparison, the cost and the checks show the same number.
    shown = {name: None if text is None else float(text) for name, text in fixed.items()}
    in_force = settings.in_force()
    report: dict[str, object] = {
        "decision": verdict.decision,
        "maml_recommended": verdict.maml_recommended,
        "failed_check": verdict.failed_check,
        "score_scale": payload.score_scale,
        "thresholds": {key: values[key] for key in in_force},
        "threshold_sources": {key: sources[key] for key in in_force},
        "project_alignment": {
            "baseline_projects": list(metrics.baseline_projects),
            "candidate_projects": list(metrics.candidate_projects),
            "common_projects": list(metrics.common_projects),
            "common_project_count": len(metrics.common_projects),
            "baseline_only_projects": list(metrics.baseline_only),
            "candidate_only_projects": list(metrics.candidate_only),
        },
        "baseline": _arm(metrics.baseline),
        "candidate": _arm(metrics.candidate),
        "comparison": {
            "mean_step_reduction": shown["mean_step_reduction"],
            "relative_step_reduction": shown["relative_step_reduction"],
            "mean_accuracy_regression_pp": shown["mean_accuracy_regression_pp"],
            "per_project": _per_project(metrics),
        },
        "cost": {
            "extra_training_minutes": shown["extra_training_minutes"],
            "training_overhead_pct": shown["training_overhead_pct"],
            "extra_gpu_cost_usd_per_run": shown["extra_gpu_cost_usd_per_run"],
            "assumptions": {"gpu_hour_usd": verdict.gpu_hour_usd, "gpu_hour_usd_source": sources["gpu_hour_usd"]},
        },
        "checks": verdict.flags(),
        "check_details": _check_details(verdict, shown),
        "closest_call": _closest_call(verdict, shown),
        "reasons": reasons,
        "report_version": REPORT_VERSION,
    }
    if with_economics or economics_in_force(settings):
        found = economics(metrics.inputs.mean_step_reduction, verdict.extra_gpu_cost_usd_per_run, settings)
        report["economics"] = {k: _r(v) if isinstance(v, float) else v for k, v in found.items()}
    if "spike_run_id" in payload.extras:
        run_id = payload.extras["spike_run_id"]
        # Kept as given when it is text; anything else is shown as text so the report stays strict JSON.
        return {"spike_run_id": run_id if isinstance(run_id, str) else show(run_id), **report}
    return report


def missed_targets_reason(projects: Sequence[str]) -> str:
    """The reason naming common projects whose target the candidate missed where the baseline reached it."""
    bound = "its steps are a lower bound" if len(projects) == 1 else "their steps are lower bounds"
    return f"LoRA+MAML did not reach the target on {', '.join(projects)}, where LoRA-only did ({bound})."


def evaluate_payload(
    payload: SpikePayload, policy: Mapping[str, float | int | None] | None = None
) -> tuple[GateMetrics, Verdict, dict[str, object]]:
    """Metrics, verdict and report for an already validated payload."""
    metrics = compute_metrics(payload)
    return (metrics, *judge_metrics(payload, metrics, policy))


def judge_metrics(
    payload: SpikePayload,
    metrics: GateMetrics,
    policy: Mapping[str, float | int | None] | None = None,
    *,
    with_economics: bool = False,
) -> tuple[Verdict, dict[str, object]]:
    """Verdict and report over metrics already computed (``maml_evidence.strength`` adds its statistics first).

    ``with_economics``: the break-even section even where no policy or payload gives its inputs (the section then
    says which keys would answer it); without, a report carries it only where some input is given.
    """
    settings = effective_settings(policy, payload.threshold_overrides, payload.cost_overrides)
    observed = observed_values(metrics.inputs, settings.gpu_hour_usd)  # once, for the checks and the report
    fixed = fixed_texts(observed, plan(settings.thresholds).shown)  # one conversion: sentences, report
    verdict = judge_observed(observed, settings.thresholds, settings.gpu_hour_usd, fixed)
    return verdict, build_report(payload, metrics, verdict, settings, fixed, with_economics=with_economics)


def evaluate_feasibility(payload: object, policy: Mapping[str, float | int | None] | None = None) -> dict[str, object]:
    """Validate a spike payload and return its decision report (raises ``PayloadValidationError``)."""
    return evaluate_payload(validate_payload(payload), policy)[2]


_HEADLINES = {
    "enable_maml": "MAML is recommended now: enable it on top of LoRA.",
    "collect_more_evidence": "Not yet: there is too little evidence to decide; collect more projects.",
    "defer_maml_fast_enough": "MAML is not recommended now: LoRA-only already adapts fast enough.",
    "defer_maml_low_effect": "MAML is not recommended now: it does not cut adaptation steps enough.",
    "defer_maml_accuracy_penalty": "MAML is not recommended now: it costs too much final accuracy.",
    "defer_maml_cost_too_high": "MAML is not recommended now: its extra training cost is over budget.",
}


def _num(value: object) -> str:
    return fmt(float(value)) if isinstance(value, (int, float)) else str(value)


def render_interpretation(report: Mapping[str, object]) -> str:
    """A short plain-language Markdown reading of a report: recommendation, failed check, deltas."""
    base, cand = report["baseline"], report["candidate"]
    comp, cost = report["comparison"], report["cost"]
    assert isinstance(base, dict) and isinstance(cand, dict) and isinstance(comp, dict) and isinstance(cost, dict)
    run = report.get("spike_run_id")
    title = f"# MAML feasibility: `{report['decision']}`" + (f" (spike run `{run}`)" if run else "")
    lines = [title, "", f"**{_HEADLINES.get(str(report['decision']), str(report['decision']))}**", ""]
    failed = report.get("failed_check")
    reasons = report.get("reasons") or []
    checks = report.get("checks")
    assert isinstance(reasons, list)
    # The checks' reasons come first (the failing ones, or every one when all pass); any after them are
    # notes beside the checks, such as targets the candidate missed.
    judged = len(reasons)
    if isinstance(checks, dict) and checks:
        judged = sum(not passed for passed in checks.values()) or len(checks)
    if failed:
        lines.append(f"Failed check: `{failed}`. {reasons[0] if reasons else ''}".rstrip())
        for extra in reasons[1:judged]:
            lines.append(f"Also failing: {extra}")
    else:
        lines.append("Every check passed.")
    lines.extend(reasons[judged:])
    base_total = float(base["train_minutes"]) + float(base["meta_train_minutes"])
    cand_total = float(cand["train_minutes"]) + float(cand["meta_train_minutes"])
    lines += [
        "",
        "| | LoRA-only | LoRA+MAML | change |",
        "|---|---:|---:|---:|",
        f"| mean steps to target | {_num(base['mean_steps_to_target'])} | {_num(cand['mean_steps_to_target'])} | "
        f"-{_num(comp['mean_step_reduction'])} ({pct(float(comp['relative_step_reduction']))}) |",
        f"| max steps to target | {_num(base['max_steps_to_target'])} | {_num(cand['max_steps_to_target'])} | |",
        f"| mean final accuracy (pp) | {_num(base['mean_final_accuracy_pp'])} | "
        f"{_num(cand['mean_final_accuracy_pp'])} | "
        f"regression {_num(comp['mean_accuracy_regression_pp'])} pp |",
        f"| training minutes (incl. meta-training) | {_num(base_total)} | {_num(cand_total)} | "
        f"+{_num(cost['extra_training_minutes'])} ({_num(cost['training_overhead_pct'])}%) |",
        "",
        f"Extra GPU cost: ${_num(cost['extra_gpu_cost_usd_per_run'])} per run at "
        f"${_num(cost['assumptions']['gpu_hour_usd'])}/GPU-hour.",
    ]
    lines.extend(_economics_lines(report.get("economics")))
    alignment = report["project_alignment"]
    assert isinstance(alignment, dict)
    lines.append(f"Judged over {alignment['common_project_count']} common projects.")
    for side in ("baseline", "candidate"):
        unmatched = alignment.get(f"{side}_only_projects") or []
        if unmatched:
            lines.append(f"Only in the {side} run (not compared): {', '.join(map(str, unmatched))}.")
    return "\n".join(lines) + "\n"


def _economics_lines(found: object) -> list[str]:
    """The break-even in plain words, or which cost_profile keys would answer it."""
    if not isinstance(found, dict):
        return []
    saving, breakeven, monthly = (
        found["saving_per_adaptation_usd"],
        found["breakeven_adaptations_per_run"],
        found["monthly_net_usd"],
    )
    lines = []
    if saving is not None:
        pays = (
            f"it pays for itself after {breakeven} adaptation{'s' if breakeven != 1 else ''} per training run"
            if breakeven is not None
            else "it never pays for itself (an adaptation saves nothing)"
        )
        lines.append(f"Break-even: each adaptation saves ${_num(saving)} of GPU time; {pays}.")
    if monthly is not None:
        inputs = found["inputs"]
        per_month = _num(inputs["adaptations_per_month"]["value"])
        runs = _num(inputs["training_runs_per_month"]["value"])
        lines.append(
            f"At {per_month} adaptations and {runs} training run(s) a month, MAML nets ${_num(monthly)} a month."
        )
    if found["missing"]:
        keys = " and ".join(f"`{key}`" for key in found["missing"])
        lines.append(f"Break-even needs {keys} (cost_profile in the payload, or thresholds.toml).")
    return lines
