"""The gate's checks as data: ``CHECK_TABLE``, ``observed_values`` and ``judge`` running the one table.

The table is what another evaluator (SQL over the evidence tables) applies column by column, so these tests
evaluate it the way such an evaluator would, without ``judge``, and hold the two to the same answers.
"""

from __future__ import annotations

import math
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maml_evidence import evaluate_feasibility
from maml_evidence.gate import (
    CHECK_NAMES,
    CHECK_TABLE,
    CHECKS,
    DECISIONS,
    ENABLE,
    THRESHOLD_KEYS,
    CheckSpec,
    ConditionSpec,
    GateInputs,
    Thresholds,
    judge,
    observed_values,
)
from maml_evidence.gate import decision as decision_module
from maml_evidence.gate.decision import FIXED_LIMITS
from maml_evidence_tests.gate.conftest import load_fixture

OPERATORS = {">=": operator.ge, "<=": operator.le, "<": operator.lt}
COMBINE = {"all": all, "any": any}

inputs_strategy = st.builds(
    GateInputs,
    st.integers(0, 20),
    *[st.floats(0, 1e6) for _ in range(7)],
    st.floats(0, 50),
    st.sampled_from([None, "alpha", "beta"]),
    st.integers(0, 3),
    st.none() | st.floats(0, 1),
    st.none() | st.floats(-5, 5),
)
thresholds_strategy = st.builds(
    Thresholds,
    st.integers(0, 20),
    st.floats(0, 50),
    st.floats(0, 50),
    st.floats(0, 50),
    st.floats(0, 1),
    st.floats(0, 10),
    st.floats(0, 200),
    st.floats(0, 10),
    st.none() | st.floats(0, 20),
    st.booleans(),
)


def table_outcome(observed: dict[str, float], thresholds: dict[str, float]) -> tuple[dict[str, bool], str]:
    """CHECK_TABLE evaluated as plain data, as a SQL evaluator would: flags by check, then the decision.

    An optional check runs where its setting is a number or true; a missing value (None) fails its condition.
    """
    limits = {**thresholds, **FIXED_LIMITS}
    running = [
        spec
        for spec in CHECK_TABLE
        if spec.enabled_by is None or (limits[spec.enabled_by] is not None and limits[spec.enabled_by] is not False)
    ]
    flags = {
        spec.name: COMBINE[spec.combine](
            observed[c.metric] is not None and OPERATORS[c.operator](observed[c.metric], limits[c.threshold_key])
            for c in spec.conditions
        )
        for spec in running
    }
    decision = next((spec.on_fail for spec in running if not flags[spec.name]), ENABLE)
    return flags, decision


def test_the_table_is_the_spec_in_precedence_order():
    spec_checks = [spec for spec in CHECK_TABLE if spec.enabled_by is None]
    assert [(spec.name, spec.combine, spec.on_fail) for spec in spec_checks] == [
        ("enough_projects", "all", "collect_more_evidence"),
        ("adaptation_triggered", "any", "defer_maml_fast_enough"),
        ("effectiveness_ok", "all", "defer_maml_low_effect"),
        ("accuracy_ok", "all", "defer_maml_accuracy_penalty"),
        ("cost_ok", "all", "defer_maml_cost_too_high"),
    ]
    conditions = [(c.metric, c.operator, c.threshold_key) for spec in spec_checks for c in spec.conditions]
    assert conditions == [
        ("common_project_count", ">=", "min_projects"),
        ("baseline_mean_steps", ">=", "trigger_mean_steps"),
        ("baseline_max_steps", ">=", "trigger_max_steps"),
        ("mean_step_reduction", ">=", "min_mean_step_reduction"),
        ("relative_step_reduction", ">=", "min_relative_step_reduction"),
        ("mean_accuracy_regression_pp", "<=", "max_mean_accuracy_regression_pp"),
        ("training_overhead_pct", "<=", "max_training_overhead_pct"),
        ("extra_gpu_cost_usd_per_run", "<=", "max_extra_gpu_cost_usd_per_run"),
    ]


def test_the_optional_guards_sit_where_their_decisions_belong():
    """The worst-project guard defers like the accuracy check, right after it; strong evidence is asked for last,
    so it only ever turns an enable_maml into collect_more_evidence."""
    names = [spec.name for spec in CHECK_TABLE]
    guard = CHECK_TABLE[names.index("project_accuracy_ok")]
    assert names.index("project_accuracy_ok") == names.index("accuracy_ok") + 1
    assert (guard.on_fail, guard.enabled_by) == ("defer_maml_accuracy_penalty", "max_project_accuracy_regression_pp")
    assert [(c.metric, c.operator, c.threshold_key) for c in guard.conditions] == [
        ("worst_project_accuracy_regression_pp", "<=", "max_project_accuracy_regression_pp")
    ]
    evidence = CHECK_TABLE[-1]
    assert (evidence.name, evidence.on_fail, evidence.enabled_by) == (
        "evidence_strength",
        "collect_more_evidence",
        "require_strong_evidence",
    )
    assert [(c.metric, c.operator, c.threshold_key) for c in evidence.conditions] == [
        ("step_reduction_p_value", "<", "significance_level"),
        ("upper95_regression_pp", "<=", "max_mean_accuracy_regression_pp"),
        ("candidate_unreached_projects", "<=", "unreached_projects_allowed"),
    ]
    assert FIXED_LIMITS == {"significance_level": 0.05, "unreached_projects_allowed": 0.0}


def test_the_older_names_are_derived_from_the_table():
    assert [(spec.name, spec.on_fail) for spec in CHECK_TABLE] == list(CHECKS)
    assert tuple(spec.name for spec in CHECK_TABLE) == CHECK_NAMES
    assert tuple(dict.fromkeys((ENABLE, *(spec.on_fail for spec in CHECK_TABLE)))) == DECISIONS
    assert len(DECISIONS) == 6


def test_every_entry_names_observed_metrics_known_thresholds_and_known_rules():
    observed = observed_values(GateInputs(3, 7.0, 8.0, 2.5, 0.35, 0.5, 18.0, 40.0), 2.5)
    for spec in CHECK_TABLE:
        assert spec.combine in COMBINE, spec.name
        assert spec.conditions, spec.name
        for condition in spec.conditions:
            assert condition.metric in observed, condition
            assert condition.operator in OPERATORS, condition
            assert condition.threshold_key in (*THRESHOLD_KEYS, *FIXED_LIMITS), condition


def test_observed_values_are_the_gate_inputs_and_the_priced_extra_minutes():
    inputs = GateInputs(4, 7.0, 9.0, 2.5, 0.35, 0.25, 18.0, 40.0)
    observed = observed_values(inputs, 3.0)
    assert observed == {**inputs.as_dict(), "extra_gpu_cost_usd_per_run": 18.0 / 60.0 * 3.0}
    assert observed_values(inputs, 0.0)["extra_gpu_cost_usd_per_run"] == 0.0


def test_judging_the_observed_values_is_judging_the_inputs():
    """The report path takes the observed values once and judges them; re-evaluation judges the inputs."""
    inputs = GateInputs(4, 7.0, 9.0, 2.5, 0.35, 0.25, 18.0, 40.0)
    for price in (0.0, 2.5, 30.0):
        observed = observed_values(inputs, price)
        assert decision_module.judge_observed(observed, Thresholds(), price) == judge(inputs, Thresholds(), price)


@settings(max_examples=300, deadline=None)
@given(inputs_strategy, thresholds_strategy, st.floats(0, 100))
def test_the_table_as_data_gives_judges_flags_and_decision(inputs, thresholds, price):
    verdict = judge(inputs, thresholds, price)
    flags, decision = table_outcome(observed_values(inputs, price), thresholds.as_dict())
    assert verdict.flags() == flags
    assert verdict.decision == decision
    assert verdict.failed_check == next((name for name, passed in flags.items() if not passed), None)
    running = [spec for spec in CHECK_TABLE if spec.name in flags]
    for check, spec in zip(verdict.checks, running, strict=True):
        assert [(c.metric, c.operator, c.threshold_key) for c in check.conditions] == [
            (c.metric, c.operator, c.threshold_key) for c in spec.conditions
        ]
        for condition in check.conditions:
            assert condition.check == spec.name
            limits = {**thresholds.as_dict(), **FIXED_LIMITS}
            assert condition.threshold == float(limits[condition.threshold_key])


def test_a_new_check_is_one_entry(monkeypatch: pytest.MonkeyPatch):
    def explain(passed: bool, shown: dict[str, str], cmp: dict[str, str]) -> str:
        return (
            f"worst case {shown['baseline_max_steps']} steps {cmp['baseline_max_steps']} {shown['trigger_max_steps']}"
        )

    guard = CheckSpec(
        "worst_project_guard",
        (ConditionSpec("baseline_max_steps", "<=", "trigger_max_steps"),),
        "all",
        "defer_maml_worst_project",
        explain,
    )
    monkeypatch.setattr(decision_module, "CHECK_TABLE", (*CHECK_TABLE, guard))
    decision_module.plan.cache_clear()  # which checks run is cached per thresholds
    try:
        verdict = judge(GateInputs(3, 7.0, 8.0, 2.6667, 0.381, 0.5, 18.0, 40.0), Thresholds(), 2.5)
    finally:
        decision_module.plan.cache_clear()
    spec_names = [spec.name for spec in CHECK_TABLE if spec.enabled_by is None]
    assert verdict.flags() == {**dict.fromkeys(spec_names, True), "worst_project_guard": False}
    assert (verdict.decision, verdict.failed_check) == ("defer_maml_worst_project", "worst_project_guard")
    assert verdict.checks[-1].reason == "worst case 8 steps > 7"
    assert verdict.checks[-1].conditions[0].check == "worst_project_guard"


# Every sentence of every check, passing and failing, exactly as the gate has always written it.
PASSING = {
    "enough_projects": "3 common projects meet the minimum of 3.",
    "adaptation_triggered": "LoRA-only adaptation is slow enough to need help "
    "(mean 7 steps >= trigger 4, max 8 steps >= trigger 7).",
    "effectiveness_ok": "MAML reduces adaptation steps enough "
    "(mean reduction 2.6667 steps >= 1.5, relative 38.0952% >= 25%).",
    "accuracy_ok": "Mean final-accuracy regression 0.5 pp is within the allowed 1 pp.",
    "cost_ok": "MAML's extra training cost is within budget "
    "(+18 training minutes: overhead 40% <= 50%, $0.75 per run at $2.5/GPU-hour <= $2).",
}
FAILING = {
    ("collect_more_evidence.json", "enough_projects"): "Only 2 common projects; the gate needs at least 3.",
    ("fast_enough.json", "adaptation_triggered"): "LoRA-only adaptation is already fast enough "
    "(mean 3.3333 steps < trigger 4, max 4 steps < trigger 7).",
    ("low_effect.json", "effectiveness_ok"): "MAML does not reduce adaptation steps enough "
    "(mean reduction 1 steps < 1.5, relative 14.2857% < 25%).",
    ("accuracy_penalty.json", "accuracy_ok"): "MAML lowers mean final accuracy by 2 pp, more than the allowed 1 pp.",
    ("cost_too_high.json", "cost_ok"): "MAML's extra training cost exceeds the budget "
    "(+45 training minutes: overhead 100% > 50%, $1.875 per run at $2.5/GPU-hour <= $2).",
}


def test_every_passing_sentence_is_unchanged():
    report = evaluate_feasibility(load_fixture("minimal.json"))
    assert {name: detail["reason"] for name, detail in report["check_details"].items()} == PASSING
    assert report["reasons"] == list(PASSING.values())


@pytest.mark.parametrize(("fixture", "check"), sorted(FAILING), ids=lambda v: str(v))
def test_every_failing_sentence_is_unchanged(fixture, check):
    report = evaluate_feasibility(load_fixture(fixture))
    assert report["failed_check"] == check
    assert report["check_details"][check]["reason"] == FAILING[fixture, check]
    assert report["reasons"][0] == FAILING[fixture, check]


def test_fractions_read_as_percentages_and_other_numbers_as_plain_numbers():
    verdict = judge(GateInputs(3, 7.0, 8.0, 2.0, 0.12345678, 0.0, 0.0, 0.0), Thresholds(), 1.0)
    effect = verdict.checks[2].reason
    assert "relative 12.3457% < 25%" in effect and "mean reduction 2 steps >= 1.5" in effect
    assert math.isclose(verdict.checks[2].conditions[1].observed, 0.12345678)
