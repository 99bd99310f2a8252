"""A seeded generator of realistic spike payloads: varied project counts, both accuracy scales, all six decisions."""

from __future__ import annotations

import random
from collections.abc import Iterator

DECISIONS = (
    "enable_maml",
    "defer_maml_fast_enough",
    "defer_maml_low_effect",
    "defer_maml_accuracy_penalty",
    "defer_maml_cost_too_high",
    "collect_more_evidence",
)
TEAMS = ("support", "legal", "search", "ads", "translation", "code", "medical", "finance", "retail", "safety")


def _project(rng: random.Random, team: str, index: int) -> str:
    return f"{team}-{index:02d}-{rng.choice(('faq', 'rank', 'summarise', 'classify', 'extract', 'route'))}"


def generate_payload(rng: random.Random, spike_run_id: str, intended: str | None = None) -> dict[str, object]:
    """One payload built to land on ``intended`` (default: a random one of the six decisions)."""
    intended = intended or rng.choice(DECISIONS)
    team = rng.choice(TEAMS)
    count = rng.randint(0, 2) if intended == "collect_more_evidence" else rng.randint(3, 12)
    names = [_project(rng, team, i) for i in range(count)]
    ratio = rng.random() < 0.5
    scale = 0.01 if ratio else 1.0
    baseline_rows, candidate_rows = [], []
    for name in names:
        base_steps = rng.randint(1, 3) if intended == "defer_maml_fast_enough" else rng.randint(6, 16)
        if intended == "defer_maml_low_effect":
            cand_steps = max(0, base_steps - rng.choice((0, 1)))
        else:
            cand_steps = max(0, round(base_steps * rng.uniform(0.35, 0.6)))
        target = rng.uniform(70.0, 92.0)
        base_final = target + rng.uniform(0.0, 1.5)
        if intended == "defer_maml_accuracy_penalty":
            cand_final = base_final - rng.uniform(1.6, 4.0)
        else:
            cand_final = base_final - rng.uniform(-0.3, 0.6)
        baseline_rows.append(
            {
                "project": name,
                "steps_to_target": base_steps,
                "target_accuracy": round(target * scale, 4),
                "final_accuracy": round(min(base_final, 99.9) * scale, 4),
            }
        )
        candidate_rows.append(
            {
                "project": name,
                "steps_to_target": cand_steps,
                "target_accuracy": round(target * scale, 4),
                "final_accuracy": round(min(max(cand_final, 0.0), 99.9) * scale, 4),
            }
        )
    if count and rng.random() < 0.15:  # a project that only the baseline finished
        extra = _project(rng, team, 99)
        baseline_rows.append({"project": extra, "steps_to_target": 9, "target_accuracy": round(80 * scale, 4)})
    baseline_minutes = rng.uniform(40.0, 240.0)
    overhead = rng.uniform(0.6, 1.5) if intended == "defer_maml_cost_too_high" else rng.uniform(0.05, 0.35)
    meta = baseline_minutes * overhead * rng.uniform(0.3, 0.7)
    payload: dict[str, object] = {
        "spike_run_id": spike_run_id,
        "intended_decision": intended,
        "baseline": {
            "label": "lora_only",
            "per_project_adaptation": baseline_rows,
            "train_minutes": round(baseline_minutes, 2),
        },
        "candidate": {
            "label": "lora_plus_maml",
            "per_project_adaptation": candidate_rows,
            "train_minutes": round(baseline_minutes * (1 + overhead) - meta, 2),
            "meta_train_minutes": round(meta, 2),
        },
        # keep the cost guard's USD limit out of the way unless this payload should fail on cost
        "cost_profile": {"gpu_hour_usd": 0.5 if intended != "defer_maml_cost_too_high" else 2.5},
    }
    if rng.random() < 0.1:
        payload["thresholds"] = {"min_projects": 3, "max_mean_accuracy_regression_pp": 1.0}
    return payload


def generate_payloads(count: int, seed: int = 141) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    for index in range(count):
        yield generate_payload(rng, f"bench-{seed}-{index:06d}", DECISIONS[index % len(DECISIONS)])
