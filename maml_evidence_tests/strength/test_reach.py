"""The evidence section with replicates and unreached targets: reach per arm, within-project sds, the grade."""

from __future__ import annotations

import json
import statistics

import pytest

from maml_evidence.gate import Thresholds, validate_payload
from maml_evidence.gate.report import evaluate_payload
from maml_evidence.strength import evidence_section, evidence_strength, render_evidence
from maml_evidence_tests.gate.conftest import build_payload, minimal_payload

NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def strong_payload() -> dict:
    """Eight projects, every one cut by 5 or 6 steps, accuracy within a tenth of a point: strong evidence."""
    return build_payload(
        [10.0, 12.0, 11.0, 13.0, 9.0, 14.0, 12.0, 10.0],
        [5.0, 6.0, 6.0, 7.0, 4.0, 8.0, 6.0, 5.0],
        candidate_final=[79.9, 80.0, 79.8, 80.1, 79.9, 80.0, 79.95, 80.05],
        names=NAMES,
        meta=1.0,
    )


def entries(payload: dict, arm: str) -> list[dict]:
    return payload[arm]["per_project_adaptation"]


def section(payload: dict) -> tuple[dict, dict]:
    """(rounded evidence section, report) of a payload."""
    metrics, verdict, report = evaluate_payload(validate_payload(payload))
    report["evidence"] = evidence_section(metrics, verdict, Thresholds(**report["thresholds"]))
    return report["evidence"], report


def test_spec_payloads_reach_everything():
    evidence, _ = section(minimal_payload())
    assert evidence["reach"] == {
        "baseline": {"unreached_projects": [], "reach_rate": 1.0},
        "candidate": {"unreached_projects": [], "reach_rate": 1.0},
        "missed_targets": [],
    }
    assert evidence["step_reduction"]["within_project_sd"] == {"baseline": {}, "candidate": {}}


def test_the_reach_block_names_unreached_projects_per_arm_and_the_misses():
    payload = strong_payload()
    entries(payload, "baseline")[0]["reached_target"] = False
    entries(payload, "baseline")[3]["reached_target"] = False
    entries(payload, "candidate")[3]["reached_target"] = False
    entries(payload, "candidate")[5]["replicates"] = [
        {"seed": 1, "steps_to_target": 7, "reached_target": False},
        {"seed": 2, "steps_to_target": 9},
    ]
    del entries(payload, "candidate")[5]["steps_to_target"], entries(payload, "candidate")[5]["final_accuracy"]
    evidence, _ = section(payload)
    assert evidence["reach"] == {
        "baseline": {"unreached_projects": ["alpha", "delta"], "reach_rate": 0.75},
        "candidate": {"unreached_projects": ["delta", "zeta"], "reach_rate": 0.75},
        "missed_targets": ["zeta"],
    }
    json.dumps(evidence, allow_nan=False)


def test_within_project_sds_count_projects_with_two_or_more_replicates():
    payload = strong_payload()
    base, cand = entries(payload, "baseline"), entries(payload, "candidate")
    for entry in (base[1], cand[1], cand[2]):
        del entry["steps_to_target"]
        entry.pop("final_accuracy", None)
    base[1]["replicates"] = [{"steps_to_target": 11}, {"steps_to_target": 12}, {"steps_to_target": 14}]
    cand[1]["replicates"] = [{"steps_to_target": 6, "seed": 1}, {"steps_to_target": 6, "seed": 2}]
    cand[2]["replicates"] = [{"steps_to_target": 6}]  # one replicate: no spread to give
    metrics, verdict, report = evaluate_payload(validate_payload(payload))
    raw = evidence_strength(metrics, verdict, Thresholds(**report["thresholds"]))
    within = raw["step_reduction"]["within_project_sd"]
    assert within == {
        "baseline": {"beta": pytest.approx(statistics.stdev([11, 12, 14]), rel=1e-12)},
        "candidate": {"beta": 0.0},
    }
    # beside the between-project sd of the reductions, which uses each project's mean
    assert raw["step_reduction"]["per_project"]["beta"] == pytest.approx(37 / 3 - 6)
    shown = evidence_section(metrics, verdict, Thresholds(**report["thresholds"]))["step_reduction"][
        "within_project_sd"
    ]
    assert shown == {"baseline": {"beta": round(statistics.stdev([11, 12, 14]), 4)}, "candidate": {"beta": 0.0}}


def test_the_grade_is_never_strong_while_a_candidate_project_is_unreached():
    evidence, _ = section(strong_payload())
    assert evidence["grade"] == "strong"
    payload = strong_payload()
    entries(payload, "candidate")[2]["reached_target"] = False
    evidence, report = section(payload)
    assert report["checks"]["effectiveness_ok"] and report["checks"]["accuracy_ok"]
    assert evidence["grade"] == "suggestive"
    assert "LoRA+MAML never reached the target on gamma, so its steps are a lower bound" in evidence["grade_reason"]
    # the same from replicates: one of gamma's two seeds stopped short
    payload = strong_payload()
    gamma = entries(payload, "candidate")[2]
    del gamma["steps_to_target"], gamma["final_accuracy"]
    gamma["replicates"] = [{"steps_to_target": 6}, {"steps_to_target": 6, "reached_target": False}]
    entries(payload, "candidate")[4]["reached_target"] = False
    evidence, _ = section(payload)
    assert evidence["grade"] == "suggestive"
    assert "on gamma, epsilon, so their steps are lower bounds" in evidence["grade_reason"]


def test_a_baseline_that_stopped_short_does_not_by_itself_weaken_the_grade():
    payload = strong_payload()
    entries(payload, "baseline")[2]["reached_target"] = False
    evidence, _ = section(payload)
    assert evidence["grade"] == "strong"


def test_the_paragraph_says_which_steps_are_lower_bounds():
    payload = strong_payload()
    entries(payload, "baseline")[0]["reached_target"] = False
    entries(payload, "candidate")[2]["reached_target"] = False
    entries(payload, "candidate")[4]["reached_target"] = False
    _, report = section(payload)
    text = render_evidence(report)
    assert (
        "Some steps to target are lower bounds, where training stopped short of the target: for LoRA-only on alpha "
        "(reach rate 87.5%); for LoRA+MAML on gamma, epsilon (reach rate 75%). The means use them as given "
        "(restricted means); the true means can only be larger." in text
    )
    _, plain = section(strong_payload())
    assert "lower bound" not in render_evidence(plain) and "restricted" not in render_evidence(plain)


def test_a_stored_section_without_reach_still_renders():
    _, report = section(minimal_payload())
    del report["evidence"]["reach"]
    assert "lower bound" not in render_evidence(report)
