"""Strong evidence required: the statistics are measured before the gate judges, and "strong" is one rule.

``evaluate_with_evidence`` (``maml-evidence gate`` and the pipeline) hands the gate the larger one-sided p-value of
the step reduction and the upper 95% bound of the accuracy regression; the gate's optional ``evidence_strength``
check judges them, and the evidence grade's ``strong`` is that same check whether or not a policy requires it.
"""

from __future__ import annotations

import json

import pytest

from maml_evidence.gate import Thresholds, validate_payload
from maml_evidence.gate.decision import evidence_check
from maml_evidence.strength import evaluate_with_evidence, interpretation_with_evidence
from maml_evidence_tests.gate.conftest import minimal_payload, run_cli
from maml_evidence_tests.generator import generate_payloads

REQUIRE = {"require_strong_evidence": True}


def strong_payload(projects: int = 8) -> dict:
    """Every project adapts clearly faster with MAML and loses almost no accuracy (with some spread)."""
    baseline, candidate = [], []
    for i in range(projects):
        name = f"project-{i}"
        baseline.append(
            {"project": name, "steps_to_target": 12 + i % 3, "target_accuracy": 80.0, "final_accuracy": 81.0}
        )
        candidate.append(
            {
                "project": name,
                "steps_to_target": 6 + i % 2,
                "target_accuracy": 80.0,
                "final_accuracy": 81.0 - (i % 3) / 10,
            }
        )
    return {
        "baseline": {"per_project_adaptation": baseline, "train_minutes": 45.0},
        "candidate": {"per_project_adaptation": candidate, "train_minutes": 50.0, "meta_train_minutes": 5.0},
    }


def judged(payload: dict, policy: dict | None = None):
    return evaluate_with_evidence(validate_payload(payload), policy)


def test_strong_evidence_enables_when_the_policy_requires_it():
    result = judged(strong_payload(), REQUIRE)
    assert result.report["decision"] == "enable_maml"
    assert result.report["checks"]["evidence_strength"] is True
    assert result.evidence["grade"] == "strong"
    conditions = result.report["check_details"]["evidence_strength"]["conditions"]
    step = result.evidence["step_reduction"]
    assert conditions[0]["observed"] == pytest.approx(max(step["t_p_value"], step["sign_flip_p_value"]), abs=1e-4)
    assert conditions[0]["observed"] < 0.05
    assert conditions[1]["observed"] == pytest.approx(result.evidence["accuracy"]["upper95_regression_pp"], abs=1e-4)


def test_three_projects_cannot_be_strong_so_an_enable_collects_more_evidence():
    result = judged(minimal_payload(), REQUIRE)
    assert (result.report["decision"], result.report["failed_check"]) == ("collect_more_evidence", "evidence_strength")
    assert result.evidence["grade"] != "strong"
    (reason,) = result.report["reasons"]
    # measured, so the p-value is a number: with 3 projects the sign-flip p is at least 1/8; every project
    # loses the same 0.5 pp, so the accuracy bound is undefined (no spread) and says so
    assert "step-reduction p = 0.125 " in reason
    assert "upper 95% bound of the accuracy regression = undefined" in reason
    # without the requirement the spec's decision stands, and the grade is the same
    plain = judged(minimal_payload())
    assert plain.report["decision"] == "enable_maml" and "evidence_strength" not in plain.report["checks"]
    assert plain.evidence["grade"] == result.evidence["grade"]


def test_an_unreached_candidate_target_is_never_strong():
    payload = strong_payload()
    payload["candidate"]["per_project_adaptation"][3]["reached_target"] = False
    result = judged(payload, REQUIRE)
    assert result.evidence["grade"] != "strong"
    assert result.report["failed_check"] == "evidence_strength"
    condition = result.report["check_details"]["evidence_strength"]["conditions"][2]
    assert (condition["metric"], condition["observed"], condition["passed"]) == (
        "candidate_unreached_projects",
        1.0,
        False,
    )


def test_the_grade_is_strong_exactly_when_the_gate_check_passes():
    """On generated payloads (and the strong one), the grade and the gate's check never disagree."""
    payloads = [strong_payload(), strong_payload(12), *generate_payloads(150, seed=11)]
    strong_seen = 0
    for raw in payloads:
        result = judged(raw)
        check = evidence_check(result.metrics.inputs, Thresholds())
        assert (result.evidence["grade"] == "strong") is check.passed, raw.get("spike_run_id")
        required = judged(raw, REQUIRE)
        if result.report["decision"] == "enable_maml":
            expected = "enable_maml" if check.passed else "collect_more_evidence"
            assert required.report["decision"] == expected
        else:
            assert required.report["decision"] == result.report["decision"]
        strong_seen += check.passed
    assert strong_seen >= 2  # the comparison covered both outcomes


def test_maml_evidence_gate_measures_and_maml_feasibility_gate_cannot(tmp_path):
    path = tmp_path / "spike.json"
    path.write_text(json.dumps({**strong_payload(), "thresholds": REQUIRE}))
    measured = run_cli("gate", "--input", str(path), "--enforce-enable", script="maml-evidence")
    assert measured.returncode == 0, measured.stderr
    assert json.loads(measured.stdout)["decision"] == "enable_maml"
    plain = run_cli("--input", str(path), "--enforce-enable", script="maml-feasibility-gate")
    assert plain.returncode != 0
    assert json.loads(plain.stdout)["failed_check"] == "evidence_strength"


def test_a_p_value_below_four_decimals_reads_as_below_0_0001_not_as_zero():
    result = judged(strong_payload())
    assert result.report["evidence"]["step_reduction"]["t_p_value"] == 0  # rounded for reading
    assert 0 < result.evidence["step_reduction"]["t_p_value"] < 0.00005
    text = interpretation_with_evidence(result.report)
    assert "p < 0.0001 by a t-test" in text and "p = 0 " not in text
