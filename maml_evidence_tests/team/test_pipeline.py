"""The commands on a Postgres instance: the same decisions as the local default, Dagster's records in Postgres,
re-evaluation under a changed policy, doctor, and two machines' worth of ingests at once."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import dagster as dg

from maml_evidence.store import EvidenceStore
from maml_evidence_tests.generator import generate_payload
from maml_evidence_tests.samples import SAMPLE_DECISIONS, SAMPLE_INBOX
from maml_evidence_tests.team.conftest import TeamHome

# fewer than 4 projects -> collect_more_evidence, a looser accuracy guard, a tighter overhead, a dearer GPU
CHANGED_POLICY = (
    "min_projects = 4\nmax_mean_accuracy_regression_pp = 2.5\nmax_training_overhead_pct = 25.0\ngpu_hour_usd = 6.0\n"
)
COMPARED = ("decision", "failed_check", "policy_version")


def _decisions(evidence: Path) -> dict[str, dict[str, object]]:
    rows = EvidenceStore(evidence).decisions()
    return {run_id: {k: row.get(k) for k in COMPARED if k in row} for run_id, row in rows.items()}


def _local_twin(team_home: TeamHome, tmp_path: Path) -> TeamHome:
    """The same evidence home on the local default instance (SQLite in <home>/dagster_home)."""
    local = TeamHome(tmp_path / "local" / "evidence", tmp_path / "local" / "evidence" / "dagster_home", "")
    local.evidence.mkdir(parents=True)
    return local


def test_ingest_reevaluate_and_doctor_on_postgres_agree_with_the_local_default(
    team_home: TeamHome, tmp_path: Path
) -> None:
    assert team_home.cli("instance", "--postgres-url", team_home.url).returncode == 0
    local = _local_twin(team_home, tmp_path)
    samples = [str(p) for p in sorted(SAMPLE_INBOX.glob("*.json"))]
    outputs = {}
    for name, home in (("team", team_home), ("local", local)):
        done = home.cli("ingest", *samples)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        outputs[name] = done.stdout
    assert {k: v["decision"] for k, v in _decisions(team_home.evidence).items()} == SAMPLE_DECISIONS
    assert _decisions(team_home.evidence) == _decisions(local.evidence)
    assert outputs["team"] == outputs["local"], outputs
    assert (local.dagster_home / "dagster.yaml").is_file()  # the local twin really is on its own SQLite

    instance = dg.DagsterInstance.from_config(str(team_home.dagster_home))
    try:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert sorted(instance.get_dynamic_partitions("spike_runs")) == sorted(SAMPLE_DECISIONS)
        gate = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("decision_report"), "maml_gate"), limit=100
        )
        assert Counter(r.partition for r in gate) == Counter(list(SAMPLE_DECISIONS))
        passed = {r.partition for r in gate if r.evaluation is not None and r.evaluation.passed}
        assert passed == {r for r, d in SAMPLE_DECISIONS.items() if d == "enable_maml"}
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
    finally:
        instance.dispose()
    assert not list(team_home.dagster_home.glob("**/*.db")), "a Postgres instance keeps no SQLite files"

    # a changed policy: both re-judge history the same way
    for home in (team_home, local):
        (home.evidence / "thresholds.toml").write_text(CHANGED_POLICY, encoding="utf-8")
    reevaluated = {name: home.cli("reevaluate") for name, home in (("team", team_home), ("local", local))}
    for name, done in reevaluated.items():
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
    assert "decisions changed" in reevaluated["team"].stdout
    changed = [line for line in reevaluated["team"].stdout.splitlines() if " -> " in line]
    local_changed = [line for line in reevaluated["local"].stdout.splitlines() if " -> " in line]
    assert changed and changed == local_changed, (changed, local_changed)
    assert _decisions(team_home.evidence) == _decisions(local.evidence)
    assert {k: v["decision"] for k, v in _decisions(team_home.evidence).items()} != SAMPLE_DECISIONS

    # doctor: healthy; a damaged table file is set aside and rebuilt through the Postgres instance
    healthy = team_home.cli("doctor")
    assert healthy.returncode == 0 and healthy.stdout.startswith("ok:"), healthy.stdout + healthy.stderr
    before = _decisions(team_home.evidence)
    tables = team_home.evidence / "tables" / "adaptation_metrics"
    [damaged, *_] = sorted(p for p in tables.glob("*.parquet") if not p.name.startswith("_"))  # not the schema
    damaged.write_bytes(b"not parquet at all")
    found = team_home.cli("doctor")
    assert found.returncode == 1 and damaged.name in found.stdout, found.stdout + found.stderr
    repaired = team_home.cli("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "rebuilt" in repaired.stdout
    assert _decisions(team_home.evidence) == before, repaired.stdout
    after = team_home.cli("doctor")
    assert after.returncode == 0, after.stdout + after.stderr


def test_two_processes_ingesting_at_once_on_one_postgres_instance_and_home(team_home: TeamHome) -> None:
    assert team_home.cli("instance", "--postgres-url", team_home.url).returncode == 0
    rng = random.Random(2026)
    batches: list[list[str]] = [[], []]
    folder = team_home.evidence.parent / "payloads-in"
    for side in (0, 1):
        (folder / str(side)).mkdir(parents=True)
        for index in range(4):
            run_id = f"team-{side}-{index}"
            path = folder / str(side) / f"{run_id}.json"
            path.write_text(json.dumps(generate_payload(rng, run_id)), encoding="utf-8")
            batches[side].append(str(path))
    shutil.copy(SAMPLE_INBOX / "2026-10-06-support-bots-enable.json", folder / "0")
    batches[0].append(str(folder / "0" / "2026-10-06-support-bots-enable.json"))
    processes = [team_home.popen("ingest", *batch) for batch in batches]
    results = [process.communicate(timeout=240) for process in processes]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, out + err
    expected = {Path(p).stem for batch in batches for p in batch}
    decided = EvidenceStore(team_home.evidence).decisions()
    assert set(decided) == expected

    instance = dg.DagsterInstance.from_config(str(team_home.dagster_home))
    try:
        assert sorted(instance.get_dynamic_partitions("spike_runs")) == sorted(expected)
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("decision_report"), asset_partitions=sorted(expected)),
            limit=100,
        ).records
        assert Counter(r.partition_key for r in records) == Counter(sorted(expected))  # each evaluated once
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS] * 2
    finally:
        instance.dispose()
    history = EvidenceStore(team_home.evidence).connect()
    try:
        rows = history.execute("SELECT spike_run_id, count(*) FROM decision_history GROUP BY ALL").fetchall()
    finally:
        history.close()
    assert dict(rows) == dict.fromkeys(expected, 1)
