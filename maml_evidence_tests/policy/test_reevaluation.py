"""A policy change re-judges history: exactly the decisions the gate core predicts flip, and the history says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.gate import (
    CHECK_NAMES,
    SPEC_CHECK_NAMES,
    SPEC_THRESHOLD_KEYS,
    THRESHOLD_KEYS,
    GateInputs,
    flip_cause,
    judge,
)
from maml_evidence.policy import load_policy
from maml_evidence.store import EvidenceStore
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence_tests.policy.conftest import PAYLOADS, POLICY_B, Home, oracle, toml_text


def flips(old: dict[str, dict], new: dict[str, dict]) -> dict[str, tuple[str, str, str | None]]:
    """run -> (from, to, cause) where the oracle's decision differs."""
    return {
        run_id: (
            old[run_id]["decision"],
            new[run_id]["decision"],
            flip_cause(old[run_id]["failed_check"], new[run_id]["failed_check"]),
        )
        for run_id in old
        if old[run_id]["decision"] != new[run_id]["decision"]
    }


def assert_current_matches(home: Home, reports: dict[str, dict], version: str, trigger: str) -> None:
    """gate_decisions and gate_checks hold, for every spike run, exactly the core's judgement."""
    decisions = home.decisions()
    assert set(decisions) == set(reports)
    for run_id, report in reports.items():
        row = decisions[run_id]
        assert (row["decision"], row["failed_check"]) == (report["decision"], report["failed_check"]), run_id
        assert row["maml_recommended"] is (report["decision"] == "enable_maml")
        assert {name: row[name] for name in SPEC_CHECK_NAMES} == report["checks"], run_id
        assert {key: row[key] for key in SPEC_THRESHOLD_KEYS} == report["thresholds"], run_id
        assert row["gpu_hour_usd"] == report["cost"]["assumptions"]["gpu_hour_usd"], run_id
        assert row["extra_gpu_cost_usd_per_run"] == pytest.approx(
            report["cost"]["extra_gpu_cost_usd_per_run"], abs=1e-4
        )
        sources = {**report["threshold_sources"], "gpu_hour_usd": report["cost"]["assumptions"]["gpu_hour_usd_source"]}
        stored_sources = json.loads(str(row["threshold_sources"]))  # every key, the optional guards too
        assert {key: stored_sources[key] for key in sources} == sources, run_id
        assert (row["policy_version"], row["trigger"]) == (version, trigger), run_id
    checks = home.rows("SELECT spike_run_id, check_name, passed, reason FROM gate_checks")
    assert len(checks) == len(reports) * len(SPEC_CHECK_NAMES)
    for check in checks:
        details = reports[check["spike_run_id"]]["check_details"][check["check_name"]]
        assert (check["passed"], check["reason"]) == (details["passed"], details["reason"]), check


def assert_changes(home: Home, expected: dict, old: dict, new: dict, from_version: str, to_version: str) -> None:
    rows = home.rows("SELECT * FROM decision_changes WHERE to_policy_version = ?", [to_version])
    assert {r["spike_run_id"]: (r["from_decision"], r["to_decision"], r["cause_check"]) for r in rows} == expected
    assert len(rows) == len(expected)  # one row per flipped run, no duplicates
    for r in rows:
        run_id, cause = r["spike_run_id"], r["cause_check"]
        assert r["from_policy_version"] == from_version
        # independently of flip_cause: the cause is a check whose outcome changed, and its sentence is the new one
        assert old[run_id]["checks"][cause] != new[run_id]["checks"][cause], r
        assert r["cause_detail"] == new[run_id]["check_details"][cause]["reason"]
    assert len({r["changed_at"] for r in rows}) <= 1


def history(home: Home) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in home.rows("SELECT * FROM decision_history ORDER BY evaluated_at"):
        found.setdefault(str(row["spike_run_id"]), []).append(row)
    return found


def test_policy_change_flips_exactly_the_expected_decisions(home: Home) -> None:
    old, new = oracle(), oracle(POLICY_B)
    expected = flips(old, new)
    # the scenario is worth testing: flips both ways, three different causes, most runs unchanged
    assert len(expected) == 6 and 0 < len(expected) < len(PAYLOADS)
    assert {cause for _f, _t, cause in expected.values()} == {"enough_projects", "accuracy_ok", "cost_ok"}
    assert any(to == "enable_maml" for _f, to, _c in expected.values())
    # a run whose payload pins the changed keys must not move, though the policy alone would move it
    unpinned = {k: v for k, v in PAYLOADS["pinned-support-bots"].items() if k not in ("thresholds", "cost_profile")}
    assert evaluate_feasibility(unpinned, policy=POLICY_B)["decision"] != old["pinned-support-bots"]["decision"]
    assert "pinned-support-bots" not in expected

    v0 = load_policy(home.policy_file).version
    history_before = history(home)
    home.write_policy(POLICY_B)
    vb = load_policy(home.policy_file).version
    assert vb != v0

    result = reevaluate(home.store)
    assert result.skipped_reason is None
    assert result.evaluated == len(PAYLOADS)
    assert result.previous_versions == [v0]
    assert {c.spike_run_id: (c.from_decision, c.to_decision, c.cause_check) for c in result.changes} == expected
    mix: dict[str, int] = {}
    for report in new.values():
        mix[report["decision"]] = mix.get(report["decision"], 0) + 1
    assert result.decision_mix == mix

    assert_current_matches(home, new, vb, "re-evaluation")
    assert_changes(home, expected, old, new, v0, vb)

    after = history(home)
    assert set(after) == set(PAYLOADS)
    for run_id, rows in after.items():
        assert rows[:-1] == history_before[run_id]  # nothing earlier rewritten
        last = rows[-1]
        assert len(rows) == len(history_before[run_id]) + 1
        assert (last["trigger"], last["policy_version"], last["revision"]) == ("re-evaluation", vb, 1)
        assert (last["decision"], last["failed_check"]) == (new[run_id]["decision"], new[run_id]["failed_check"])
        assert {name: last[name] for name in SPEC_CHECK_NAMES} == new[run_id]["checks"]

    policies = {r["policy_version"]: r for r in home.rows("SELECT * FROM threshold_policies")}
    assert set(policies) == {v0, vb}
    assert json.loads(str(policies[vb]["policy_keys_set"])) == POLICY_B
    assert policies[vb]["source"] == str(home.policy_file)

    for run_id in PAYLOADS:
        report = home.store.read_report(run_id)
        assert report["decision"] == new[run_id]["decision"], run_id  # no report shows a stale decision
        if run_id in expected:
            assert report["provenance"]["policy_version"] == vb
            assert report["thresholds"] == new[run_id]["thresholds"]
            assert report["threshold_sources"] == new[run_id]["threshold_sources"]
            interpretation = (home.evidence / "reports" / run_id / "interpretation.md").read_text(encoding="utf-8")
            assert f"`{new[run_id]['decision']}`" in interpretation.splitlines()[0]

    # the same policy again: nothing to do, nothing written
    counts = home.counts()
    again = reevaluate(home.store)
    assert again.skipped_reason and vb in again.skipped_reason
    assert (again.evaluated, again.changes) == (0, [])
    assert home.counts() == counts

    # forced: every run judged again (history grows), but nothing flips
    forced = reevaluate(home.store, force=True)
    assert (forced.evaluated, forced.changes) == (len(PAYLOADS), [])
    assert home.counts()["decision_history"] == counts["decision_history"] + len(PAYLOADS)
    assert home.counts()["decision_changes"] == counts["decision_changes"]
    assert_current_matches(home, new, vb, "re-evaluation")


def test_reverting_the_policy_flips_back_between_consecutive_versions(home: Home) -> None:
    old, new = oracle(), oracle(POLICY_B)
    v0 = load_policy(home.policy_file).version
    home.write_policy(POLICY_B)
    vb = load_policy(home.policy_file).version
    reevaluate(home.store)

    home.policy_file.unlink()  # back to the spec's defaults: the first version again
    result = reevaluate(home.store)
    back = flips(new, old)
    assert {c.spike_run_id: (c.from_decision, c.to_decision, c.cause_check) for c in result.changes} == back
    assert set(back) == set(flips(old, new))
    assert_current_matches(home, old, v0, "re-evaluation")
    assert_changes(home, back, new, old, vb, v0)
    assert home.counts()["decision_changes"] == 2 * len(back)
    assert sorted(r["policy_version"] for r in home.rows("SELECT policy_version FROM threshold_policies")) == sorted(
        [v0, vb]
    )
    for run_id, rows in history(home).items():
        assert [(r["trigger"], r["policy_version"]) for r in rows] == [
            ("ingest", v0),
            ("re-evaluation", vb),
            ("re-evaluation", v0),
        ], run_id


def test_reevaluate_command(home: Home) -> None:
    old, new = oracle(), oracle(POLICY_B)
    expected = flips(old, new)
    v0 = load_policy(home.policy_file).version
    home.write_policy(POLICY_B)
    vb = load_policy(home.policy_file).version

    result = home.cli("reevaluate")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"policy {vb} ")
    assert f"re-evaluated {len(PAYLOADS)} spike runs" in result.stdout
    assert f"{len(expected)} decisions changed" in result.stdout
    for run_id, (before, after, cause) in expected.items():
        assert f"  {run_id}: {before} -> {after} (cause: {cause})" in lines
    assert_current_matches(home, new, vb, "re-evaluation")
    assert_changes(home, expected, old, new, v0, vb)

    again = home.cli("reevaluate")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert home.counts()["decision_history"] == 2 * len(PAYLOADS)

    instance = home.instance()
    try:
        runs = [r for r in instance.get_runs() if r.job_name == "reevaluate_history"]
        assert len(runs) == 2 and all(r.is_success for r in runs)
    finally:
        instance.dispose()


def test_cost_metrics_follow_a_new_gpu_price(home: Home) -> None:
    """cost_metrics is documented as "MAML's extra cost at the price in force"."""
    home.write_policy({"gpu_hour_usd": 6.0})
    reevaluate(home.store)
    rows = home.rows(
        "SELECT d.spike_run_id, d.gpu_hour_usd AS decided, c.gpu_hour_usd AS costed, c.gpu_hour_usd_source AS source, "
        "d.extra_gpu_cost_usd_per_run AS decided_usd, c.extra_gpu_cost_usd_per_run AS costed_usd "
        "FROM gate_decisions d JOIN cost_metrics c USING (spike_run_id)"
    )
    sample = next(r for r in rows if r["spike_run_id"] == "2026-10-13-legal-summaries-fast-enough")
    assert sample["decided"] == 6.0
    assert [(r["spike_run_id"], r["costed"], r["source"]) for r in rows if r["costed"] != r["decided"]] == []


def test_an_unreadable_payload_does_not_undo_a_reevaluation(home: Home) -> None:
    """The decisions are recorded; a flipped run whose stored payload is gone keeps its old report, named."""
    expected = flips(oracle(), oracle(POLICY_B))
    lost = sorted(expected)[0]
    for path in (home.store.home.payloads / lost).glob("*.json"):
        if path.name != "current.json":
            path.unlink()
    home.write_policy(POLICY_B)
    result = reevaluate(home.store)
    assert {c.spike_run_id for c in result.changes} == set(expected)
    assert len(result.report_errors) == 1 and result.report_errors[0].startswith(f"{lost}:")
    assert home.decisions()[lost]["decision"] == expected[lost][1]
    others = [run_id for run_id in expected if run_id != lost]
    for run_id in others:
        report = json.loads((home.store.home.reports / run_id / "report.json").read_text())
        assert report["decision"] == expected[run_id][1]


@pytest.mark.parametrize(
    "policy",
    [
        POLICY_B,
        {"min_mean_step_reduction": 3.0, "trigger_mean_steps": 6.0, "max_extra_gpu_cost_usd_per_run": 0.5},
        # the optional guards: strong evidence required, a worst-project limit, a tighter accuracy limit
        {
            "require_strong_evidence": True,
            "max_project_accuracy_regression_pp": 0.5,
            "max_mean_accuracy_regression_pp": 3,
        },
        {"require_strong_evidence": True, "max_mean_accuracy_regression_pp": 0.25, "trigger_mean_steps": 3.0},
    ],
    ids=["policy-b", "spec-keys", "guards", "guards-tight-accuracy"],
)
def test_column_wise_judging_matches_the_scalar_gate_on_every_run_check_and_sentence(
    tmp_path: Path, policy: dict[str, float]
) -> None:
    """The differential test of the column-wise path: 1,500 generated spike runs, every cell against ``judge``.

    The runs are seeded with their statistics, so the optional checks judge measured figures; the evidence rows
    the policy makes stale are measured again and their grade is the scalar gate's.
    """
    from maml_evidence.gate.decision import evidence_check
    from maml_evidence.gate.thresholds import effective_settings
    from maml_evidence.strength import SUGGESTIVE_CHECKS
    from maml_evidence_tests.benchmarks.seed import seed_store

    store = EvidenceStore(tmp_path / "evidence").ensure()
    seed_store(store, 1_500, seed=29, evidence=True)
    (store.home.policy_file).write_text(toml_text(policy), encoding="utf-8")
    result = reevaluate(store, refresh_reports=False)
    assert result.evaluated == 1_500 and result.changes

    connection = store.connect()
    try:
        inputs_sql = (
            "SELECT r.spike_run_id, r.payload_thresholds, r.payload_cost_profile, a.common_project_count, "
            "a.baseline_mean_steps, a.baseline_max_steps, a.mean_step_reduction, a.relative_step_reduction, "
            "acc.mean_accuracy_regression_pp, c.extra_training_minutes, c.training_overhead_pct, "
            "acc.worst_project_accuracy_regression_pp, acc.worst_accuracy_project, a.candidate_unreached_projects, "
            "e.step_reduction_p_value, e.upper95_regression_pp "
            "FROM spike_runs r JOIN adaptation_summary a USING (spike_run_id) "
            "JOIN accuracy_summary acc USING (spike_run_id) JOIN cost_metrics c USING (spike_run_id) "
            "JOIN evidence_strength e USING (spike_run_id)"
        )
        grades = dict(connection.execute("SELECT spike_run_id, grade FROM evidence_strength").fetchall())
        stored = {row[0]: row[1:] for row in connection.execute(inputs_sql).fetchall()}
        cursor = connection.execute("SELECT * FROM gate_decisions")
        names = [d[0] for d in cursor.description]
        decisions = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        cursor = connection.execute("SELECT * FROM gate_checks")
        names = [d[0] for d in cursor.description]
        checks = {(row[0], row[1]): dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        costs = dict(connection.execute("SELECT spike_run_id, gpu_hour_usd FROM cost_metrics").fetchall())
    finally:
        connection.close()
    assert len(decisions) == len(stored) == 1_500
    checked: dict[str, set[str]] = {}
    for run, name in checks:
        checked.setdefault(run, set()).add(name)
    outcomes: dict[str | None, int] = {}
    for run_id, (thresholds, cost, *values) in stored.items():
        settings = effective_settings(policy, json.loads(thresholds), json.loads(cost))
        inputs = GateInputs(*values)
        verdict = judge(inputs, settings.thresholds, settings.gpu_hour_usd)
        row = decisions[run_id]
        assert (row["decision"], row["failed_check"]) == (verdict.decision, verdict.failed_check), run_id
        flags = verdict.flags()
        assert {name: row[name] for name in CHECK_NAMES} == {name: flags.get(name) for name in CHECK_NAMES}, run_id
        # the grade: strong is the evidence_strength check, suggestive the point estimates of SUGGESTIVE_CHECKS
        strong = evidence_check(inputs, settings.thresholds).passed
        suggestive = all(flags[name] for name in SUGGESTIVE_CHECKS)
        assert grades[run_id] == ("strong" if strong else "suggestive" if suggestive else "insufficient"), run_id
        outcomes[verdict.failed_check] = outcomes.get(verdict.failed_check, 0) + 1
        assert row["extra_gpu_cost_usd_per_run"] == verdict.extra_gpu_cost_usd_per_run, run_id
        assert row["gpu_hour_usd"] == settings.gpu_hour_usd == costs[run_id], run_id
        assert {key: row[key] for key in THRESHOLD_KEYS} == settings.thresholds.as_dict(), run_id
        assert checked[run_id] == set(flags), run_id  # the optional checks have rows only where they ran
        for check in verdict.checks:
            found, decisive = checks[(run_id, check.name)], check.decisive
            assert (found["passed"], found["reason"]) == (check.passed, check.reason), (run_id, check.name)
            assert (found["metric"], found["observed"], found["threshold"], found["margin"]) == (
                decisive.metric, decisive.observed, decisive.threshold, decisive.margin
            ), (run_id, check.name)  # fmt: skip
    # the runs cover what the policy switches on: strong evidence both missing and shown, the worst-project guard
    if policy.get("require_strong_evidence"):
        assert outcomes.get("evidence_strength", 0) > 0 and outcomes.get(None, 0) > 0, outcomes
    if "max_project_accuracy_regression_pp" in policy:
        assert outcomes.get("project_accuracy_ok", 0) > 0, outcomes


def test_every_flip_names_its_cause_with_the_scalar_gate_sentence(tmp_path: Path) -> None:
    """The flips found column-wise, against the scalar gate: each one's cause is ``flip_cause`` of the two verdicts
    and its detail the cause check's sentence under the new policy, or, where that check no longer runs for the
    spike run, why not; also while it still runs for other spike runs (whose payloads switch it on themselves)."""
    from maml_evidence.gate import validate_payload
    from maml_evidence.strength import evaluate_with_evidence
    from maml_evidence_tests.benchmarks.seed import seed_store
    from maml_evidence_tests.generator import generate_payloads

    payloads = list(generate_payloads(600, seed=31))
    for payload in payloads[::4]:  # the evidence guard switched on by the payload: it runs under any policy
        payload["thresholds"] = {**payload.get("thresholds", {}), "require_strong_evidence": True}  # type: ignore[dict-item]
    before, after = {"require_strong_evidence": True}, {"max_training_overhead_pct": 200.0}
    store = EvidenceStore(tmp_path / "evidence").ensure()
    store.home.policy_file.write_text(toml_text(before), encoding="utf-8")
    seed_store(store, 0, evidence=True, payloads=payloads)
    store.home.policy_file.write_text(toml_text(after), encoding="utf-8")
    result = reevaluate(store, refresh_reports=False)

    expected = {}
    for payload in payloads:
        valid = validate_payload(payload)
        old, new = evaluate_with_evidence(valid, before)[1], evaluate_with_evidence(valid, after)[1]
        if old.decision != new.decision:
            cause = flip_cause(old.failed_check, new.failed_check)
            sentences = {check.name: check.reason for check in new.checks}
            detail = sentences.get(
                str(cause), f"{cause} does not run under this policy (require_strong_evidence is not set)."
            )
            expected[str(payload["spike_run_id"])] = (old.decision, new.decision, cause, detail)
    found = {c.spike_run_id: (c.from_decision, c.to_decision, c.cause_check, c.cause_detail) for c in result.changes}
    assert found == expected
    # the scenario is worth testing: flips for both kinds of detail, the guard still running for pinned runs
    not_run = [run_id for run_id, (*_, detail) in expected.items() if "does not run" in detail]
    assert not_run and len(not_run) < len(expected)
    stored = store.connect()
    try:
        rows = stored.execute(
            "SELECT spike_run_id, from_decision, to_decision, cause_check, cause_detail FROM decision_changes"
        ).fetchall()
        guarded = stored.execute(
            "SELECT count(DISTINCT spike_run_id) FROM gate_checks WHERE check_name = ?", ["evidence_strength"]
        ).fetchone()
    finally:
        stored.close()
    assert {row[0]: row[1:] for row in rows} == expected and len(rows) == len(expected)
    assert guarded == (len(payloads[::4]),)
