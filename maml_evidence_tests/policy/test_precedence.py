"""Precedence and provenance of every threshold key and the GPU price: spec default < policy file < payload."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.headless import ingest
from maml_evidence.policy import load_policy
from maml_evidence_tests.policy.conftest import PAYLOADS, Home, toml_text

# The spec's defaults (AFR-141), written out here rather than read from the implementation.
SPEC_DEFAULTS: dict[str, float | int] = {
    "min_projects": 3,
    "trigger_mean_steps": 4.0,
    "trigger_max_steps": 7.0,
    "min_mean_step_reduction": 1.5,
    "min_relative_step_reduction": 0.25,
    "max_mean_accuracy_regression_pp": 1.0,
    "max_training_overhead_pct": 50.0,
    "max_extra_gpu_cost_usd_per_run": 2.0,
    "gpu_hour_usd": 2.5,
}
THRESHOLD_KEYS = [k for k in SPEC_DEFAULTS if k != "gpu_hour_usd"]
# issue 11's guards and issue 12's break-even inputs: not set in these spike runs
OPTIONAL_KEYS = (
    "max_project_accuracy_regression_pp",
    "require_strong_evidence",
    "minutes_per_adaptation_step",
    "adaptations_per_month",
    "training_runs_per_month",
)
# Distinct from the defaults and from each other, so a value always says which layer it came from.
POLICY_VALUES: dict[str, float | int] = {
    "min_projects": 4,
    "trigger_mean_steps": 3.5,
    "trigger_max_steps": 6.5,
    "min_mean_step_reduction": 1.25,
    "min_relative_step_reduction": 0.3,
    "max_mean_accuracy_regression_pp": 1.75,
    "max_training_overhead_pct": 45.0,
    "max_extra_gpu_cost_usd_per_run": 2.25,
    "gpu_hour_usd": 3.5,
}
PAYLOAD_VALUES: dict[str, float | int] = {
    "min_projects": 2,
    "trigger_mean_steps": 5.0,
    "trigger_max_steps": 8.0,
    "min_mean_step_reduction": 0.5,
    "min_relative_step_reduction": 0.1,
    "max_mean_accuracy_regression_pp": 0.5,
    "max_training_overhead_pct": 80.0,
    "max_extra_gpu_cost_usd_per_run": 9.0,
    "gpu_hour_usd": 1.25,
}
BASE = "2026-10-13-legal-summaries-fast-enough"  # a sample without thresholds or cost_profile


def with_overrides(payload: dict, values: dict[str, float | int], **top: object) -> dict:
    """``payload`` with ``values`` set in its own thresholds / cost_profile."""
    out = copy.deepcopy(payload)
    out.pop("thresholds", None)
    out.pop("cost_profile", None)
    thresholds = {k: v for k, v in values.items() if k != "gpu_hour_usd"}
    if thresholds:
        out["thresholds"] = thresholds
    if "gpu_hour_usd" in values:
        out["cost_profile"] = {"gpu_hour_usd": values["gpu_hour_usd"]}
    out.update(top)
    return out


def provenance(report: dict) -> tuple[dict[str, object], dict[str, str]]:
    """Every key's effective value and source as the report states them (the price lives under cost)."""
    values = {**report["thresholds"], "gpu_hour_usd": report["cost"]["assumptions"]["gpu_hour_usd"]}
    sources = {**report["threshold_sources"], "gpu_hour_usd": report["cost"]["assumptions"]["gpu_hour_usd_source"]}
    return values, sources


def assert_used(report: dict, values: dict[str, object]) -> None:
    """The checks compared against the reported thresholds, and the cost used the reported price."""
    for details in report["check_details"].values():
        for condition in details["conditions"]:
            assert condition["threshold"] == pytest.approx(values[condition["threshold_key"]]), condition
    expected_usd = report["cost"]["extra_training_minutes"] / 60 * values["gpu_hour_usd"]
    assert report["cost"]["extra_gpu_cost_usd_per_run"] == pytest.approx(expected_usd, abs=1e-3)


@pytest.mark.parametrize("key", list(SPEC_DEFAULTS))
def test_each_key_default_then_policy_then_payload(key: str) -> None:
    base = with_overrides(PAYLOADS[BASE], {})

    values, sources = provenance(evaluate_feasibility(base))
    assert (values[key], sources[key]) == (SPEC_DEFAULTS[key], "default")

    report = evaluate_feasibility(base, policy={key: POLICY_VALUES[key]})
    values, sources = provenance(report)
    assert (values[key], sources[key]) == (POLICY_VALUES[key], "policy")
    others = {k: (values[k], sources[k]) for k in SPEC_DEFAULTS if k != key}
    assert others == {k: (SPEC_DEFAULTS[k], "default") for k in others}
    assert_used(report, values)

    report = evaluate_feasibility(with_overrides(base, {key: PAYLOAD_VALUES[key]}), policy={key: POLICY_VALUES[key]})
    values, sources = provenance(report)
    assert (values[key], sources[key]) == (PAYLOAD_VALUES[key], "payload")
    assert_used(report, values)


def test_report_names_the_provenance_of_every_key_and_nothing_else() -> None:
    report = evaluate_feasibility(with_overrides(PAYLOADS[BASE], {}))
    assert set(report["thresholds"]) == set(THRESHOLD_KEYS)
    assert set(report["threshold_sources"]) == set(THRESHOLD_KEYS)
    assert set(report["cost"]["assumptions"]) == {"gpu_hour_usd", "gpu_hour_usd_source"}


def expected_row(values: dict[str, float | int], sources: dict[str, str]) -> dict[str, object]:
    return {**{k: values[k] for k in SPEC_DEFAULTS}, "threshold_sources": sources}


def stored(home: Home, run_id: str) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    """(gate_decisions row, cost_metrics row, report.json) of a spike run."""
    row = home.decisions()[run_id]
    cost = home.rows("SELECT * FROM cost_metrics WHERE spike_run_id = ?", [run_id])[0]
    return row, cost, home.store.read_report(run_id)


def check_stored(home: Home, run_id: str, values: dict[str, float | int], sources: dict[str, str]) -> None:
    row, cost, report = stored(home, run_id)
    assert provenance(report) == (values, sources), run_id
    got = {k: row[k] for k in SPEC_DEFAULTS}
    stored_sources = json.loads(str(row["threshold_sources"]))
    # the optional guards are stored too (off, from the defaults, in these spike runs)
    assert {k: stored_sources.pop(k) for k in OPTIONAL_KEYS} == dict.fromkeys(OPTIONAL_KEYS, "default"), run_id
    assert (row["require_strong_evidence"], row["max_project_accuracy_regression_pp"]) == (False, None), run_id
    assert {**got, "threshold_sources": stored_sources} == expected_row(values, sources), run_id
    assert isinstance(row["min_projects"], int)
    assert (cost["gpu_hour_usd"], cost["gpu_hour_usd_source"]) == (values["gpu_hour_usd"], sources["gpu_hour_usd"])
    assert row["extra_gpu_cost_usd_per_run"] == pytest.approx(
        cost["extra_training_minutes"] / 60 * values["gpu_hour_usd"]
    )


def test_stored_decisions_record_every_value_and_its_source(home: Home, tmp_path: Path) -> None:
    """Through the real pipeline: defaults (template, no policy file), then a policy file, then payloads."""
    default_version = load_policy(home.policy_file).version
    check_stored(home, BASE, dict(SPEC_DEFAULTS), dict.fromkeys(SPEC_DEFAULTS, "default"))

    home.write_policy(toml_text(POLICY_VALUES, "# every key set by the organisation"))
    policy = load_policy(home.policy_file)
    assert policy.version != default_version
    half = {k: PAYLOAD_VALUES[k] for k in list(SPEC_DEFAULTS)[::2]}  # the payload sets every other key
    payloads = {
        "prov-policy": with_overrides(PAYLOADS[BASE], {}, spike_run_id="prov-policy"),
        "prov-payload": with_overrides(PAYLOADS[BASE], PAYLOAD_VALUES, spike_run_id="prov-payload"),
        "prov-mixed": with_overrides(PAYLOADS[BASE], half, spike_run_id="prov-mixed"),
    }
    paths = []
    for run_id, payload in payloads.items():
        paths.append(tmp_path / f"{run_id}.json")
        paths[-1].write_text(json.dumps(payload), encoding="utf-8")
    report = ingest(home.store.ensure(), paths)
    assert all(run.success for run in report.runs), [run.error for run in report.runs]

    check_stored(home, "prov-policy", dict(POLICY_VALUES), dict.fromkeys(SPEC_DEFAULTS, "policy"))
    check_stored(home, "prov-payload", dict(PAYLOAD_VALUES), dict.fromkeys(SPEC_DEFAULTS, "payload"))
    mixed_values = {k: half.get(k, POLICY_VALUES[k]) for k in SPEC_DEFAULTS}
    mixed_sources = {k: "payload" if k in half else "policy" for k in SPEC_DEFAULTS}
    check_stored(home, "prov-mixed", mixed_values, mixed_sources)

    for run_id in payloads:
        row, _cost, report_json = stored(home, run_id)
        assert (row["policy_version"], row["trigger"]) == (policy.version, "ingest")
        assert report_json["provenance"]["policy_version"] == policy.version
        # the stored decision is the core's decision under the same policy
        assert row["decision"] == evaluate_feasibility(payloads[run_id], policy=POLICY_VALUES)["decision"]
    history = home.rows("SELECT spike_run_id, policy_version FROM decision_history WHERE spike_run_id LIKE 'prov-%'")
    assert sorted((r["spike_run_id"], r["policy_version"]) for r in history) == sorted(
        (run_id, policy.version) for run_id in payloads
    )
    policies = {r["policy_version"]: r for r in home.rows("SELECT * FROM threshold_policies")}
    assert set(policies) == {default_version, policy.version}
    assert json.loads(str(policies[policy.version]["effective_policy"])) == POLICY_VALUES
    assert json.loads(str(policies[policy.version]["policy_keys_set"])) == POLICY_VALUES
    assert json.loads(str(policies[default_version]["effective_policy"])) == SPEC_DEFAULTS
    assert json.loads(str(policies[default_version]["policy_keys_set"])) == {}
