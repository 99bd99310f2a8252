"""policy_change_schedule: skips with a reason while the policy is unchanged, one run when it changed."""

from __future__ import annotations

import dagster as dg

from maml_evidence.definitions import defs
from maml_evidence.policy import load_policy
from maml_evidence_tests.policy.conftest import PAYLOADS, POLICY_B, Home, oracle
from maml_evidence_tests.samples import QUIET

GATE = dg.AssetCheckKey(dg.AssetKey("decision_report"), "maml_gate")
COST_GUARD = dg.AssetCheckKey(dg.AssetKey("cost_metrics"), "cost_ok")


def tick(home: Home, instance: dg.DagsterInstance):  # noqa: ANN201 - ScheduleExecutionData
    schedule = defs.resolve_schedule_def("policy_change_schedule")
    return schedule.evaluate_tick(dg.build_schedule_context(instance=instance, resources=home.resources))


def latest_check(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> dict[str, object]:
    """partition -> newest check record."""
    newest: dict[str, object] = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=1000):
        if record.partition not in newest or record.id > newest[record.partition].id:  # type: ignore[attr-defined]
            newest[record.partition] = record
    return newest


def test_schedule_is_running_by_default() -> None:
    schedule = defs.resolve_schedule_def("policy_change_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "reevaluate_history"


def test_schedule_skips_then_requests_one_run_then_skips(home: Home, instance: dg.DagsterInstance) -> None:
    old, new = oracle(), oracle(POLICY_B)
    flipped = {run_id for run_id in PAYLOADS if old[run_id]["decision"] != new[run_id]["decision"]}
    v0 = load_policy(home.policy_file).version

    unchanged = tick(home, instance)
    assert unchanged.run_requests == []
    assert unchanged.skip_message and v0 in unchanged.skip_message and "unchanged" in unchanged.skip_message

    # a comment or a default spelled out is not a policy change
    home.write_policy("# the organisation's policy\nmin_projects = 3\n")
    assert tick(home, instance).run_requests == []

    home.write_policy(POLICY_B)
    vb = load_policy(home.policy_file).version
    changed = tick(home, instance)
    assert changed.skip_message is None
    assert len(changed.run_requests) == 1
    request = changed.run_requests[0]
    assert vb in request.run_key
    assert request.job_name in (None, "reevaluate_history")
    assert tick(home, instance).run_requests[0].run_key == request.run_key  # same change, same key: one run

    gate_before = latest_check(instance, GATE)
    cost_before = latest_check(instance, COST_GUARD)
    assert set(gate_before) == set(PAYLOADS)

    job = defs.resolve_job_def("reevaluate_history")
    result = job.execute_in_process(instance=instance, tags=request.tags, run_config=QUIET)
    assert result.success
    materialization = result.asset_materializations_for_node("decision_reevaluation")[0]
    meta = {key: value.value for key, value in materialization.metadata.items()}
    assert meta["policy_version"] == vb
    assert meta["spike_runs_evaluated"] == len(PAYLOADS)
    assert meta["decisions_changed"] == len(flipped)
    assert meta["previous_policy_versions"] == v0
    mix: dict[str, int] = {}
    for report in new.values():
        mix[report["decision"]] = mix.get(report["decision"], 0) + 1
    assert meta["decision_mix"] == mix
    # every Dagster gate check per flipped spike run: the five spec checks, the two optional guards, maml_gate
    assert meta["check_results_rerecorded"] == 8 * len(flipped)
    changes_table = str(meta["changes"])
    assert all(run_id in changes_table for run_id in flipped)
    assert {k: v["decision"] for k, v in home.decisions().items()} == {k: r["decision"] for k, r in new.items()}

    gate_after = latest_check(instance, GATE)
    cost_after = latest_check(instance, COST_GUARD)
    for run_id in PAYLOADS:
        record = gate_after[run_id]
        if run_id in flipped:
            assert record.id > gate_before[run_id].id, run_id  # re-recorded
            evaluation = record.evaluation
            assert evaluation is not None and evaluation.target_materialization_data is not None
            assert evaluation.passed is (new[run_id]["decision"] == "enable_maml"), run_id
            assert evaluation.metadata["decision"].value == new[run_id]["decision"]
            assert evaluation.metadata["policy_version"].value == vb
            assert cost_after[run_id].evaluation.passed is new[run_id]["checks"]["cost_ok"], run_id
            assert cost_after[run_id].id > cost_before[run_id].id
        else:
            assert record.id == gate_before[run_id].id, run_id  # unchanged runs keep their results

    after = tick(home, instance)
    assert after.run_requests == []
    assert after.skip_message and vb in after.skip_message
