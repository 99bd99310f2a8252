"""The optional guards of issue 11: a worst-project accuracy limit and a demand for strong evidence.

Both are rows of the gate's check table, off by default: a spec payload under the spec's defaults gets the spec's
report, and switching a guard on (policy or payload) adds its check, its threshold and the threshold's source.
"""

from __future__ import annotations

import json

import pytest

from maml_evidence import PayloadValidationError, evaluate_feasibility
from maml_evidence.gate import SPEC_CHECK_NAMES, SPEC_THRESHOLD_KEYS
from maml_evidence.policy import parse_policy, policy_version
from maml_evidence_tests.gate.conftest import DECISION_FIXTURES, load_fixture, minimal_payload, run_cli


def with_thresholds(payload: dict, **thresholds: object) -> dict:
    payload.setdefault("thresholds", {}).update(thresholds)
    return payload


@pytest.mark.parametrize("fixture", sorted(DECISION_FIXTURES))
def test_guards_left_off_change_nothing_in_a_report(fixture):
    report = evaluate_feasibility(load_fixture(fixture))
    assert list(report["checks"]) == list(SPEC_CHECK_NAMES)
    assert list(report["check_details"]) == list(SPEC_CHECK_NAMES)
    assert list(report["thresholds"]) == list(SPEC_THRESHOLD_KEYS)
    assert list(report["threshold_sources"]) == list(SPEC_THRESHOLD_KEYS)
    # a guard switched off explicitly is shown as set, and still changes no decision
    off = evaluate_feasibility(with_thresholds(load_fixture(fixture), require_strong_evidence=False))
    assert off["decision"] == report["decision"] and off["checks"] == report["checks"]
    assert off["thresholds"]["require_strong_evidence"] is False
    assert off["threshold_sources"]["require_strong_evidence"] == "payload"


def test_worst_project_guard_defers_on_accuracy_and_names_the_project():
    payload = minimal_payload()
    payload["candidate"]["per_project_adaptation"][1]["final_accuracy"] = 0.775  # project-b loses 1.5 pp
    payload["candidate"]["per_project_adaptation"][0]["final_accuracy"] = 0.815  # project-a gains: mean stays low
    assert evaluate_feasibility(payload)["decision"] == "enable_maml"  # the mean regression is within 1 pp
    report = evaluate_feasibility(with_thresholds(payload, max_project_accuracy_regression_pp=1.0))
    assert (report["decision"], report["failed_check"]) == ("defer_maml_accuracy_penalty", "project_accuracy_ok")
    assert report["reasons"] == [
        "MAML lowers final accuracy on project-b by 1.5 pp, more than the 1 pp allowed for any one project."
    ]
    (condition,) = report["check_details"]["project_accuracy_ok"]["conditions"]
    assert condition == {
        "metric": "worst_project_accuracy_regression_pp",
        "observed": 1.5,
        "operator": "<=",
        "threshold": 1.0,
        "threshold_key": "max_project_accuracy_regression_pp",
        "passed": False,
        "margin": -0.5,  # failed by half a point
    }
    assert report["thresholds"]["max_project_accuracy_regression_pp"] == 1.0
    assert report["threshold_sources"]["max_project_accuracy_regression_pp"] == "payload"


def test_worst_project_guard_passes_within_its_limit_and_a_zero_limit_is_a_limit():
    report = evaluate_feasibility(with_thresholds(minimal_payload(), max_project_accuracy_regression_pp=2))
    assert report["decision"] == "enable_maml" and report["checks"]["project_accuracy_ok"] is True
    assert report["check_details"]["project_accuracy_ok"]["reason"] == (
        "The worst project, project-a, loses 0.5 pp of final accuracy, within the 2 pp allowed per project."
    )
    strict = evaluate_feasibility(with_thresholds(minimal_payload(), max_project_accuracy_regression_pp=0))
    assert strict["failed_check"] == "project_accuracy_ok"


def test_null_switches_the_worst_project_guard_off():
    report = evaluate_feasibility(with_thresholds(minimal_payload(), max_project_accuracy_regression_pp=None))
    assert "project_accuracy_ok" not in report["checks"]
    assert report["thresholds"]["max_project_accuracy_regression_pp"] is None


def test_strong_evidence_required_but_not_measured_collects_more_evidence():
    """The plain gate has no statistics (standard library only): strong evidence cannot be shown there."""
    report = evaluate_feasibility(with_thresholds(minimal_payload(), require_strong_evidence=True))
    assert (report["decision"], report["failed_check"]) == ("collect_more_evidence", "evidence_strength")
    assert report["checks"] == {**dict.fromkeys(SPEC_CHECK_NAMES, True), "evidence_strength": False}
    (reason,) = report["reasons"]
    assert reason.startswith("The policy requires strong evidence before enabling MAML, and this run's is not strong")
    assert "step-reduction p = undefined" in reason and "needs < 0.05" in reason
    conditions = report["check_details"]["evidence_strength"]["conditions"]
    assert [(c["metric"], c["observed"], c["passed"]) for c in conditions] == [
        ("step_reduction_p_value", None, False),
        ("upper95_regression_pp", None, False),
        ("candidate_unreached_projects", 0.0, True),
    ]
    json.dumps(report, allow_nan=False)


def test_strong_evidence_only_ever_turns_an_enable_into_collect_more_evidence():
    for fixture, decision in DECISION_FIXTURES.items():
        report = evaluate_feasibility(with_thresholds(load_fixture(fixture), require_strong_evidence=True))
        expected = "collect_more_evidence" if decision == "enable_maml" else decision
        assert report["decision"] == expected, fixture


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("require_strong_evidence", "yes", 'thresholds.require_strong_evidence: expected true or false, got "yes"'),
        ("require_strong_evidence", 1, "thresholds.require_strong_evidence: expected true or false, got 1"),
        ("require_strong_evidence", None, "thresholds.require_strong_evidence: expected true or false, got null"),
        (
            "max_project_accuracy_regression_pp",
            -1,
            "thresholds.max_project_accuracy_regression_pp: expected a number of percentage points between 0 and "
            "1e12, or null (not checked), got -1",
        ),
        (
            "max_project_accuracy_regression_pp",
            True,
            "thresholds.max_project_accuracy_regression_pp: expected a number of percentage points between 0 and "
            "1e12, or null (not checked), got true",
        ),
    ],
)
def test_bad_guard_values_are_refused_with_the_field_the_value_and_what_was_expected(key, value, message):
    with pytest.raises(PayloadValidationError) as caught:
        evaluate_feasibility(with_thresholds(minimal_payload(), **{key: value}))
    assert [str(p) for p in caught.value.problems] == [message]


def test_a_policy_switches_the_guards_on_and_a_default_spelled_out_is_no_new_version():
    policy = parse_policy("require_strong_evidence = true\nmax_project_accuracy_regression_pp = 2.5\n", "t.toml")
    report = evaluate_feasibility(minimal_payload(), policy.values)
    assert report["threshold_sources"]["require_strong_evidence"] == "policy"
    assert report["thresholds"]["max_project_accuracy_regression_pp"] == 2.5
    assert report["decision"] == "collect_more_evidence"
    assert policy_version({}) == policy_version({"require_strong_evidence": False})
    assert policy_version({}) != policy.version
    with pytest.raises(PayloadValidationError, match="require_strong_evidence: expected true or false"):
        parse_policy('require_strong_evidence = "true"\n', "t.toml")


def test_the_plain_gate_command_judges_the_guards_too(tmp_path):
    path = tmp_path / "spike.json"
    path.write_text(json.dumps(with_thresholds(minimal_payload(), require_strong_evidence=True)))
    done = run_cli("--input", str(path), "--enforce-enable", script="maml-feasibility-gate")
    assert done.returncode != 0
    assert json.loads(done.stdout)["decision"] == "collect_more_evidence"
