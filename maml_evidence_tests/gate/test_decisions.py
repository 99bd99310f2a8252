"""Decision outcomes, precedence, metrics and defaults of the evidence gate (in-process)."""

from __future__ import annotations

import copy
import itertools
import json

import pytest

from maml_evidence import evaluate_feasibility, render_interpretation
from maml_evidence.gate import DECISIONS, SPEC_CHECK_NAMES, SPEC_THRESHOLD_KEYS
from maml_evidence_tests.gate.conftest import (
    DECISION_FIXTURES,
    build_payload,
    load_fixture,
    minimal_payload,
    project,
    strict_json,
)

ALL_PASS = dict.fromkeys(SPEC_CHECK_NAMES, True)
DEFAULT_THRESHOLDS = {
    "min_projects": 3,
    "trigger_mean_steps": 4.0,
    "trigger_max_steps": 7.0,
    "min_mean_step_reduction": 1.5,
    "min_relative_step_reduction": 0.25,
    "max_mean_accuracy_regression_pp": 1.0,
    "max_training_overhead_pct": 50.0,
    "max_extra_gpu_cost_usd_per_run": 2.0,
}


# --- the spec's minimal example --------------------------------------------------------------


def test_minimal_example_enables_maml_with_the_spec_cost_numbers():
    report = evaluate_feasibility(minimal_payload())
    assert report["decision"] == "enable_maml"
    assert report["maml_recommended"] is True
    assert report["failed_check"] is None
    assert report["checks"] == ALL_PASS
    assert report["cost"]["extra_training_minutes"] == 18.0
    assert report["cost"]["training_overhead_pct"] == 40.0
    assert report["cost"]["extra_gpu_cost_usd_per_run"] == 0.75
    assert report["cost"]["assumptions"]["gpu_hour_usd"] == 2.5


def test_minimal_example_metrics():
    report = evaluate_feasibility(minimal_payload())
    assert report["score_scale"] == "ratio_to_percentage_points"
    assert report["thresholds"] == DEFAULT_THRESHOLDS
    base, cand, comp = report["baseline"], report["candidate"], report["comparison"]
    assert (base["project_count"], base["mean_steps_to_target"], base["max_steps_to_target"]) == (3, 7.0, 8.0)
    assert (cand["project_count"], cand["mean_steps_to_target"], cand["max_steps_to_target"]) == (3, 4.3333, 5.0)
    assert base["mean_final_accuracy_pp"] == pytest.approx(79.0)
    assert cand["mean_final_accuracy_pp"] == pytest.approx(78.5)
    assert (base["train_minutes"], base["meta_train_minutes"]) == (45.0, 0.0)
    assert (cand["train_minutes"], cand["meta_train_minutes"]) == (55.0, 8.0)
    assert comp["mean_step_reduction"] == pytest.approx(8 / 3, abs=1e-4)
    assert comp["relative_step_reduction"] == pytest.approx((8 / 3) / 7, abs=1e-4)
    assert comp["mean_accuracy_regression_pp"] == pytest.approx(0.5)
    assert [row["project"] for row in comp["per_project"]] == ["project-a", "project-b", "project-c"]
    assert [row["step_reduction"] for row in comp["per_project"]] == [3.0, 3.0, 2.0]
    assert comp["per_project"][0]["baseline_final_accuracy_pp"] == pytest.approx(81.0)
    assert comp["per_project"][0]["final_accuracy_delta_pp"] == pytest.approx(-0.5)


def test_report_is_strict_json_and_has_the_documented_sections():
    report = evaluate_feasibility(minimal_payload())
    json.loads(strict_json(report))
    for key in (
        "decision",
        "maml_recommended",
        "score_scale",
        "thresholds",
        "project_alignment",
        "baseline",
        "candidate",
        "comparison",
        "cost",
        "checks",
        "reasons",
    ):
        assert key in report, key
    assert set(report["checks"]) == set(SPEC_CHECK_NAMES)
    assert all(isinstance(flag, bool) for flag in report["checks"].values())


def test_evaluate_does_not_mutate_the_payload():
    payload = minimal_payload()
    before = copy.deepcopy(payload)
    evaluate_feasibility(payload)
    assert payload == before


# --- every decision outcome ------------------------------------------------------------------

FIXTURE_CHECKS = {
    "minimal.json": ALL_PASS,
    "fast_enough.json": {**ALL_PASS, "adaptation_triggered": False},
    "low_effect.json": {**ALL_PASS, "effectiveness_ok": False},
    "accuracy_penalty.json": {**ALL_PASS, "accuracy_ok": False},
    "cost_too_high.json": {**ALL_PASS, "cost_ok": False},
    "collect_more_evidence.json": {**ALL_PASS, "enough_projects": False},
    "empty_projects.json": {
        **ALL_PASS,
        "enough_projects": False,
        "adaptation_triggered": False,
        "effectiveness_ok": False,
    },
}


@pytest.mark.parametrize("name", sorted(DECISION_FIXTURES), ids=lambda n: n.removesuffix(".json"))
def test_fixture_decisions(name):
    report = evaluate_feasibility(load_fixture(name))
    assert report["decision"] == DECISION_FIXTURES[name]
    assert report["checks"] == FIXTURE_CHECKS[name]
    assert report["maml_recommended"] is (DECISION_FIXTURES[name] == "enable_maml")


def test_all_six_decisions_are_covered_by_fixtures():
    assert set(DECISION_FIXTURES.values()) == set(DECISIONS)
    assert len(DECISIONS) == 6


def test_fast_enough_reason_states_the_trigger_numbers():
    report = evaluate_feasibility(load_fixture("fast_enough.json"))
    assert report["failed_check"] == "adaptation_triggered"
    reason = report["reasons"][0]
    for number in ("3.3333", "4", "7"):
        assert number in reason
    assert report["baseline"]["mean_steps_to_target"] == pytest.approx(10 / 3, abs=1e-4)
    assert report["baseline"]["max_steps_to_target"] == 4.0


def test_low_effect_reason_states_reduction_and_thresholds():
    report = evaluate_feasibility(load_fixture("low_effect.json"))
    assert report["failed_check"] == "effectiveness_ok"
    assert report["comparison"]["mean_step_reduction"] == 1.0
    assert report["comparison"]["relative_step_reduction"] == pytest.approx(1 / 7, abs=1e-4)
    reason = report["reasons"][0]
    assert "1.5" in reason and "14.2857%" in reason and "25%" in reason


def test_accuracy_penalty_reason_states_regression_and_allowance():
    report = evaluate_feasibility(load_fixture("accuracy_penalty.json"))
    assert report["score_scale"] == "percentage_points"
    assert report["comparison"]["mean_accuracy_regression_pp"] == 2.0
    assert report["reasons"] == ["MAML lowers mean final accuracy by 2 pp, more than the allowed 1 pp."]


def test_cost_too_high_reason_states_minutes_overhead_and_dollars():
    report = evaluate_feasibility(load_fixture("cost_too_high.json"))
    assert report["cost"] == {
        "extra_training_minutes": 45.0,
        "training_overhead_pct": 100.0,
        "extra_gpu_cost_usd_per_run": 1.875,
        "assumptions": {"gpu_hour_usd": 2.5, "gpu_hour_usd_source": "default"},
    }
    reason = report["reasons"][0]
    for number in ("+45", "100%", "50%", "$1.875", "$2.5", "$2"):
        assert number in reason


def test_collect_more_evidence_lists_unmatched_projects_and_keeps_extras():
    report = evaluate_feasibility(load_fixture("collect_more_evidence.json"))
    alignment = report["project_alignment"]
    assert alignment["common_projects"] == ["project-a", "project-b"]
    assert alignment["common_project_count"] == 2
    assert alignment["baseline_only_projects"] == ["project-c"]
    assert alignment["candidate_only_projects"] == ["project-d"]
    assert report["spike_run_id"] == "fixture-collect-more-evidence"
    assert "Only 2 common projects" in report["reasons"][0] and "3" in report["reasons"][0]


def test_empty_project_lists_collect_more_evidence():
    report = evaluate_feasibility(load_fixture("empty_projects.json"))
    assert report["decision"] == "collect_more_evidence"
    assert report["project_alignment"]["common_project_count"] == 0
    assert report["baseline"]["mean_steps_to_target"] == 0.0
    assert report["comparison"]["relative_step_reduction"] == 0.0
    assert report["comparison"]["per_project"] == []
    json.loads(strict_json(report))


def test_empty_candidate_list_only_collects_more_evidence():
    payload = minimal_payload()
    payload["candidate"]["per_project_adaptation"] = []
    report = evaluate_feasibility(payload)
    assert report["decision"] == "collect_more_evidence"
    assert report["project_alignment"]["baseline_only_projects"] == ["project-a", "project-b", "project-c"]


# --- precedence --------------------------------------------------------------------------------

# Threshold overrides that make exactly one check fail on the spec's minimal example.
BREAKERS = {
    "enough_projects": {"min_projects": 4},
    "adaptation_triggered": {"trigger_mean_steps": 100.0, "trigger_max_steps": 100.0},
    "effectiveness_ok": {"min_mean_step_reduction": 10.0},
    "accuracy_ok": {"max_mean_accuracy_regression_pp": 0.1},
    "cost_ok": {"max_training_overhead_pct": 10.0},
}
EXPECTED_ON_FAIL = {
    "enough_projects": "collect_more_evidence",
    "adaptation_triggered": "defer_maml_fast_enough",
    "effectiveness_ok": "defer_maml_low_effect",
    "accuracy_ok": "defer_maml_accuracy_penalty",
    "cost_ok": "defer_maml_cost_too_high",
}
SUBSETS = [
    frozenset(name for name, on in zip(SPEC_CHECK_NAMES, mask, strict=True) if on)
    for mask in itertools.product((False, True), repeat=len(SPEC_CHECK_NAMES))
]


@pytest.mark.parametrize("failing", SUBSETS, ids=lambda s: "+".join(n for n in SPEC_CHECK_NAMES if n in s) or "none")
def test_first_failing_check_wins_and_every_check_is_reported(failing):
    payload = minimal_payload()
    payload["thresholds"] = {key: value for name in failing for key, value in BREAKERS[name].items()}
    report = evaluate_feasibility(payload)
    first = next((name for name in SPEC_CHECK_NAMES if name in failing), None)
    assert report["decision"] == (EXPECTED_ON_FAIL[first] if first else "enable_maml")
    assert report["failed_check"] == first
    assert report["checks"] == {name: name not in failing for name in SPEC_CHECK_NAMES}
    # reasons: the failing checks, the decisive one first
    assert len(report["reasons"]) == (len(failing) or len(SPEC_CHECK_NAMES))
    if first:
        assert report["reasons"][0] == report["check_details"][first]["reason"]


def test_payload_failing_effectiveness_and_cost_is_low_effect():
    # a weak effect (1 step) AND an expensive run (100% overhead): effectiveness is decided first
    payload = build_payload([8, 7, 6], [7, 6, 5], baseline_train=45.0, candidate_train=80.0, meta=10.0)
    report = evaluate_feasibility(payload)
    assert report["decision"] == "defer_maml_low_effect"
    assert report["failed_check"] == "effectiveness_ok"
    assert report["checks"] == {**ALL_PASS, "effectiveness_ok": False, "cost_ok": False}
    assert report["cost"]["training_overhead_pct"] == 100.0
    assert len(report["reasons"]) == 2
    assert "reduce" in report["reasons"][0] and "100%" in report["reasons"][1]


def test_everything_failing_data_driven_collects_more_evidence_with_all_checks_computed():
    payload = build_payload(
        [2, 2],
        [2, 2],
        baseline_final=[90, 90],
        candidate_final=[80, 80],
        baseline_train=10.0,
        candidate_train=100.0,
        meta=50.0,
    )
    report = evaluate_feasibility(payload)
    assert report["decision"] == "collect_more_evidence"
    assert report["checks"] == dict.fromkeys(SPEC_CHECK_NAMES, False)
    assert report["comparison"]["mean_accuracy_regression_pp"] == 10.0
    assert report["cost"]["extra_training_minutes"] == 140.0
    assert len(report["reasons"]) == 5


# --- individual checks and their boundaries ----------------------------------------------------


@pytest.mark.parametrize(
    ("baseline_steps", "triggered"),
    [
        pytest.param([5, 5, 5], True, id="mean-only"),
        pytest.param([1, 1, 8], True, id="max-only"),
        pytest.param([4, 4, 4], True, id="mean-exactly-4"),
        pytest.param([1, 1, 7], True, id="max-exactly-7"),
        pytest.param([3, 3, 5], False, id="neither"),
        pytest.param([4, 4, 3.99], False, id="mean-just-below-4"),
    ],
)
def test_adaptation_trigger_is_mean_or_max(baseline_steps, triggered):
    report = evaluate_feasibility(build_payload(baseline_steps, [0, 0, 0]))
    assert report["checks"]["adaptation_triggered"] is triggered


@pytest.mark.parametrize(
    ("baseline_steps", "candidate_steps", "effective"),
    [
        pytest.param([20, 20, 20], [18, 18, 18], False, id="absolute-ok-relative-10pct"),
        pytest.param([4, 4, 4], [3, 3, 3], False, id="relative-25pct-absolute-1"),
        pytest.param([6, 6, 6], [4.5, 4.5, 4.5], True, id="both-exactly-at-threshold"),
        pytest.param([8, 7, 6], [9, 9, 9], False, id="candidate-slower"),
    ],
)
def test_effectiveness_needs_absolute_and_relative_reduction(baseline_steps, candidate_steps, effective):
    report = evaluate_feasibility(build_payload(baseline_steps, candidate_steps))
    assert report["checks"]["effectiveness_ok"] is effective


def test_relative_reduction_is_mean_reduction_over_baseline_mean():
    report = evaluate_feasibility(build_payload([10, 20, 30], [5, 10, 27]))
    assert report["comparison"]["mean_step_reduction"] == pytest.approx(6.0)
    assert report["comparison"]["relative_step_reduction"] == pytest.approx(0.3)


def test_relative_reduction_is_zero_when_baseline_mean_is_zero():
    report = evaluate_feasibility(build_payload([0, 0, 0], [1, 1, 1]))
    assert report["comparison"]["mean_step_reduction"] == -1.0
    assert report["comparison"]["relative_step_reduction"] == 0.0
    assert report["decision"] == "defer_maml_fast_enough"
    assert report["checks"]["effectiveness_ok"] is False


def test_accuracy_regression_is_clamped_at_zero_when_candidate_is_better():
    report = evaluate_feasibility(
        build_payload([8, 7, 6], [4, 4, 4], baseline_final=[70, 70, 70], candidate_final=[75, 75, 75])
    )
    assert report["comparison"]["mean_accuracy_regression_pp"] == 0.0
    assert report["comparison"]["per_project"][0]["final_accuracy_delta_pp"] == 5.0
    assert report["decision"] == "enable_maml"


def test_accuracy_regression_is_on_means_not_per_project():
    report = evaluate_feasibility(
        build_payload([8, 7, 6], [4, 4, 4], baseline_final=[80, 80, 80], candidate_final=[77, 81.5, 81.5])
    )
    assert report["comparison"]["mean_accuracy_regression_pp"] == 0.0
    assert report["checks"]["accuracy_ok"] is True


@pytest.mark.parametrize(
    ("candidate_final", "ok"),
    [pytest.param(79.0, True, id="exactly-1pp"), pytest.param(78.9, False, id="1.1pp")],
)
def test_accuracy_boundary(candidate_final, ok):
    report = evaluate_feasibility(build_payload([8, 7, 6], [4, 4, 4], candidate_final=[candidate_final] * 3))
    assert report["checks"]["accuracy_ok"] is ok
    assert report["decision"] == ("enable_maml" if ok else "defer_maml_accuracy_penalty")


@pytest.mark.parametrize(
    ("baseline_train", "candidate_train", "meta", "price", "overhead", "usd", "ok"),
    [
        pytest.param(60.0, 80.0, 10.0, None, 50.0, 1.25, True, id="overhead-exactly-50pct"),
        pytest.param(60.0, 80.0, 10.5, None, 50.8333, 1.2708, False, id="overhead-over"),
        pytest.param(100.0, 148.0, None, None, 48.0, 2.0, True, id="usd-exactly-2"),
        pytest.param(1000.0, 1060.0, 0.0, None, 6.0, 2.5, False, id="usd-over-at-default-price"),
        pytest.param(1000.0, 1060.0, 0.0, 1.0, 6.0, 1.0, True, id="usd-ok-at-payload-price"),
        pytest.param(60.0, 40.0, 10.0, None, 0.0, 0.0, True, id="candidate-cheaper-clamped-to-0"),
        pytest.param(60.0, 200.0, 0.0, 0.0, 233.3333, 0.0, False, id="free-gpu-still-overhead"),
    ],
)
def test_cost_model(baseline_train, candidate_train, meta, price, overhead, usd, ok):
    extra = {"cost_profile": {"gpu_hour_usd": price}} if price is not None else {}
    payload = build_payload(
        [8, 7, 6], [4, 4, 4], baseline_train=baseline_train, candidate_train=candidate_train, meta=meta, **extra
    )
    report = evaluate_feasibility(payload)
    expected_extra = max(0.0, candidate_train + (meta or 0.0) - baseline_train)
    assert report["cost"]["extra_training_minutes"] == pytest.approx(expected_extra)
    assert report["cost"]["training_overhead_pct"] == pytest.approx(overhead, abs=1e-4)
    assert report["cost"]["extra_gpu_cost_usd_per_run"] == pytest.approx(usd, abs=1e-4)
    assert report["cost"]["assumptions"]["gpu_hour_usd"] == (2.5 if price is None else price)
    assert report["checks"]["cost_ok"] is ok


# --- defaults ------------------------------------------------------------------------------------


def test_final_accuracy_defaults_to_target_accuracy():
    payload = build_payload([8, 7, 6], [4, 4, 4])
    for entry in payload["baseline"]["per_project_adaptation"]:
        entry["final_accuracy"] = 95.0
    for entry in payload["candidate"]["per_project_adaptation"]:
        entry.pop("final_accuracy", None)  # candidate target is 80 -> final 80
    report = evaluate_feasibility(payload)
    assert report["candidate"]["mean_final_accuracy_pp"] == 80.0
    assert report["comparison"]["mean_accuracy_regression_pp"] == 15.0
    assert report["decision"] == "defer_maml_accuracy_penalty"


def test_meta_train_minutes_defaults_to_zero():
    payload = minimal_payload()
    del payload["candidate"]["meta_train_minutes"]
    report = evaluate_feasibility(payload)
    assert report["candidate"]["meta_train_minutes"] == 0.0
    assert report["cost"]["extra_training_minutes"] == 10.0


def test_labels_default_and_can_be_set():
    payload = minimal_payload()
    del payload["baseline"]["label"], payload["candidate"]["label"]
    report = evaluate_feasibility(payload)
    assert (report["baseline"]["label"], report["candidate"]["label"]) == ("lora_only", "lora_plus_maml")
    payload["baseline"]["label"], payload["candidate"]["label"] = "lora-r8", "lora-r8+maml"
    report = evaluate_feasibility(payload)
    assert (report["baseline"]["label"], report["candidate"]["label"]) == ("lora-r8", "lora-r8+maml")


def test_gpu_price_defaults_to_2_5_and_is_overridable():
    payload = minimal_payload()
    assert evaluate_feasibility(payload)["cost"]["assumptions"]["gpu_hour_usd_source"] == "default"
    payload["cost_profile"] = {"gpu_hour_usd": 10.0}
    report = evaluate_feasibility(payload)
    assert report["cost"]["extra_gpu_cost_usd_per_run"] == 3.0  # 18 min at $10/h
    assert report["cost"]["assumptions"] == {"gpu_hour_usd": 10.0, "gpu_hour_usd_source": "payload"}
    assert report["decision"] == "defer_maml_cost_too_high"


def test_thresholds_are_overridden_key_by_key():
    payload = minimal_payload()
    payload["thresholds"] = {"max_training_overhead_pct": 30, "min_projects": 2}
    report = evaluate_feasibility(payload)
    assert report["thresholds"] == {**DEFAULT_THRESHOLDS, "max_training_overhead_pct": 30, "min_projects": 2}
    assert report["threshold_sources"]["max_training_overhead_pct"] == "payload"
    assert report["threshold_sources"]["trigger_mean_steps"] == "default"
    assert report["decision"] == "defer_maml_cost_too_high"
    assert "30%" in report["reasons"][0] and "40%" in report["reasons"][0]


def test_empty_thresholds_object_keeps_defaults():
    payload = minimal_payload()
    payload["thresholds"] = {}
    payload["cost_profile"] = {}
    report = evaluate_feasibility(payload)
    assert report["thresholds"] == DEFAULT_THRESHOLDS
    assert report["decision"] == "enable_maml"


def test_every_threshold_key_is_overridable():
    for key in SPEC_THRESHOLD_KEYS:
        payload = minimal_payload()
        value = 0 if key == "min_projects" else 0.5
        payload["thresholds"] = {key: value}
        assert evaluate_feasibility(payload)["thresholds"][key] == value, key


# --- project alignment ---------------------------------------------------------------------------


def test_common_projects_in_baseline_order_and_unmatched_listed():
    payload = build_payload([8, 7, 6], [4, 4, 4], names=["c", "a", "b"])
    payload["baseline"]["per_project_adaptation"].append(project("only-base", 1000))
    cand = payload["candidate"]["per_project_adaptation"]
    payload["candidate"]["per_project_adaptation"] = [cand[1], project("only-cand", 0), cand[2], cand[0]]
    report = evaluate_feasibility(payload)
    alignment = report["project_alignment"]
    assert alignment["baseline_projects"] == ["c", "a", "b", "only-base"]
    assert alignment["candidate_projects"] == ["a", "only-cand", "b", "c"]
    assert alignment["common_projects"] == ["c", "a", "b"]
    assert alignment["common_project_count"] == 3
    assert alignment["baseline_only_projects"] == ["only-base"]
    assert alignment["candidate_only_projects"] == ["only-cand"]
    assert [row["project"] for row in report["comparison"]["per_project"]] == ["c", "a", "b"]
    # unmatched projects do not leak into the metrics
    assert report["baseline"]["project_count"] == 3
    assert report["baseline"]["max_steps_to_target"] == 8.0
    assert report["candidate"]["mean_steps_to_target"] == 4.0
    assert report["decision"] == "enable_maml"


def test_project_names_are_matched_exactly():
    payload = build_payload([8, 7, 6], [4, 4, 4], names=["a", "b", "c"])
    payload["candidate"]["per_project_adaptation"][0]["project"] = "A"
    report = evaluate_feasibility(payload)
    assert report["project_alignment"]["baseline_only_projects"] == ["a"]
    assert report["project_alignment"]["candidate_only_projects"] == ["A"]
    assert report["decision"] == "collect_more_evidence"


# --- score scale -----------------------------------------------------------------------------------


def test_ratio_scale_is_inferred_and_converted():
    report = evaluate_feasibility(minimal_payload())
    assert report["score_scale"] == "ratio_to_percentage_points"
    assert report["comparison"]["per_project"][1]["candidate_final_accuracy_pp"] == pytest.approx(78.5)


def test_percentage_points_scale_is_inferred():
    report = evaluate_feasibility(load_fixture("accuracy_penalty.json"))
    assert report["score_scale"] == "percentage_points"
    assert report["baseline"]["mean_final_accuracy_pp"] == 79.0


def test_exactly_one_counts_as_ratio():
    payload = build_payload([8, 7, 6], [4, 4, 4], baseline_final=[1.0] * 3, candidate_final=[0.99] * 3)
    for arm_name in ("baseline", "candidate"):
        for entry in payload[arm_name]["per_project_adaptation"]:
            entry["target_accuracy"] = 0.9
    report = evaluate_feasibility(payload)
    assert report["score_scale"] == "ratio_to_percentage_points"
    assert report["comparison"]["mean_accuracy_regression_pp"] == pytest.approx(1.0)


def test_declared_percentage_points_overrides_inference():
    payload = minimal_payload()
    payload["score_scale"] = "percentage_points"
    report = evaluate_feasibility(payload)
    assert report["score_scale"] == "percentage_points"
    assert report["baseline"]["mean_final_accuracy_pp"] == pytest.approx(0.79)
    assert report["comparison"]["mean_accuracy_regression_pp"] == pytest.approx(0.005)


@pytest.mark.parametrize("declared", ["ratio", "ratio_to_percentage_points"])
def test_declared_ratio(declared):
    payload = minimal_payload()
    payload["score_scale"] = declared
    report = evaluate_feasibility(payload)
    assert report["score_scale"] == "ratio_to_percentage_points"
    assert report["baseline"]["mean_final_accuracy_pp"] == pytest.approx(79.0)


def test_declared_percentage_points_allows_values_on_both_sides_of_one():
    payload = build_payload(
        [8, 7, 6],
        [4, 4, 4],
        baseline_final=[0.5, 50, 80],
        candidate_final=[0.5, 50, 80],
        score_scale="percentage_points",
    )
    report = evaluate_feasibility(payload)
    assert report["score_scale"] == "percentage_points"
    assert report["decision"] == "enable_maml"


# --- extras, reasons and interpretation --------------------------------------------------------------


def test_unknown_top_level_keys_are_accepted_and_run_id_is_reported():
    payload = minimal_payload()
    payload["spike_run_id"] = "spike-2024-07-01"
    payload["notes"] = {"operator": "someone", "seed": 7}
    report = evaluate_feasibility(payload)
    assert report["spike_run_id"] == "spike-2024-07-01"
    assert report["decision"] == "enable_maml"
    assert "spike-2024-07-01" in render_interpretation(report)


def test_enable_reasons_cover_every_check_with_numbers():
    reasons = evaluate_feasibility(minimal_payload())["reasons"]
    assert len(reasons) == 5
    text = " ".join(reasons)
    for number in ("3", "7", "8", "2.6667", "1.5", "38.0952%", "25%", "0.5 pp", "+18", "40%", "$0.75"):
        assert number in text, number


def test_check_details_give_observed_and_threshold_per_condition():
    details = evaluate_feasibility(load_fixture("cost_too_high.json"))["check_details"]["cost_ok"]
    assert details["passed"] is False
    by_metric = {c["metric"]: c for c in details["conditions"]}
    assert by_metric["training_overhead_pct"]["observed"] == 100.0
    assert by_metric["training_overhead_pct"]["threshold"] == 50.0
    assert by_metric["training_overhead_pct"]["passed"] is False
    assert by_metric["extra_gpu_cost_usd_per_run"]["passed"] is True


def test_interpretation_for_a_deferral_names_the_failed_check_and_deltas():
    report = evaluate_feasibility(load_fixture("cost_too_high.json"))
    text = render_interpretation(report)
    assert text.startswith("# MAML feasibility: `defer_maml_cost_too_high`")
    assert "not recommended" in text
    assert "`cost_ok`" in text
    assert "| mean steps to target | 7 | 4.3333 | -2.6667 (38.1%) |" in text
    assert "| training minutes (incl. meta-training) | 45 | 90 | +45 (100%) |" in text
    assert "$1.875 per run" in text


def test_interpretation_for_enable_says_recommended():
    text = render_interpretation(evaluate_feasibility(minimal_payload()))
    assert "MAML is recommended now" in text
    assert "Every check passed." in text
    assert "Failed check" not in text


def test_interpretation_lists_other_failing_checks_and_unmatched_projects():
    payload = load_fixture("collect_more_evidence.json")
    payload["thresholds"] = {"max_training_overhead_pct": 10}
    text = render_interpretation(evaluate_feasibility(payload))
    assert "Failed check: `enough_projects`" in text
    assert "Also failing:" in text and "10%" in text
    assert "Only in the baseline run (not compared): project-c." in text
    assert "Only in the candidate run (not compared): project-d." in text
