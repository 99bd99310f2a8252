"""`maml-evidence ingest` for real: a fresh interpreter, the evidence home's own Dagster instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from maml_evidence.store import EvidenceStore
from maml_evidence_tests.pipeline.conftest import ENABLE_SAMPLE, sample, write_json
from maml_evidence_tests.samples import BIN, SAMPLE_DECISIONS, SAMPLE_INBOX

BROKEN = "zz-broken.json"


def ingest(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MAML_EVIDENCE_HOME")}
    return subprocess.run(
        [str(BIN / "maml-evidence"), "ingest", "--home", str(home), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def decision_lines(stdout: str) -> dict[str, str]:
    """spike run id -> the line that reports it."""
    out = {}
    for line in stdout.splitlines():
        for run_id in SAMPLE_DECISIONS:
            if f" {run_id} " in f" {line} ":
                assert run_id not in out, f"{run_id} reported twice:\n{stdout}"
                out[run_id] = line
    return out


def stored_revisions(home: Path) -> list[dict]:
    pointer = home / "payloads" / ENABLE_SAMPLE / "current.json"
    return json.loads(pointer.read_text(encoding="utf-8"))["revisions"]


@dataclass
class Ingested:
    home: Path
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    root = tmp_path_factory.mktemp("cli")
    home = root / "home"
    shutil.copytree(SAMPLE_INBOX, home / "inbox")
    broken = sample(ENABLE_SAMPLE, spike_run_id="broken-run")
    broken["candidate"]["train_minutes"] = -5
    write_json(home / "inbox" / BROKEN, broken)
    first = ingest(home, cwd=root)
    second = ingest(home, cwd=root)
    return Ingested(home, first, second)


def test_first_ingest_prints_each_decision_and_exits_1_for_the_quarantined_file(ingested: Ingested) -> None:
    result = ingested.first
    assert result.returncode == 1, result.stderr
    lines = decision_lines(result.stdout)
    assert sorted(lines) == sorted(SAMPLE_DECISIONS)
    for run_id, decision in SAMPLE_DECISIONS.items():
        assert decision in lines[run_id]
    assert BROKEN in result.stdout
    assert "quarantined" in result.stderr.lower()


def test_first_ingest_evaluates_every_valid_file_in_one_run_on_the_home_instance(ingested: Ingested) -> None:
    decisions = {k: v["decision"] for k, v in EvidenceStore(ingested.home).decisions().items()}
    assert decisions == SAMPLE_DECISIONS
    dagster_home = ingested.home / "dagster_home"
    assert (dagster_home / "dagster.yaml").exists()
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        assert sorted(instance.get_dynamic_partitions("spike_runs")) == sorted(SAMPLE_DECISIONS)
        assert len(instance.get_runs()) == 1
    finally:
        instance.dispose()


def test_the_invalid_file_is_quarantined_beside_the_core_error(ingested: Ingested) -> None:
    assert not (ingested.home / "inbox" / BROKEN).exists()
    [moved] = [p for p in (ingested.home / "quarantine").iterdir() if p.name.endswith(BROKEN)]
    reason = moved.with_name(moved.name + ".reason.txt").read_text(encoding="utf-8")
    assert "candidate.train_minutes" in reason
    assert "broken-run" not in EvidenceStore(ingested.home).decisions()


def test_second_ingest_reports_unchanged_and_exits_0(ingested: Ingested) -> None:
    result = ingested.second
    assert result.returncode == 0, result.stdout + result.stderr
    lines = decision_lines(result.stdout)
    assert sorted(lines) == sorted(SAMPLE_DECISIONS)
    for run_id, decision in SAMPLE_DECISIONS.items():
        assert decision in lines[run_id] and "unchanged" in lines[run_id]


def test_replace_records_a_second_revision_and_the_new_decision(ingested: Ingested, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ingested.home, home)
    changed = sample(ENABLE_SAMPLE)
    changed["candidate"]["meta_train_minutes"] = 500.0  # MAML now costs far more than the budget
    path = write_json(tmp_path / "support-bots-rerun.json", changed)

    refused = ingest(home, str(path), cwd=tmp_path)
    assert refused.returncode == 1
    assert "QUARANTINED" in refused.stdout and path.exists()  # a file outside the inbox is copied, not moved
    [reason] = [
        p.read_text(encoding="utf-8") for p in (home / "quarantine").glob("*support-bots-rerun.json.reason.txt")
    ]
    assert ENABLE_SAMPLE in reason and "--replace" in reason

    replaced = ingest(home, "--replace", str(path), cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    [line] = decision_lines(replaced.stdout).values()
    assert "defer_maml_cost_too_high" in line and "replaced" in line

    revisions = stored_revisions(home)
    assert [r["revision"] for r in revisions] == [1, 2]
    assert revisions[1]["source_file"] == str(path)
    for revision in revisions:
        assert (home / "payloads" / ENABLE_SAMPLE / f"{revision['sha256']}.json").exists()
    store = EvidenceStore(home)
    assert store.decisions()[ENABLE_SAMPLE]["decision"] == "defer_maml_cost_too_high"
    assert store.read_report(ENABLE_SAMPLE)["provenance"]["revision"] == 2
    connection = store.connect()
    try:
        rows = connection.execute("SELECT revision FROM spike_runs WHERE spike_run_id = ?", [ENABLE_SAMPLE]).fetchall()
    finally:
        connection.close()
    assert rows == [(2,)]

    # The inbox still holds revision 1's file: it is history now, neither a conflict nor a new revision.
    again = ingest(home, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (home / "inbox" / f"{ENABLE_SAMPLE}.json").exists()
    assert EvidenceStore(home).decisions()[ENABLE_SAMPLE]["decision"] == "defer_maml_cost_too_high"
    assert len(stored_revisions(home)) == 2
