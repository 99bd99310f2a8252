"""Margins: how far each condition's observed value is from its threshold, and the report's closest call."""

from __future__ import annotations

import json

import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.gate import GateInputs, Thresholds, judge
from maml_evidence_tests.gate.conftest import DECISION_FIXTURES, load_fixture, minimal_payload


def conditions(report: dict) -> list[dict]:
    return [c for detail in report["check_details"].values() for c in detail["conditions"]]


@pytest.mark.parametrize("fixture", sorted(DECISION_FIXTURES))
def test_every_condition_has_a_margin_in_the_direction_that_passes(fixture):
    report = evaluate_feasibility(load_fixture(fixture))
    for c in conditions(report):
        room = c["observed"] - c["threshold"] if c["operator"] == ">=" else c["threshold"] - c["observed"]
        assert c["margin"] == pytest.approx(room, abs=2e-4), c
        # positive: passed with room; negative: failed by that much (0: exactly at the threshold of >= or <=)
        assert (c["margin"] >= 0) is c["passed"] or c["margin"] == 0, c
    json.dumps(report, allow_nan=False)


def test_the_closest_call_is_the_condition_nearest_its_threshold_relative_to_it():
    report = evaluate_feasibility(minimal_payload())
    # 3 common projects against a minimum of 3: no room at all
    assert report["closest_call"] == {
        "check": "enough_projects",
        "metric": "common_project_count",
        "observed": 3.0,
        "operator": ">=",
        "threshold": 3.0,
        "threshold_key": "min_projects",
        "margin": 0.0,
        "relative_margin": 0.0,
    }
    roomy = evaluate_feasibility({**minimal_payload(), "thresholds": {"min_projects": 1}})
    closest = roomy["closest_call"]
    # relative to each threshold: projects 3 vs 1 (+200%), mean steps 7 vs 4 (+75%, the better condition of the
    # "any" check), relative reduction 38.1% vs 25% (+52%), accuracy 0.5 vs 1 pp (+50%), overhead 40% vs 50% (+20%)
    assert (closest["check"], closest["metric"]) == ("cost_ok", "training_overhead_pct")
    assert (closest["margin"], closest["relative_margin"]) == (10.0, 0.2)


def test_a_failed_check_reports_how_much_it_failed_by():
    report = evaluate_feasibility(load_fixture("cost_too_high.json"))
    overhead = report["check_details"]["cost_ok"]["conditions"][0]
    assert (overhead["metric"], overhead["margin"], overhead["passed"]) == ("training_overhead_pct", -50.0, False)


def test_an_any_check_is_as_close_as_its_best_condition_and_undefined_values_have_no_margin():
    verdict = judge(GateInputs(3, 5.0, 9.0, 2.0, 0.4, 0.0, 0.0, 0.0), Thresholds(), 1.0)
    triggered = verdict.checks[1]
    assert [c.margin for c in triggered.conditions] == [1.0, 2.0]
    # relative margins 1/4 and 2/7: "any" is as close as its better condition
    assert triggered.closest is triggered.conditions[1]
    strict = Thresholds(require_strong_evidence=True)
    evidence = judge(GateInputs(3, 5.0, 9.0, 2.0, 0.4, 0.0, 0.0, 0.0), strict, 1.0).checks[-1]
    assert [c.margin for c in evidence.conditions][:2] == [None, None]
    assert evidence.closest is None
