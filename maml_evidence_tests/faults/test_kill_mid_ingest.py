"""SIGKILL in the middle of ingesting a batch, then restart: every spike run evaluated, no partial or doubled rows."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from maml_evidence import evaluate_feasibility
from maml_evidence.store import EvidenceStore
from maml_evidence_tests.faults.conftest import cli, write_generated


def _wait_for(predicate, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_killed_ingest_is_finished_by_the_next_one_exactly_once(home: Path) -> None:
    ids = write_generated(home / "inbox", 24, seed=5)
    process = subprocess.Popen(
        [sys.executable, "-m", "maml_evidence.cli", "ingest", "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    metrics = home / "tables" / "adaptation_metrics"
    # kill once the run is under way: the first metric batch is written, the decisions are not
    assert _wait_for(lambda: any(metrics.glob("b-*.parquet")), timeout=240), "the ingest never got going"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not list((home / "tables" / "gate_decisions").glob("b-*.parquet")), "killed too late to prove anything"

    result = cli("ingest", home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == len(ids)

    store = EvidenceStore(home)
    assert store.incomplete() == []
    connection = store.connect()
    try:
        for table in ("spike_runs", "adaptation_summary", "accuracy_summary", "cost_metrics", "gate_decisions"):
            total, distinct = connection.execute(
                f"SELECT count(*), count(DISTINCT spike_run_id) FROM {table}"
            ).fetchone()
            assert (total, distinct) == (len(ids), len(ids)), table
        per_project = dict(
            connection.execute("SELECT spike_run_id, count(*) FROM adaptation_metrics GROUP BY 1").fetchall()
        )
        decisions = dict(connection.execute("SELECT spike_run_id, decision FROM gate_decisions").fetchall())
    finally:
        connection.close()
    for run_id in ids:
        report = evaluate_feasibility(json.loads((home / "inbox" / f"{run_id}.json").read_text()))
        assert decisions[run_id] == report["decision"]
        assert per_project.get(run_id, 0) == report["project_alignment"]["common_project_count"]
    # no half-written file is visible to readers
    for table_dir in (home / "tables").iterdir():
        for path in table_dir.glob("*.parquet"):
            assert not path.name.startswith(".")
