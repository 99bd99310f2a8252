"""The notebook API: the evidence views as pandas DataFrames, refused exactly as the ``sql`` command refuses."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from maml_evidence.notebook import EvidenceWarning, open_evidence
from maml_evidence.store.home import StoreError
from maml_evidence.store.schema import TABLES
from maml_evidence_tests.policy.conftest import PAYLOADS, Home, oracle
from maml_evidence_tests.store.conftest import POLICY_D, store_state
from maml_evidence_tests.store.test_sandbox import HOSTILE, STATEMENTS, fill, listing
from maml_evidence_tests.store.test_sql import REFUSED, readme_blocks, readme_sql_statements

ENABLE_SAMPLE = "2026-10-06-support-bots-enable"  # enabled at ingest, deferred for cost under POLICY_D


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def test_open_evidence_resolves_the_home_as_the_commands_do(
    store_d: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = store_d.evidence.resolve()
    assert open_evidence(store_d.evidence).home.root == root
    assert repr(open_evidence(str(store_d.evidence))) == f"Evidence({str(root)!r})"
    monkeypatch.setenv("MAML_EVIDENCE_HOME", str(store_d.evidence))
    assert open_evidence().home.root == root
    monkeypatch.delenv("MAML_EVIDENCE_HOME")
    (tmp_path / "data").symlink_to(store_d.evidence)
    monkeypatch.chdir(tmp_path)
    opened = open_evidence()
    assert opened.home.root == root
    assert len(opened.decisions()) == len(PAYLOADS)


def test_a_folder_that_is_not_an_evidence_home_is_refused_and_left_alone(tmp_path: Path) -> None:
    for folder in (tmp_path, tmp_path / "absent"):
        with pytest.raises(StoreError, match="not an evidence home"):
            open_evidence(folder)
    assert list(tmp_path.iterdir()) == []


def test_decisions_are_the_current_decisions_with_their_numbers(store_d: Home) -> None:
    frame = open_evidence(store_d.evidence).decisions()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["spike_run_id"]) == sorted(PAYLOADS)
    assert isinstance(frame["evaluated_at"].dtype, pd.DatetimeTZDtype)
    assert frame["maml_recommended"].dtype == bool
    stored = store_d.decisions()
    reasons = {(r["spike_run_id"], r["check_name"]): r["reason"] for r in store_d.rows("SELECT * FROM gate_checks")}
    expected = oracle(POLICY_D)
    for row in frame.to_dict("records"):
        run_id, report = row["spike_run_id"], expected[row["spike_run_id"]]
        assert row["decision"] == report["decision"] == stored[run_id]["decision"]
        assert row["maml_recommended"] is (report["decision"] == "enable_maml")
        assert row["policy_version"] == stored[run_id]["policy_version"]
        assert row["trigger"] == stored[run_id]["trigger"]
        if report["failed_check"] is None:
            assert missing(row["failed_check"]) and missing(row["failed_reason"])
        else:
            assert row["failed_check"] == report["failed_check"]
            assert row["failed_reason"] == reasons[(run_id, report["failed_check"])]
            assert row["failed_reason"] in report["reasons"]
        assert row["revision"] == 1
        assert row["common_project_count"] == report["project_alignment"]["common_project_count"]
        comparison, cost = report["comparison"], report["cost"]
        for column in ("mean_step_reduction", "relative_step_reduction", "mean_accuracy_regression_pp"):
            assert row[column] == pytest.approx(comparison[column], abs=1e-4), column
        assert row["training_overhead_pct"] == pytest.approx(cost["training_overhead_pct"], abs=1e-4)
        assert row["extra_gpu_cost_usd_per_run"] == pytest.approx(cost["extra_gpu_cost_usd_per_run"], abs=1e-4)


def test_history_of_one_spike_run_and_of_all(store_d: Home) -> None:
    ev = open_evidence(store_d.evidence)
    one = ev.history(ENABLE_SAMPLE)
    before, after = oracle()[ENABLE_SAMPLE]["decision"], oracle(POLICY_D)[ENABLE_SAMPLE]["decision"]
    assert before != after
    assert list(one["decision"]) == [before, after]
    assert missing(one["previous_decision"].iloc[0]) and one["previous_decision"].iloc[1] == before
    assert one["evaluated_at"].is_monotonic_increasing

    every = ev.history()
    assert len(every) == store_d.counts()["decision_history"] == 2 * len(PAYLOADS)
    assert list(every["spike_run_id"]) == sorted(every["spike_run_id"])
    assert every[every["spike_run_id"] == ENABLE_SAMPLE].reset_index(drop=True).equals(one)


@pytest.mark.parametrize(("run_id", "expected"), [("no-such-run", "no decisions"), ("../x", "spike_run_id")])
def test_history_of_an_unknown_spike_run(store_d: Home, run_id: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected):
        open_evidence(store_d.evidence).history(run_id)


def test_views_and_each_views_rows(store_d: Home) -> None:
    ev = open_evidence(store_d.evidence)
    listed = ev.views()
    assert list(listed["view"]) == list(TABLES)
    assert list(listed["columns"]) == [table.column_names for table in TABLES.values()]
    counts = store_d.counts()
    for name, table in TABLES.items():
        rows = ev.view(name)
        assert list(rows.columns) == table.column_names, name
        assert len(rows) == counts[name], name
    with pytest.raises(StoreError, match="no view 'gate_decisions; DROP'"):
        ev.view("gate_decisions; DROP")


def test_sql_with_parameters(store_d: Home) -> None:
    ev = open_evidence(store_d.evidence)
    frame = ev.sql("FROM gate_checks WHERE NOT passed AND spike_run_id = ?", [ENABLE_SAMPLE])
    assert list(frame["check_name"]) == [oracle(POLICY_D)[ENABLE_SAMPLE]["failed_check"]]
    with pytest.raises(StoreError, match="exactly one statement, got 2"):
        ev.sql("SELECT 1; SELECT ?", [1])


def test_readme_python_example_and_sql_run_on_both_connections(
    target: Home, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    (example,) = readme_blocks("python")
    monkeypatch.setenv("MAML_EVIDENCE_HOME", str(target.evidence))
    exec(compile(example, "README.md", "exec"), {})
    ev = open_evidence()
    for sql in readme_sql_statements():
        assert isinstance(ev.sql(sql), pd.DataFrame)


CLI_REFUSED = [*REFUSED, *(s for s, _ in HOSTILE), *(s for s, _ in STATEMENTS)]


@pytest.mark.parametrize("statement", CLI_REFUSED, ids=[s[:50] for s in CLI_REFUSED])
def test_refused_as_the_command_refuses(
    target: Home, outside: Path, capsys: pytest.CaptureFixture[str], statement: str
) -> None:
    from maml_evidence.cli import main

    sql = fill(statement.replace("{out}", "<outside>").replace("{tables}", "<tables>"), target, outside)
    before, files_outside = store_state(target), listing(outside)
    with pytest.raises(StoreError) as refused:
        open_evidence(target.evidence).sql(sql)
    assert main(["sql", sql, "--home", str(target.evidence)]) == 2
    assert capsys.readouterr().err == f"error: {refused.value}\n"
    assert "refused" in str(refused.value)
    assert store_state(target) == before
    assert listing(outside) == files_outside


def test_damage_is_skipped_with_a_warning_naming_the_file(damaged: tuple[Home, Path]) -> None:
    home, broken = damaged
    ev = open_evidence(home.evidence)
    with pytest.warns(EvidenceWarning, match="doctor --repair") as caught:
        frame = ev.decisions()
    assert any(str(broken) in str(w.message) for w in caught)
    assert list(frame["spike_run_id"]) == sorted(PAYLOADS)
