"""The evidence views (``evidence_strength``, ``project_effects``) as ingest writes them and re-evaluation keeps them.

Ingest writes one ``evidence_strength`` row per spike run, committed with its decision, and one ``project_effects``
row per common project. A policy change that moves a run's grade, or a threshold its accuracy verdict or needed
projects depend on, measures that run again: its row, its report and its interpretation say the same thing.
"""

from __future__ import annotations

import pytest

from maml_evidence.gate import validate_payload
from maml_evidence.policy import load_policy
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence.strength import evaluate_with_evidence
from maml_evidence_tests.policy.conftest import PAYLOADS, Home


def evidence_rows(home: Home) -> dict[str, dict[str, object]]:
    return {str(r["spike_run_id"]): r for r in home.rows("SELECT * FROM evidence_strength")}


def pins(run_id: str, key: str) -> bool:
    return key in (PAYLOADS[run_id].get("thresholds") or {})


def assert_rows_match_reports(home: Home, version: str | None = None, unless_pinned: str = "") -> None:
    rows = evidence_rows(home)
    assert set(rows) == set(PAYLOADS)
    for run_id, row in rows.items():
        evidence = home.store.read_report(run_id)["evidence"]
        step, accuracy = evidence["step_reduction"], evidence["accuracy"]
        assert (row["grade"], row["grade_reason"]) == (evidence["grade"], evidence["grade_reason"]), run_id
        assert row["accuracy_verdict"] == accuracy["verdict"], run_id
        assert row["projects"] == evidence["projects"], run_id
        assert row["projects_for_80pct_power"] == step["projects_for_80pct_power"], run_id
        for column, shown in (
            ("t_p_value", step["t_p_value"]),
            ("upper95_regression_pp", accuracy["upper95_regression_pp"]),
        ):
            assert (row[column] is None) is (shown is None), (run_id, column)
            if shown is not None:
                assert row[column] == pytest.approx(shown, abs=1e-4), (run_id, column)
        if row["t_p_value"] is not None and row["sign_flip_p_value"] is not None:
            assert row["step_reduction_p_value"] == max(row["t_p_value"], row["sign_flip_p_value"]), run_id
        if version is not None and not (unless_pinned and pins(run_id, unless_pinned)):
            assert row["policy_version"] == version, run_id


def test_ingest_writes_one_evidence_row_per_run_and_one_effect_per_common_project(home: Home) -> None:
    assert_rows_match_reports(home, load_policy(home.policy_file).version)
    effects = home.rows("SELECT * FROM project_effects ORDER BY spike_run_id, project")
    adaptation = {(r["spike_run_id"], r["project"]): r for r in home.rows("SELECT * FROM adaptation_metrics")}
    assert len(effects) == len(adaptation) > 0
    for effect in effects:
        steps = adaptation[(effect["spike_run_id"], effect["project"])]
        assert effect["step_reduction"] == steps["step_reduction"]
        if steps["baseline_steps_to_target"]:
            assert effect["relative_step_reduction"] == steps["step_reduction"] / steps["baseline_steps_to_target"]
        assert (effect["baseline_reached"], effect["candidate_reached"]) == (True, True)
        assert (effect["baseline_replicates"], effect["candidate_replicates"]) == (0, 0)
    for run_id, payload in PAYLOADS.items():
        measured = evaluate_with_evidence(validate_payload(payload))
        rows = [e for e in effects if e["spike_run_id"] == run_id]
        regressions = measured.evidence["accuracy"]["per_project_regression_pp"]
        assert {str(e["project"]): e["accuracy_regression_pp"] for e in rows} == regressions, run_id


def test_a_tighter_accuracy_limit_measures_the_stale_runs_again(home: Home) -> None:
    before = evidence_rows(home)
    home.write_policy({"max_mean_accuracy_regression_pp": 0.1})
    version = load_policy(home.policy_file).version
    result = reevaluate(home.store)
    assert result.evaluated == len(PAYLOADS)
    # every run's accuracy limit changed (but where its payload pins it), so its row is measured again
    assert_rows_match_reports(home, version, unless_pinned="max_mean_accuracy_regression_pp")
    assert any(pins(run_id, "max_mean_accuracy_regression_pp") for run_id in PAYLOADS)
    after = evidence_rows(home)
    moved = [run_id for run_id in after if after[run_id]["accuracy_verdict"] != before[run_id]["accuracy_verdict"]]
    assert moved, "the scenario should move some accuracy verdict"
    for run_id in moved:
        interpretation = (home.store.home.reports / run_id / "interpretation.md").read_text(encoding="utf-8")
        assert str(after[run_id]["grade_reason"]) in interpretation


def test_requiring_strong_evidence_defers_enables_that_are_not_strong(home: Home) -> None:
    before = home.decisions()
    grades = {run_id: row["grade"] for run_id, row in evidence_rows(home).items()}
    home.write_policy({"require_strong_evidence": True})
    result = reevaluate(home.store)
    after = home.decisions()
    expected = {
        run_id: ("enable_maml", "collect_more_evidence", "evidence_strength")
        for run_id, row in before.items()
        if row["decision"] == "enable_maml" and grades[run_id] != "strong"
    }
    assert expected, "the scenario should hold an enable without strong evidence"
    assert {c.spike_run_id: (c.from_decision, c.to_decision, c.cause_check) for c in result.changes} == expected
    for run_id in expected:
        assert after[run_id]["evidence_strength"] is False
        report = home.store.read_report(run_id)
        assert report["thresholds"]["require_strong_evidence"] is True
        assert report["threshold_sources"]["require_strong_evidence"] == "policy"
    # the grades did not move (nothing they depend on changed), so no evidence row was measured again
    assert {run_id: row["grade"] for run_id, row in evidence_rows(home).items()} == grades


def test_doctor_names_runs_without_evidence_rows_and_repair_measures_them(home: Home) -> None:
    """A store written before evidence strength was recorded: its runs have decisions but no evidence rows."""
    folder = home.store.tables.directory("evidence_strength")
    for path in home.store.tables.data_files("evidence_strength"):
        path.unlink()
    for sidecar in folder.glob("*.keys"):
        sidecar.unlink()
    assert evidence_rows(home) == {}
    found = home.cli("doctor")
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"{len(PAYLOADS)} decided spike run(s) have no evidence row" in found.stdout
    repaired = home.cli("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert_rows_match_reports(home)
    assert home.cli("doctor").returncode == 0
