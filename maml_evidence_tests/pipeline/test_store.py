"""The evidence store under the pipeline: idempotent, atomic per partition, compacted, readable by DuckDB."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from maml_evidence.store import EvidenceStore
from maml_evidence.store import tables as tables_module
from maml_evidence.store.registry import PayloadRegistry
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import SCHEMA_FILE
from maml_evidence_tests.pipeline.conftest import SAMPLE_DECISIONS, Pipeline, sample, subprocess_env

VIEWS = ["spike_runs", "adaptation_metrics", "accuracy_metrics", "cost_metrics", "gate_decisions", "gate_checks"]
# Tables whose rows a re-materialization replaces (history tables only ever grow, by design).
CURRENT = [name for name, table in TABLES.items() if table.kind == "current"]
IDS = list(SAMPLE_DECISIONS)
ENABLE, FAST = IDS[0], IDS[1]


def snapshot(pipeline: Pipeline, views: list[str] = CURRENT) -> dict[str, list[str]]:
    """Every visible row of every view, order-independent."""
    out = {}
    for view in views:
        out[view] = sorted(repr(row) for row in pipeline.sql(f"SELECT * FROM {view}"))
    return out


def data_files(pipeline: Pipeline) -> set[Path]:
    """Every file a view's glob can see."""
    return {p for p in (pipeline.home / "tables").glob("*/*.parquet") if p.name != SCHEMA_FILE}


def leftovers(pipeline: Pipeline) -> list[Path]:
    """Temporary files a failed write left behind."""
    return [p for p in (pipeline.home / "tables").rglob("*") if p.is_file() and ".partial" in p.name]


def fail_writes(monkeypatch: pytest.MonkeyPatch, only: str | None = None) -> list[str]:
    """Make Parquet writes (into table ``only``, or any) write half a file, then fail like a full disk."""
    real = pq.write_table
    failed: list[str] = []

    def partial_then_fail(table, where, *args, **kwargs):  # noqa: ANN001, ANN202 - pyarrow's signature
        target = Path(where)
        if only is not None and target.parent.name != only:
            return real(table, where, *args, **kwargs)
        real(table, where, *args, **kwargs)
        size = target.stat().st_size
        with open(target, "r+b") as handle:
            handle.truncate(size // 2)
        failed.append(target.parent.name)
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(tables_module.pq, "write_table", partial_then_fail)
    return failed


def test_rematerializing_a_partition_replaces_its_rows(pipeline_env: Pipeline) -> None:
    ids = pipeline_env.ingest({ENABLE: sample(ENABLE), FAST: sample(FAST)})
    first = pipeline_env.view_counts(CURRENT)
    evaluated = dict(pipeline_env.sql("SELECT spike_run_id, evaluated_at FROM gate_decisions"))

    pipeline_env.run(ids)
    pipeline_env.run([FAST])

    assert pipeline_env.view_counts(CURRENT) == first
    assert first["gate_decisions"] == 2 and first["gate_checks"] == 10
    per_run = dict(pipeline_env.sql("SELECT spike_run_id, count(*) FROM gate_decisions GROUP BY ALL"))
    assert per_run == {ENABLE: 1, FAST: 1}
    later = dict(pipeline_env.sql("SELECT spike_run_id, evaluated_at FROM gate_decisions"))
    assert all(later[i] > evaluated[i] for i in ids)
    # the rows were really written three times: the view, not luck, keeps one copy
    raw = pipeline_env.sql(
        f"SELECT count(*) FROM read_parquet('{pipeline_env.home}/tables/gate_decisions/*.parquet') WHERE _present"
    )[0][0]
    assert raw == 5


def test_a_failed_write_leaves_no_rows_of_the_new_partition_and_keeps_earlier_ones(
    pipeline_env: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_env.ingest({ENABLE: sample(ENABLE)})
    before, files = snapshot(pipeline_env), data_files(pipeline_env)
    [new] = [r.spike_run_id for r in pipeline_env.intake([pipeline_env.drop(f"{FAST}.json", sample(FAST))])]

    failed = fail_writes(monkeypatch)
    result = pipeline_env.run([new], raise_on_error=False)

    assert not result.success and failed
    assert snapshot(pipeline_env) == before
    assert data_files(pipeline_env) == files
    assert leftovers(pipeline_env) == []
    assert new not in pipeline_env.store.decisions()

    monkeypatch.undo()
    assert pipeline_env.run([new]).success
    assert {k: v["decision"] for k, v in pipeline_env.store.decisions().items()} == {
        ENABLE: SAMPLE_DECISIONS[ENABLE],
        FAST: SAMPLE_DECISIONS[FAST],
    }
    assert pipeline_env.view_counts(["gate_checks"]) == {"gate_checks": 10}


def test_a_failure_in_the_last_table_keeps_the_earlier_decision(
    pipeline_env: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_env.ingest({ENABLE: sample(ENABLE)})
    before = pipeline_env.store.decisions()[ENABLE]
    failed = fail_writes(monkeypatch, only="gate_decisions")

    result = pipeline_env.run([ENABLE], raise_on_error=False)

    assert not result.success and failed == ["gate_decisions"]
    assert pipeline_env.store.decisions()[ENABLE] == before
    assert leftovers(pipeline_env) == []


def test_a_failure_in_decision_report_leaves_checks_and_decision_consistent(
    pipeline_env: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_env.ingest({ENABLE: sample(ENABLE)})
    fail_writes(monkeypatch, only="gate_decisions")
    pipeline_env.run([ENABLE], raise_on_error=False)
    [(checks_at, decision_at)] = pipeline_env.sql(
        "SELECT max(c.evaluated_at), any_value(d.evaluated_at) "
        "FROM gate_checks c JOIN gate_decisions d USING (spike_run_id)"
    )
    assert checks_at == decision_at


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
import pyarrow.parquet as pq
from maml_evidence.store import EvidenceStore

home, spike_run_id, marker = sys.argv[1:4]
store = EvidenceStore(home)
evaluations = store.evaluate([spike_run_id])
real = pq.write_table

def half_then_hang(table, where, *args, **kwargs):
    real(table, where, *args, **kwargs)
    with open(where, "r+b") as handle:
        handle.truncate(os.path.getsize(where) // 2)
    Path(marker).write_text(str(where))
    time.sleep(120)

pq.write_table = half_then_hang
store.write_decisions(evaluations)
"""


def test_a_writer_killed_mid_write_leaves_nothing_visible(pipeline_env: Pipeline, tmp_path: Path) -> None:
    pipeline_env.ingest({ENABLE: sample(ENABLE)})
    before, files = snapshot(pipeline_env), data_files(pipeline_env)
    marker = tmp_path / "writing"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(pipeline_env.home), ENABLE, str(marker)],
        env=subprocess_env(pipeline_env),
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the writer never reached its Parquet write"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()

    half_written = Path(marker.read_text())
    assert half_written.exists()  # the kill left it behind, where no view looks
    assert not half_written.name.endswith(".parquet")
    assert data_files(pipeline_env) == files
    assert snapshot(pipeline_env) == before
    with duckdb.connect(str(pipeline_env.home / "evidence.duckdb"), read_only=True) as catalog:
        assert catalog.execute("SELECT count(*) FROM gate_decisions").fetchone() == (1,)


def test_compaction_keeps_exactly_the_visible_rows_and_later_writes_still_replace(pipeline_env: Pipeline) -> None:
    ids = pipeline_env.ingest({ENABLE: sample(ENABLE), FAST: sample(FAST)})
    pipeline_env.run(ids)
    before = snapshot(pipeline_env)
    tables = pipeline_env.store.tables

    for name in TABLES:
        tables.compact(name)

    assert snapshot(pipeline_env) == before
    for name in CURRENT:
        files = tables.live_files(name)
        assert len(files) == 1 and files[0].name.startswith("c-"), (name, files)
        stored = pq.read_table(files[0])
        visible = stored.filter(stored["_present"]).num_rows
        assert visible == len(before[name]), name

    counts = pipeline_env.view_counts(CURRENT)
    pipeline_env.run([FAST])
    assert pipeline_env.view_counts(CURRENT) == counts
    per_run = dict(pipeline_env.sql("SELECT spike_run_id, count(*) FROM gate_checks GROUP BY ALL"))
    assert per_run == {ENABLE: 5, FAST: 5}


def test_many_writes_are_compacted_automatically(pipeline_env: Pipeline) -> None:
    pipeline_env.intake([pipeline_env.drop(f"{ENABLE}.json", sample(ENABLE))])
    store = pipeline_env.store.ensure()
    evaluations = store.evaluate([ENABLE])
    for _ in range(2 * tables_module.COMPACT_AFTER_FILES + 3):
        store.write_decisions(evaluations)
    assert len(store.tables.live_files("gate_decisions")) <= tables_module.COMPACT_AFTER_FILES
    assert pipeline_env.view_counts(["gate_decisions", "gate_checks"]) == {"gate_decisions": 1, "gate_checks": 5}


def test_catalog_opens_read_only_with_every_view_keyed_by_spike_run(
    pipeline_env: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_env.ingest({ENABLE: sample(ENABLE), FAST: sample(FAST)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # views must not depend on the reader's working directory

    with (
        duckdb.connect(str(pipeline_env.home / "evidence.duckdb"), read_only=True) as first,
        duckdb.connect(str(pipeline_env.home / "evidence.duckdb"), read_only=True) as second,
    ):
        views = {row[0] for row in first.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert set(VIEWS) <= views
        for view in VIEWS:
            columns = [row[0] for row in first.execute(f"DESCRIBE {view}").fetchall()]
            assert "spike_run_id" in columns, view
            assert not any(c.startswith("_") for c in columns), (view, columns)
            ids = {row[0] for row in second.execute(f"SELECT DISTINCT spike_run_id FROM {view}").fetchall()}
            assert ids == {ENABLE, FAST}, view
        decision_columns = {row[0] for row in first.execute("DESCRIBE gate_decisions").fetchall()}
        assert {
            "decision",
            "maml_recommended",
            "enough_projects",
            "adaptation_triggered",
            "effectiveness_ok",
            "accuracy_ok",
            "cost_ok",
            "evaluated_at",
        } <= decision_columns
        check_columns = {row[0] for row in first.execute("DESCRIBE gate_checks").fetchall()}
        assert {"check_name", "passed", "observed", "threshold"} <= check_columns
        assert first.execute("SELECT count(*) FROM gate_checks").fetchone() == (10,)
        assert dict(first.execute("SELECT spike_run_id, decision FROM gate_decisions").fetchall()) == {
            ENABLE: SAMPLE_DECISIONS[ENABLE],
            FAST: SAMPLE_DECISIONS[FAST],
        }


def test_catalog_follows_a_moved_evidence_home(pipeline_env: Pipeline, tmp_path: Path) -> None:
    pipeline_env.ingest({ENABLE: sample(ENABLE)})
    moved = tmp_path / "moved-home"
    shutil.move(pipeline_env.home, moved)
    EvidenceStore(moved).ensure()
    with duckdb.connect(str(moved / "evidence.duckdb"), read_only=True) as catalog:
        assert catalog.execute("SELECT spike_run_id, decision FROM gate_decisions").fetchall() == [
            (ENABLE, SAMPLE_DECISIONS[ENABLE])
        ]
    assert [r.revision for r in PayloadRegistry(EvidenceStore(moved).home).history(ENABLE)] == [1]


def test_a_report_stored_before_the_provenance_rename_still_counts_as_complete(pipeline_env: Pipeline) -> None:
    """Stores written before issue 11 keep the payload's sha256 under ``evidence``; they are not re-evaluated."""
    import json

    [run_id] = pipeline_env.ingest({ENABLE: sample(ENABLE)})
    store = pipeline_env.store
    path = store.home.report_dir(run_id) / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    assert "sha256" in report["provenance"] and "sha256" not in report["evidence"]
    assert store.incomplete([run_id]) == []
    old = {key: value for key, value in report.items() if key not in ("provenance", "evidence")}
    path.write_text(json.dumps({**old, "evidence": report["provenance"]}), encoding="utf-8")
    assert store.incomplete([run_id]) == []
    path.write_text(json.dumps({**old, "evidence": {**report["provenance"], "sha256": "0" * 64}}), encoding="utf-8")
    assert store.incomplete([run_id]) == [run_id]
