"""``effective_settings``: the one rule for the thresholds and GPU price a spike run is judged under."""

from __future__ import annotations

import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.gate import (
    DEFAULT_GPU_HOUR_USD,
    SPEC_THRESHOLD_KEYS,
    THRESHOLD_KEYS,
    Settings,
    Thresholds,
    effective_settings,
    evaluate_payload,
    validate_payload,
)
from maml_evidence_tests.gate.conftest import minimal_payload

SETTING_KEYS = (
    *THRESHOLD_KEYS,
    "gpu_hour_usd",
    "minutes_per_adaptation_step",
    "adaptations_per_month",
    "training_runs_per_month",
)


def test_defaults_when_nothing_overrides():
    settings = effective_settings(None, {}, {})
    assert isinstance(settings, Settings)
    assert settings.thresholds == Thresholds()
    assert settings.gpu_hour_usd == DEFAULT_GPU_HOUR_USD
    assert settings.values == {
        **Thresholds().as_dict(),
        "gpu_hour_usd": DEFAULT_GPU_HOUR_USD,
        # the break-even inputs (issue 12): unknown unless given, the priced training once a month
        "minutes_per_adaptation_step": None,
        "adaptations_per_month": None,
        "training_runs_per_month": 1,
    }
    assert settings.sources == dict.fromkeys(SETTING_KEYS, "default")
    assert list(settings.values) == list(settings.sources) == list(SETTING_KEYS)


@pytest.mark.parametrize("key", SETTING_KEYS)
def test_each_key_default_then_policy_then_payload(key: str):
    layer = "thresholds" if key in THRESHOLD_KEYS else "cost"
    policy = {key: 7}
    payload = {key: 9}
    by_policy = effective_settings(policy, {}, {})
    by_payload = effective_settings(
        policy, payload if layer == "thresholds" else {}, payload if layer == "cost" else {}
    )
    assert (by_policy.values[key], by_policy.sources[key]) == (7, "policy")
    assert (by_payload.values[key], by_payload.sources[key]) == (9, "payload")
    others = [k for k in SETTING_KEYS if k != key]
    assert all(by_payload.sources[k] == "default" for k in others)
    if key == "gpu_hour_usd":
        assert (by_policy.gpu_hour_usd, by_payload.gpu_hour_usd) == (7.0, 9.0)
        assert isinstance(by_payload.gpu_hour_usd, float)
    elif layer == "thresholds":
        assert (getattr(by_policy.thresholds, key), getattr(by_payload.thresholds, key)) == (7, 9)


def test_keys_that_are_not_settings_are_ignored_and_inputs_not_changed():
    policy = {"min_projects": 4, "not_a_setting": 1.0}
    settings = effective_settings(policy, {}, {})
    assert "not_a_setting" not in settings.values and "not_a_setting" not in settings.sources
    assert policy == {"min_projects": 4, "not_a_setting": 1.0}


def test_the_report_shows_exactly_the_effective_settings():
    payload = minimal_payload()
    payload["thresholds"] = {"max_training_overhead_pct": 45}
    policy = {"min_projects": 2, "gpu_hour_usd": 3.0}
    report = evaluate_feasibility(payload, policy)
    parsed = validate_payload(payload)
    settings = effective_settings(policy, parsed.threshold_overrides, parsed.cost_overrides)
    assert report["thresholds"] == {key: settings.values[key] for key in SPEC_THRESHOLD_KEYS}
    assert report["threshold_sources"] == {key: settings.sources[key] for key in SPEC_THRESHOLD_KEYS}
    assert report["cost"]["assumptions"] == {"gpu_hour_usd": 3.0, "gpu_hour_usd_source": "policy"}
    _metrics, verdict, _report = evaluate_payload(parsed, policy)
    assert verdict.gpu_hour_usd == settings.gpu_hour_usd
    assert [c.threshold for check in verdict.checks for c in check.conditions] == [
        float(getattr(settings.thresholds, c.threshold_key)) for check in verdict.checks for c in check.conditions
    ]
