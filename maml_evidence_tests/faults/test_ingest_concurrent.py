"""Two `maml-evidence ingest` at once: the second waits for the first one's evaluation and reports its decisions."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dagster as dg

from maml_evidence.store import EvidenceStore
from maml_evidence_tests.faults.conftest import write_generated
from maml_evidence_tests.faults.hostile import cli_command, cli_env, lines_by_subject, maml_evidence
from maml_evidence_tests.samples import prepare_dagster_home

SPIKE_RUNS = 120  # enough that the first ingest's run lasts a few seconds


def wait_for_a_started_run(instance: dg.DagsterInstance, first: subprocess.Popen[str], limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if first.poll() is not None:
            out, err = first.communicate()
            raise AssertionError(f"the first ingest ended before its run was seen running:\n{out}{err}")
        assert time.monotonic() < deadline, "the first ingest never started its run"
        time.sleep(0.05)


def test_the_second_ingest_waits_and_reports_the_decisions_once_they_are_there(tmp_path: Path) -> None:
    (tmp_path / "home" / "inbox").mkdir(parents=True)
    ids = write_generated(tmp_path / "home" / "inbox", SPIKE_RUNS, seed=91)
    # the instance's storage exists before either process opens it (two first openings race on its schema)
    instance = dg.DagsterInstance.from_config(str(prepare_dagster_home(tmp_path / "dagster_home")))
    first = subprocess.Popen(
        cli_command(tmp_path, "ingest"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path),
        cwd=tmp_path,
    )
    try:
        wait_for_a_started_run(instance, first)
        second = maml_evidence(tmp_path, "ingest", timeout=300)
        first_out, first_err = first.communicate(timeout=300)
    finally:
        instance.dispose()
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_out + first_err

    # the second one said whom it waited for, then printed every decision (none "not evaluated")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"being evaluated by process {first.pid} on " in second.stderr, second.stderr
    decided = {k: v["decision"] for k, v in EvidenceStore(tmp_path / "home").decisions().items()}
    lines = lines_by_subject(second.stdout)
    assert sorted(lines) == sorted(ids)
    for run_id, line in lines.items():
        assert line.startswith(decided[run_id]) and "(unchanged: same content as revision 1)" in line

    # and evaluated nothing itself: one decision per spike run in history
    connection = EvidenceStore(tmp_path / "home").connect()
    try:
        history = dict(connection.execute("SELECT spike_run_id, count(*) FROM decision_history GROUP BY 1").fetchall())
    finally:
        connection.close()
    assert history == dict.fromkeys(ids, 1)
