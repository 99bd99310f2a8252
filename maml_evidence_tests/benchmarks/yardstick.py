"""A yardstick for the core benchmark: the spec's rules in one pass over plain dicts, nothing else.

It computes what the gate reports (the common projects, each project's step reduction and accuracy delta, both
arms' adaptation speed and accuracy, the reductions, the regression, the cost model, all five checks and the
decision by precedence, each condition's margin and the closest call), with the numbers rounded as the report
shows them. It does no validation, builds no
typed records, writes no sentences, and trusts its input completely, so the benchmark can say how many times
that the real core costs. Never used by the product; a test holds its decisions to the core's.
"""

from __future__ import annotations

from math import fsum

DEFAULTS = {
    "min_projects": 3,
    "trigger_mean_steps": 4.0,
    "trigger_max_steps": 7.0,
    "min_mean_step_reduction": 1.5,
    "min_relative_step_reduction": 0.25,
    "max_mean_accuracy_regression_pp": 1.0,
    "max_training_overhead_pct": 50.0,
    "max_extra_gpu_cost_usd_per_run": 2.0,
}
DEFAULT_GPU_HOUR_USD = 2.5
ON_FAIL = {
    "enough_projects": "collect_more_evidence",
    "adaptation_triggered": "defer_maml_fast_enough",
    "effectiveness_ok": "defer_maml_low_effect",
    "accuracy_ok": "defer_maml_accuracy_penalty",
    "cost_ok": "defer_maml_cost_too_high",
}


def _mean(values: list[float]) -> float:
    return fsum(values) / len(values) if values else 0.0


def decide(payload: dict, policy: dict | None = None, *, margins: bool = True) -> dict[str, object]:
    """The decision, every check and every number the report shows, for one (trusted) payload.

    ``margins``: also each condition's margin and the closest call, which reports carry since issue 12 (the
    core is measured against this); without them, the spec's rules alone (the yardstick issue 10 set its
    target against, still printed beside it).
    """
    t = {**DEFAULTS, **(policy or {}), **payload.get("thresholds", {})}
    price = {"gpu_hour_usd": DEFAULT_GPU_HOUR_USD, **(policy or {}), **payload.get("cost_profile", {})}["gpu_hour_usd"]
    base, cand = payload["baseline"], payload["candidate"]
    base_rows, cand_rows = base["per_project_adaptation"], cand["per_project_adaptation"]
    by_name = {row["project"]: row for row in cand_rows}

    declared = payload.get("score_scale")
    if declared is None:  # ratios when every accuracy is at most 1 (and there is at least one)
        keys = ("target_accuracy", "final_accuracy")
        accuracies = [row[k] for row in (*base_rows, *cand_rows) for k in keys if k in row]
        ratio = bool(accuracies) and max(accuracies) <= 1.0
    else:
        ratio = declared != "percentage_points"
    factor = 100.0 if ratio else 1.0

    common, per_project = [], []
    base_steps, cand_steps, reductions, base_final, cand_final = [], [], [], [], []
    for b in base_rows:
        c = by_name.get(b["project"])
        if c is None:
            continue
        bs, cs = b["steps_to_target"], c["steps_to_target"]
        bf = b.get("final_accuracy", b["target_accuracy"]) * factor
        cf = c.get("final_accuracy", c["target_accuracy"]) * factor
        common.append(b["project"])
        base_steps.append(bs)
        cand_steps.append(cs)
        reductions.append(bs - cs)
        base_final.append(bf)
        cand_final.append(cf)
        per_project.append((b["project"], round(bs - cs, 4), round(cf - bf, 4)))
    n = len(common)
    base_mean, cand_mean = _mean(base_steps), _mean(cand_steps)
    base_max, cand_max = max(base_steps, default=0.0), max(cand_steps, default=0.0)
    reduction = _mean(reductions)
    relative = reduction / base_mean if base_mean > 0 else 0.0
    base_final_mean, cand_final_mean = _mean(base_final), _mean(cand_final)
    regression = max(0.0, base_final_mean - cand_final_mean)
    extra = max(0.0, cand["train_minutes"] + cand.get("meta_train_minutes", 0.0) - base["train_minutes"])
    overhead = extra / base["train_minutes"] * 100.0
    usd = extra / 60.0 * price

    checks = {  # every check is computed; the first failing one decides
        "enough_projects": n >= t["min_projects"],
        "adaptation_triggered": base_mean >= t["trigger_mean_steps"] or base_max >= t["trigger_max_steps"],
        "effectiveness_ok": reduction >= t["min_mean_step_reduction"] and relative >= t["min_relative_step_reduction"],
        "accuracy_ok": regression <= t["max_mean_accuracy_regression_pp"],
        "cost_ok": overhead <= t["max_training_overhead_pct"] and usd <= t["max_extra_gpu_cost_usd_per_run"],
    }
    failed = next((name for name, passed in checks.items() if not passed), None)
    common_set = set(common)
    explained: dict[str, object] = {}
    if margins:  # each condition's margin in its threshold's unit, and the closest call, as the report has them
        given = {
            "enough_projects": (False, ((n, t["min_projects"], 1),)),
            "adaptation_triggered": (
                True,
                ((base_mean, t["trigger_mean_steps"], 1), (base_max, t["trigger_max_steps"], 1)),
            ),
            "effectiveness_ok": (
                False,
                ((reduction, t["min_mean_step_reduction"], 1), (relative, t["min_relative_step_reduction"], 1)),
            ),
            "accuracy_ok": (False, ((regression, t["max_mean_accuracy_regression_pp"], -1),)),
            "cost_ok": (
                False,
                ((overhead, t["max_training_overhead_pct"], -1), (usd, t["max_extra_gpu_cost_usd_per_run"], -1)),
            ),
        }
        closest, closest_size = None, 0.0
        for name, (either, conditions) in given.items():
            found, found_relative, shown = None, 0.0, []
            for observed, threshold, sign in conditions:
                margin = (observed - threshold) * sign
                shown.append(round(margin, 4))
                share = margin / abs(threshold) if threshold else margin
                if found is None or (share > found_relative if either else share < found_relative):
                    found, found_relative = (name, len(shown) - 1), share
            explained[name] = shown
            if closest is None or abs(found_relative) < closest_size:
                closest, closest_size = found, abs(found_relative)
        explained["closest_call"] = closest
    return {
        **explained,
        "decision": ON_FAIL[failed] if failed else "enable_maml",
        "failed_check": failed,
        "checks": checks,
        "common_projects": common,
        "baseline_only": [row["project"] for row in base_rows if row["project"] not in common_set],
        "candidate_only": [row["project"] for row in cand_rows if row["project"] not in common_set],
        "per_project": per_project,
        "baseline": (round(base_mean, 4), round(base_max, 4), round(base_final_mean, 4)),
        "candidate": (round(cand_mean, 4), round(cand_max, 4), round(cand_final_mean, 4)),
        "mean_step_reduction": round(reduction, 4),
        "relative_step_reduction": round(relative, 4),
        "mean_accuracy_regression_pp": round(regression, 4),
        "extra_training_minutes": round(extra, 4),
        "training_overhead_pct": round(overhead, 4),
        "extra_gpu_cost_usd_per_run": round(usd, 4),
    }
