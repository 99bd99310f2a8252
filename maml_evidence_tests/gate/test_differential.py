"""Differential tests: the benchmark's one-pass yardstick and the gate core must reach the same answers.

The yardstick (maml_evidence_tests/benchmarks/yardstick.py) restates the spec's rules over plain dicts; the
benchmark's ratio means something only while both compute the same thing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from maml_evidence import evaluate_feasibility
from maml_evidence_tests.benchmarks.yardstick import decide
from maml_evidence_tests.gate.conftest import DECISION_FIXTURES, load_fixture
from maml_evidence_tests.gate.test_properties import valid_payloads
from maml_evidence_tests.generator import generate_payloads

POLICIES = [None, {"min_projects": 5, "max_training_overhead_pct": 20.0, "gpu_hour_usd": 9.0}]


def assert_same(payload: dict, policy: dict | None = None, *, numbers: bool = True) -> None:
    report, quick = evaluate_feasibility(payload, policy), decide(payload, policy)
    assert (quick["decision"], quick["failed_check"]) == (report["decision"], report["failed_check"])
    assert quick["checks"] == report["checks"]
    assert quick["common_projects"] == report["project_alignment"]["common_projects"]
    if numbers:
        comparison, cost = report["comparison"], report["cost"]
        for key in ("mean_step_reduction", "relative_step_reduction", "mean_accuracy_regression_pp"):
            assert quick[key] == comparison[key], key
        for key in ("extra_training_minutes", "training_overhead_pct", "extra_gpu_cost_usd_per_run"):
            assert quick[key] == cost[key], key
        for name, details in report["check_details"].items():  # margins and the closest call (issue 12)
            assert quick[name] == [c["margin"] for c in details["conditions"]], name
        closest = report["closest_call"]
        check, index = quick["closest_call"]
        assert (check, report["check_details"][check]["conditions"][index]["metric"]) == (
            closest["check"],
            closest["metric"],
        )
        for arm in ("baseline", "candidate"):
            shown = report[arm]
            assert quick[arm] == (
                shown["mean_steps_to_target"],
                shown["max_steps_to_target"],
                shown["mean_final_accuracy_pp"],
            )


@pytest.mark.parametrize("policy", POLICIES, ids=["defaults", "policy"])
def test_generated_corpus(policy):
    for payload in generate_payloads(1500, seed=7):
        assert_same(payload, policy)


@pytest.mark.parametrize("name", sorted(DECISION_FIXTURES))
def test_fixtures(name):
    assert_same(load_fixture(name))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_payloads())
def test_any_valid_payload(payload):
    # Extreme valid numbers saturate in the core where the yardstick overflows: compare decisions only.
    assert_same(payload, numbers=False)
