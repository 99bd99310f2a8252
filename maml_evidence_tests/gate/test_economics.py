"""Break-even (issue 12): when MAML's extra training pays for itself, beside the spec's cost figures."""

from __future__ import annotations

import json
import math

import pytest

from maml_evidence import PayloadValidationError, evaluate_feasibility
from maml_evidence.gate import render_interpretation, validate_payload
from maml_evidence.policy import parse_policy, policy_version
from maml_evidence.strength import evaluate_with_evidence
from maml_evidence_tests.gate.conftest import DECISION_FIXTURES, load_fixture, minimal_payload


def with_cost(payload: dict, **cost: object) -> dict:
    payload.setdefault("cost_profile", {}).update(cost)
    return payload


def test_the_break_even_figures_follow_the_issue_formulas():
    report = evaluate_feasibility(with_cost(minimal_payload(), minutes_per_adaptation_step=2, adaptations_per_month=40))
    found = report["economics"]
    reduction, extra = 8 / 3, 18 / 60 * 2.5  # mean step reduction; extra GPU cost per run at $2.5/hour
    saving = reduction * 2 / 60 * 2.5
    assert found["saving_per_adaptation_usd"] == round(saving, 4)
    assert found["breakeven_adaptations_per_run"] == math.ceil(extra / saving) == 4
    assert found["monthly_net_usd"] == round(40 * saving - 1 * extra, 4)
    assert found["missing"] == []
    assert found["inputs"] == {
        "gpu_hour_usd": {"value": 2.5, "source": "default"},
        "minutes_per_adaptation_step": {"value": 2.0, "source": "payload"},
        "adaptations_per_month": {"value": 40.0, "source": "payload"},
        "training_runs_per_month": {"value": 1, "source": "default"},
    }
    text = render_interpretation(report)
    assert "it pays for itself after 4 adaptations per training run" in text
    assert "At 40 adaptations and 1 training run(s) a month, MAML nets $" in text


def test_missing_inputs_leave_figures_null_and_the_interpretation_names_the_key():
    report = evaluate_feasibility(with_cost(minimal_payload(), adaptations_per_month=10))
    found = report["economics"]
    assert (found["saving_per_adaptation_usd"], found["breakeven_adaptations_per_run"], found["monthly_net_usd"]) == (
        None,
        None,
        None,
    )
    assert found["missing"] == ["minutes_per_adaptation_step"]
    assert "Break-even needs `minutes_per_adaptation_step`" in render_interpretation(report)


def test_an_adaptation_that_saves_nothing_never_breaks_even():
    payload = with_cost(load_fixture("low_effect.json"), minutes_per_adaptation_step=1, adaptations_per_month=5)
    for entry in payload["candidate"]["per_project_adaptation"]:
        entry["steps_to_target"] = 50  # slower with MAML: a negative saving
    found = evaluate_feasibility(payload)["economics"]
    assert found["saving_per_adaptation_usd"] < 0 and found["breakeven_adaptations_per_run"] is None
    assert "never pays for itself" in render_interpretation(evaluate_feasibility(payload))


@pytest.mark.parametrize("fixture", sorted(DECISION_FIXTURES))
def test_economics_never_changes_a_decision_and_spec_payloads_get_no_section(fixture):
    plain = evaluate_feasibility(load_fixture(fixture))
    assert "economics" not in plain  # the plain gate's report stays the spec's
    priced = evaluate_feasibility(
        with_cost(load_fixture(fixture), minutes_per_adaptation_step=3, adaptations_per_month=1e6)
    )
    assert (priced["decision"], priced["checks"]) == (plain["decision"], plain["checks"])
    json.dumps(priced, allow_nan=False)


def test_the_evidence_gate_always_carries_the_section_and_says_what_is_missing():
    report = evaluate_with_evidence(validate_payload(minimal_payload())).report
    assert report["economics"]["missing"] == ["adaptations_per_month", "minutes_per_adaptation_step"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("minutes_per_adaptation_step", 0, "a number of GPU minutes > 0 and at most 1e12, got 0"),
        ("minutes_per_adaptation_step", -1, "a number of GPU minutes > 0 and at most 1e12, got -1"),
        ("adaptations_per_month", -3, "expected a number between 0 and 1e12, got -3"),
        ("training_runs_per_month", "often", 'expected a number between 0 and 1e12, got "often"'),
    ],
)
def test_bad_break_even_inputs_are_refused_with_field_value_and_expectation(key, value, message):
    with pytest.raises(PayloadValidationError) as caught:
        evaluate_feasibility(with_cost(minimal_payload(), **{key: value}))
    (problem,) = [str(p) for p in caught.value.problems]
    assert problem.startswith(f"cost_profile.{key}: ") and problem.endswith(message), problem


def test_a_policy_gives_the_inputs_and_defaults_spelled_out_are_no_new_version():
    policy = parse_policy("minutes_per_adaptation_step = 1.5\nadaptations_per_month = 20\n", "t.toml")
    found = evaluate_feasibility(minimal_payload(), policy.values)["economics"]
    assert found["inputs"]["minutes_per_adaptation_step"] == {"value": 1.5, "source": "policy"}
    assert policy_version({}) == policy_version({"training_runs_per_month": 1.0})
    assert policy_version({}) != policy.version
    # the payload wins over the policy, key by key
    payload = with_cost(minimal_payload(), adaptations_per_month=7)
    inputs = evaluate_feasibility(payload, policy.values)["economics"]["inputs"]
    assert inputs["adaptations_per_month"] == {"value": 7.0, "source": "payload"}
