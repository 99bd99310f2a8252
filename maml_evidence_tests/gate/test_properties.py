"""Property tests: valid payloads always give a report; bad ones only ever raise the validation error;
decisions do not depend on project order or on how the accuracy scale is written."""

from __future__ import annotations

import copy
import json
import math
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from maml_evidence import PayloadValidationError, evaluate_feasibility
from maml_evidence.gate import (
    DECISIONS,
    SPEC_CHECK_NAMES,
    SPEC_THRESHOLD_KEYS,
    compute_metrics,
    evaluate_payload,
    parse_payload_text,
    validate_payload,
)
from maml_evidence.gate.report import _r
from maml_evidence.gate.values import MAX_NUMBER
from maml_evidence_tests.gate.conftest import minimal_payload, strict_json

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------------

NAMES = [f"project-{c}" for c in "abcdefgh"] + ["Projekt Ü", "项目", "x" * 40]
finite = st.floats(min_value=0, max_value=MAX_NUMBER)  # the gate's bound for every count, minute and price
steps = st.one_of(st.integers(0, 10**6), finite, st.floats(0, 50, allow_nan=False))
minutes = st.one_of(st.floats(0, 10_000, allow_nan=False), finite, st.integers(0, 10**9))
positive_minutes = minutes.filter(lambda m: m > 0)


@st.composite
def accuracy_values(draw, scale: str) -> st.SearchStrategy[float]:
    if scale in ("ratio", "inferred_ratio"):
        return draw(st.floats(0, 1))
    if scale == "inferred_pp":
        return draw(st.floats(1, 100, exclude_min=True))
    return draw(st.floats(0, 100))  # declared percentage points: anything in [0, 100]


@st.composite
def arms(draw, scale: str, names: list[str]) -> list[dict]:
    out = []
    for name in names:
        entry = {"project": name, "steps_to_target": draw(steps), "target_accuracy": draw(accuracy_values(scale))}
        if draw(st.booleans()):
            entry["final_accuracy"] = draw(accuracy_values(scale))
        out.append(entry)
    return out


threshold_values = {
    "min_projects": st.integers(0, 12),
    "min_relative_step_reduction": st.floats(0, 1),
}


@st.composite
def valid_payloads(draw, scales=("inferred_ratio", "inferred_pp", "ratio", "percentage_points")) -> dict:
    scale = draw(st.sampled_from(scales))
    base_names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=8))
    cand_names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=8))
    baseline: dict = {"per_project_adaptation": draw(arms(scale, base_names)), "train_minutes": draw(positive_minutes)}
    candidate: dict = {"per_project_adaptation": draw(arms(scale, cand_names)), "train_minutes": draw(minutes)}
    if draw(st.booleans()):
        candidate["meta_train_minutes"] = draw(minutes)
    if draw(st.booleans()):
        baseline["meta_train_minutes"] = draw(minutes)
    if draw(st.booleans()):
        baseline["label"] = draw(st.text(min_size=1).filter(str.strip))
    payload: dict = {"baseline": baseline, "candidate": candidate}
    if scale in ("ratio", "percentage_points"):
        payload["score_scale"] = scale
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(SPEC_THRESHOLD_KEYS), unique=True))
        payload["thresholds"] = {k: draw(threshold_values.get(k, st.one_of(finite, st.floats(0, 100)))) for k in keys}
    if draw(st.booleans()):
        payload["cost_profile"] = {"gpu_hour_usd": draw(st.one_of(finite, st.floats(0, 10)))}
    if draw(st.booleans()):
        payload["spike_run_id"] = draw(st.text())
    return payload


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["ratio", "percentage_points", "project-a", "", "min_projects", "gpu_hour_usd"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(
                st.text(max_size=10),
                st.sampled_from(
                    [
                        "baseline",
                        "candidate",
                        "per_project_adaptation",
                        "project",
                        "steps_to_target",
                        "target_accuracy",
                        "final_accuracy",
                        "train_minutes",
                        "meta_train_minutes",
                        "thresholds",
                        "cost_profile",
                        "score_scale",
                        "label",
                        *SPEC_THRESHOLD_KEYS,
                    ]
                ),
            ),
            children,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


def evaluate_or_validation_error(value: object) -> dict | None:
    """The report, or None for a PayloadValidationError; any other exception fails the test."""
    try:
        report = evaluate_feasibility(value)
    except PayloadValidationError as exc:
        assert exc.problems, "a validation error must carry at least one problem"
        assert all(isinstance(p.path, str) and p.message for p in exc.problems)
        return None
    assert report["decision"] in DECISIONS
    return report


def locations(node: object, out: list | None = None) -> list[tuple[object, object]]:
    """Every (container, key) slot in a JSON document."""
    out = [] if out is None else out
    if isinstance(node, dict):
        for key, child in node.items():
            out.append((node, key))
            locations(child, out)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            out.append((node, index))
            locations(child, out)
    return out


# --- properties ----------------------------------------------------------------------------------


@SETTINGS
@given(valid_payloads())
def test_valid_payloads_never_raise_and_give_a_strict_json_report(payload):
    before = copy.deepcopy(payload)
    report = evaluate_feasibility(payload)
    assert payload == before
    assert report["decision"] in DECISIONS
    assert set(report["checks"]) == set(SPEC_CHECK_NAMES)
    first_failing = next((name for name in SPEC_CHECK_NAMES if not report["checks"][name]), None)
    assert report["failed_check"] == first_failing
    assert report["maml_recommended"] is (first_failing is None)
    json.loads(strict_json(report))  # no NaN or Infinity, whatever the numbers
    alignment = report["project_alignment"]
    assert alignment["common_project_count"] == len(alignment["common_projects"])
    assert set(alignment["common_projects"]).isdisjoint(alignment["baseline_only_projects"])
    assert len(alignment["common_projects"]) + len(alignment["baseline_only_projects"]) == len(
        payload["baseline"]["per_project_adaptation"]
    )


@SETTINGS
@given(valid_payloads())
def test_valid_payloads_round_trip_through_json_text(payload):
    text = json.dumps(payload, ensure_ascii=False)
    assert evaluate_feasibility(parse_payload_text(text.encode("utf-8"))) == evaluate_feasibility(payload)


@SETTINGS
@given(json_values)
def test_arbitrary_json_values_raise_only_the_validation_error(value):
    evaluate_or_validation_error(value)


@SETTINGS
@given(json_values.map(lambda v: {"baseline": v, "candidate": v}))
def test_arbitrary_arms_raise_only_the_validation_error(value):
    evaluate_or_validation_error(value)


@SETTINGS
@given(valid_payloads(), st.data())
def test_mutated_valid_payloads_raise_only_the_validation_error(payload, data):
    slots = locations(payload)
    container, key = data.draw(st.sampled_from(slots))
    action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    if action == "replace":
        container[key] = data.draw(json_values)
    elif action == "delete":
        del container[key]
    elif isinstance(container, dict):
        container[data.draw(st.text(max_size=12))] = data.draw(json_values)
    else:
        container.insert(key, data.draw(json_values))
    evaluate_or_validation_error(payload)


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_the_validation_error(data):
    try:
        value = parse_payload_text(data)
    except PayloadValidationError:
        return
    evaluate_or_validation_error(value)


@SETTINGS
@given(st.data())
def test_corrupted_payload_text_raises_only_the_validation_error(data):
    text = json.dumps(minimal_payload()).encode("utf-8")
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 20)))
    text = text[:start] + data.draw(st.binary(max_size=8)) + text[end:]
    try:
        value = parse_payload_text(text)
    except PayloadValidationError:
        return
    evaluate_or_validation_error(value)


def numeric_locations(payload: object) -> list[tuple[object, object]]:
    """Every (container, key) of the payload holding a JSON number (the spike run id excluded)."""
    return [
        (container, key)
        for container, key in locations(payload)
        if isinstance(container[key], (int, float)) and not isinstance(container[key], bool) and key != "spike_run_id"
    ]


@SETTINGS
@given(valid_payloads(), st.data())
def test_a_negative_number_anywhere_numeric_is_rejected_with_its_path(payload, data):
    numeric = numeric_locations(payload)
    assume(numeric)
    container, key = data.draw(st.sampled_from(numeric))
    container[key] = -data.draw(st.floats(min_value=1e-9, max_value=1e9))
    try:
        evaluate_feasibility(payload)
    except PayloadValidationError as exc:
        suffix = f"[{key}]" if isinstance(key, int) else f".{key}"
        assert any(p.path.endswith(suffix) for p in exc.problems), exc.problems
    else:
        raise AssertionError(f"negative value at {key!r} was accepted")


def _shuffled(data, items: list) -> list:
    return data.draw(st.permutations(items))


@SETTINGS
@given(valid_payloads(), st.data())
def test_decision_is_invariant_to_project_order(payload, data):
    report = evaluate_feasibility(payload)
    shuffled = copy.deepcopy(payload)
    for arm in data.draw(st.sampled_from([("baseline",), ("candidate",), ("baseline", "candidate")])):
        shuffled[arm]["per_project_adaptation"] = _shuffled(data, shuffled[arm]["per_project_adaptation"])
    again = evaluate_feasibility(shuffled)
    assert again["decision"] == report["decision"]
    assert again["checks"] == report["checks"]
    assert again["reasons"] == report["reasons"]
    for section in ("baseline", "candidate", "cost"):
        assert again[section] == report[section]
    for key in ("mean_step_reduction", "relative_step_reduction", "mean_accuracy_regression_pp"):
        assert again["comparison"][key] == report["comparison"][key]
    assert sorted(again["project_alignment"]["common_projects"]) == sorted(
        report["project_alignment"]["common_projects"]
    )


@SETTINGS
@given(valid_payloads(scales=("inferred_ratio", "ratio")))
def test_ratio_times_100_with_declared_percentage_points_gives_the_same_decision(payload):
    report = evaluate_feasibility(payload)
    assert report["score_scale"] == "ratio_to_percentage_points" or not any(
        payload[arm]["per_project_adaptation"] for arm in ("baseline", "candidate")
    )
    scaled = copy.deepcopy(payload)
    scaled["score_scale"] = "percentage_points"
    for arm in ("baseline", "candidate"):
        for entry in scaled[arm]["per_project_adaptation"]:
            for key in ("target_accuracy", "final_accuracy"):
                if key in entry:
                    entry[key] = entry[key] * 100
    again = evaluate_feasibility(scaled)
    assert again["score_scale"] == "percentage_points"
    assert again["decision"] == report["decision"]
    assert again["checks"] == report["checks"]
    assert again["comparison"] == report["comparison"]
    assert again["baseline"]["mean_final_accuracy_pp"] == report["baseline"]["mean_final_accuracy_pp"]


@SETTINGS
@given(st.floats(0.01, 1e6), st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 1e4))
def test_cost_model_matches_the_spec_formulas(baseline_train, candidate_train, meta, price):
    payload = minimal_payload()
    payload["baseline"]["train_minutes"] = baseline_train
    payload["candidate"]["train_minutes"] = candidate_train
    payload["candidate"]["meta_train_minutes"] = meta
    payload["cost_profile"] = {"gpu_hour_usd": price}
    cost = evaluate_feasibility(payload)["cost"]
    extra = max(0.0, (candidate_train + meta) - baseline_train)
    assert math.isclose(cost["extra_training_minutes"], extra, rel_tol=1e-9, abs_tol=1e-4)
    assert math.isclose(cost["training_overhead_pct"], extra / baseline_train * 100, rel_tol=1e-9, abs_tol=1e-4)
    assert math.isclose(cost["extra_gpu_cost_usd_per_run"], extra / 60 * price, rel_tol=1e-9, abs_tol=1e-4)


@SETTINGS
@given(valid_payloads(), st.data())
def test_a_number_above_the_bound_anywhere_numeric_is_rejected_with_its_path(payload, data):
    numeric = numeric_locations(payload)
    assume(numeric)
    container, key = data.draw(st.sampled_from(numeric))
    container[key] = data.draw(
        st.one_of(st.floats(min_value=MAX_NUMBER, exclude_min=True), st.integers(min_value=int(MAX_NUMBER) + 1))
    )
    try:
        evaluate_feasibility(payload)
    except PayloadValidationError as exc:
        suffix = f"[{key}]" if isinstance(key, int) else f".{key}"
        assert any(p.path.endswith(suffix) for p in exc.problems), exc.problems
    else:
        raise AssertionError(f"{container[key]!r} at {key!r} was accepted")


@SETTINGS
@given(valid_payloads())
def test_every_metric_of_a_valid_payload_is_finite(payload):
    """What validation accepts can be stored: no metric, observed value or threshold overflows."""
    metrics, verdict, _report = evaluate_payload(validate_payload(payload))
    records = [metrics.inputs, metrics.baseline, metrics.candidate, *metrics.per_project, verdict]
    records += [c for check in verdict.checks for c in check.conditions]
    numbers = [
        v for r in records for v in r.as_dict().values() if isinstance(v, float | int) and not isinstance(v, bool)
    ]
    assert all(math.isfinite(value) for value in numbers), numbers


@pytest.mark.parametrize(
    "kind", ["baseline_tiny", "minutes_at_bound", "steps_at_bound", "candidate_slower_than_tiny_baseline"]
)
def test_extreme_but_valid_numbers_give_finite_metrics_and_strict_json(kind):
    payload = minimal_payload()
    if kind == "baseline_tiny":
        payload["baseline"]["train_minutes"] = 5e-324  # the overhead percentage saturates at the largest float
    elif kind == "minutes_at_bound":
        payload["candidate"]["train_minutes"] = payload["candidate"]["meta_train_minutes"] = MAX_NUMBER
        payload["cost_profile"] = {"gpu_hour_usd": MAX_NUMBER}
    elif kind == "steps_at_bound":
        for entry in payload["baseline"]["per_project_adaptation"]:
            entry["steps_to_target"] = MAX_NUMBER
    else:
        for entry in payload["baseline"]["per_project_adaptation"]:
            entry["steps_to_target"] = 5e-324  # the relative reduction saturates at minus the largest float
        payload["thresholds"] = {"trigger_mean_steps": 0, "trigger_max_steps": 0}
    report = evaluate_feasibility(payload)
    json.loads(strict_json(report))
    assert report["decision"] in DECISIONS
    inputs = compute_metrics(validate_payload(payload)).inputs
    assert all(math.isfinite(value) for value in inputs if isinstance(value, float | int)), inputs
    if kind == "baseline_tiny":
        assert (report["decision"], inputs.training_overhead_pct) == ("defer_maml_cost_too_high", sys.float_info.max)
    if kind == "candidate_slower_than_tiny_baseline":
        assert inputs.relative_step_reduction == -sys.float_info.max
        assert report["failed_check"] == "effectiveness_ok"


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_report_rounding_is_exactly_round_to_four_decimals(value):
    assert repr(_r(value)) == repr(round(value, 4))
