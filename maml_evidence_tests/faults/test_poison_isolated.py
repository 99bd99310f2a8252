"""One spike run that cannot be evaluated or stored fails alone: its batch is still evaluated, it is named.

Validation keeps unstorable values out (min_projects is bounded, names are UTF-8), so these tests break a
spike run after intake, the way damage or a tampered store would: a stored payload whose bytes changed, and a
revision number no int64 column can hold. Each time the rest of the Dagster run's batch is decided, the
command prints one line naming the failed spike run and why (no traceback), exits 1, and ``doctor`` names it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from maml_evidence.store import EvidenceStore
from maml_evidence.store.intake import intake_files
from maml_evidence_tests.samples import BIN, SAMPLE_DECISIONS, SAMPLE_INBOX

IDS = list(SAMPLE_DECISIONS)


def command(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MAML_EVIDENCE_HOME")}
    return subprocess.run(
        [str(BIN / args[0]), *args[1:], "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def take_in_without_evaluating(home: Path) -> EvidenceStore:
    """The six samples accepted into the store (as a killed ingest would leave them), none evaluated yet."""
    store = EvidenceStore(home).ensure()
    results = intake_files(store.home, [SAMPLE_INBOX / f"{i}.json" for i in IDS])
    assert [r.spike_run_id for r in results] == IDS
    return store


def damage_stored_payload(store: EvidenceStore, run_id: str) -> None:
    revision = store.registry.current(run_id)
    assert revision is not None
    store.registry.payload_path(run_id, revision.sha256).write_text('{"tampered": true}', encoding="utf-8")


def overflow_revision_number(store: EvidenceStore, run_id: str) -> None:
    pointer = store.registry.folder(run_id) / "current.json"
    data = json.loads(pointer.read_text(encoding="utf-8"))
    data["revisions"][-1]["revision"] = 2**64  # beyond the int64 revision column
    pointer.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [(damage_stored_payload, "sha256 mismatch"), (overflow_revision_number, "cannot store its spike_runs rows")],
)
def test_one_broken_spike_run_fails_alone_and_is_named(tmp_path: Path, breaker, reason: str) -> None:  # noqa: ANN001
    home = tmp_path / "evidence"
    store = take_in_without_evaluating(home)
    victim = IDS[2]
    breaker(store, victim)

    result = command(home, "maml-evidence", "ingest", *[str(SAMPLE_INBOX / f"{i}.json") for i in IDS])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if len(line.split()) > 1}
    assert lines[victim].startswith("failed ") and reason in lines[victim], result.stdout
    for run_id, decision in SAMPLE_DECISIONS.items():  # the rest of the batch, in the same Dagster run, decided
        if run_id != victim:
            assert lines[run_id].startswith(decision), result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and victim in result.stderr  # the run's failure, one line

    decided = EvidenceStore(home).decisions()
    assert sorted(decided) == sorted(i for i in IDS if i != victim)
    # no table holds part of the failed spike run's evaluation
    connection = EvidenceStore(home).connect()
    try:
        for table in ("spike_runs", "adaptation_summary", "accuracy_summary", "cost_metrics", "gate_checks"):
            found = connection.execute(f"SELECT count(*) FROM {table} WHERE spike_run_id = ?", [victim]).fetchone()
            assert found == (0,), table
    finally:
        connection.close()

    # the full trace stays in the Dagster run's event log (the terminal got one line)
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster_home"))
    try:
        [run] = instance.get_runs(dg.RunsFilter(job_name="evaluate_spike_runs"))
        logged = [e.message for e in instance.all_logs(run.run_id) if e.message and f"spike run {victim}" in e.message]
    finally:
        instance.dispose()
    assert logged and reason in logged[0]
    if breaker is damage_stored_payload:  # an exception: its trace is logged with it
        assert "Traceback" in logged[0]

    doctor = command(home, "maml-evidence", "doctor")
    assert doctor.returncode == 1
    named = [line for line in doctor.stdout.splitlines() if victim in line and "last evaluation failed" in line]
    assert named and reason in named[0], doctor.stdout
