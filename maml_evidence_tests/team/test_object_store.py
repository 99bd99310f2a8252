"""The evidence home in S3-compatible object storage: the commands on ``MAML_EVIDENCE_HOME=s3://bucket/prefix``.

A real SeaweedFS server and a real Postgres cluster, both started by the session's fixtures. Each "machine" is
its own local folder (inbox, catalog) and Dagster home; the machines of one team share the bucket and the
Postgres database that holds the Dagster instance and the advisory locks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.deploy.instance import write_postgres_instance
from maml_evidence_tests.faults.crashpoint import run_killed_after
from maml_evidence_tests.generator import generate_payloads
from maml_evidence_tests.policy.conftest import POLICY_B, toml_text
from maml_evidence_tests.samples import BIN, SAMPLE_DECISIONS, SAMPLE_INBOX, ingest_decisions
from maml_evidence_tests.team.conftest import wait_until
from maml_evidence_tests.team.postgres import Cluster
from maml_evidence_tests.team.seaweed import Server

SAMPLES = sorted(str(p) for p in SAMPLE_INBOX.glob("*.json"))


@dataclass
class Machine:
    """One machine of the team: its own local folder and Dagster home, the shared bucket and database."""

    url: str
    local: Path
    server: Server
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def dagster_home(self) -> Path:
        return self.local / "dagster_home"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAML_EVIDENCE_", "DAGSTER_HOME"))}
        return {
            **keep,
            **self.server.env(),
            "MAML_EVIDENCE_HOME": self.url,
            "MAML_EVIDENCE_LOCAL": str(self.local),
            "DAGSTER_HOME": str(self.dagster_home),
            **self.extra,
        }

    def command(self, *args: str) -> list[str]:
        return [str(BIN / "maml-evidence"), *args]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, env=self.env(), timeout=timeout, cwd=self.local
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.local,
            start_new_session=True,
        )


@dataclass
class Team:
    """A bucket home, the machines that use it, and the bucket seen directly (not through the product)."""

    url: str
    bucket: str
    server: Server
    database: str
    tmp: Path

    def machine(self, name: str) -> Machine:
        local = self.tmp / name
        (local / "dagster_home").mkdir(parents=True, exist_ok=True)
        write_postgres_instance(local / "dagster_home", self.database)
        return Machine(self.url, local, self.server)

    @property
    def fs(self) -> Any:  # noqa: ANN401
        return self.server.filesystem()

    def key(self, *parts: str) -> str:
        return "/".join([self.url.removeprefix("s3://"), *parts])

    def objects(self, *parts: str) -> list[str]:
        return sorted(self.fs.find(self.key(*parts)))


@pytest.fixture
def team(cluster: Cluster, seaweed: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Team:
    """A fresh bucket and database; the test process itself reads the home as machine 'here' does."""
    bucket = seaweed.new_bucket()
    made = Team(f"s3://{bucket}/evidence", bucket, seaweed, cluster.new_database(), tmp_path)
    here = made.machine("here")
    for name, value in here.env().items():
        if name.startswith(("AWS_", "MAML_EVIDENCE_", "DAGSTER_HOME")):
            monkeypatch.setenv(name, value)
    return made


def _write_generated(folder: Path, count: int, seed: int) -> dict[str, dict[str, object]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for payload in generate_payloads(count, seed=seed):
        run_id = str(payload["spike_run_id"])
        (folder / f"{run_id}.json").write_text(json.dumps(payload), encoding="utf-8")
        written[run_id] = payload
    return written


def _rows(machine: Machine, sql: str) -> list[list[str]]:
    done = machine.cli("sql", "--format", "csv", sql)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line.split(",") for line in done.stdout.splitlines()[1:] if line]


def test_the_samples_live_in_the_bucket_and_decide_as_on_a_local_home(team: Team) -> None:
    here = team.machine("here")
    done = here.cli("ingest", *SAMPLES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ingest_decisions(done.stdout) == SAMPLE_DECISIONS
    assert "Traceback" not in done.stderr

    # everything that must survive is in the bucket; the machine keeps only its catalog and Dagster home
    for run_id in SAMPLE_DECISIONS:
        pointer = json.loads(team.fs.cat(team.key("payloads", run_id, "current.json")))
        [revision] = pointer["revisions"]
        assert team.fs.exists(team.key("payloads", run_id, f"{revision['sha256']}.json"))
        report = json.loads(team.fs.cat(team.key("reports", run_id, "report.json")))
        assert report["decision"] == SAMPLE_DECISIONS[run_id]
        for name in ("interpretation.md", "effects.png"):
            assert team.fs.exists(team.key("reports", run_id, name)), name
    assert team.objects("tables", "gate_decisions")
    assert not [o for o in team.fs.find(team.key()) if "/." in o.removeprefix(team.key())], "no temporary objects"
    assert sorted(p.name for p in here.local.iterdir()) == [
        "dagster_home",
        "evidence.catalog.json",
        "evidence.duckdb",
        "inbox",
    ]

    rows = _rows(here, "SELECT spike_run_id, decision FROM gate_decisions ORDER BY 1")
    assert dict(map(tuple, rows)) == SAMPLE_DECISIONS  # type: ignore[arg-type]
    # the read-only SQL sandbox holds over the bucket: only the home's tables are readable
    other = here.cli("sql", f"SELECT * FROM read_json('s3://{team.bucket}/evidence/payloads/*/current.json')")
    assert other.returncode != 0 and "reads only the evidence home" in other.stderr, other.stderr

    # an analyst's own DuckDB: the machine's catalog file, with S3 access of its own (s3fs registered)
    import duckdb

    connection = duckdb.connect(str(here.local / "evidence.duckdb"), read_only=True)
    try:
        connection.register_filesystem(team.server.filesystem())
        found = connection.execute("SELECT spike_run_id, decision FROM gate_decisions").fetchall()
    finally:
        connection.close()
    assert dict(found) == SAMPLE_DECISIONS

    again = here.cli("ingest", *SAMPLES)
    assert again.returncode == 0, again.stderr
    assert all("same content as revision 1" in line for line in again.stdout.splitlines())
    doctor = here.cli("doctor")
    assert doctor.returncode == 0 and doctor.stdout.startswith(f"ok: {team.url} is healthy (6 spike runs)"), doctor


def test_the_notebook_api_reads_the_bucket(team: Team) -> None:
    from maml_evidence.notebook import open_evidence

    assert team.machine("here").cli("ingest", *SAMPLES).returncode == 0
    evidence = open_evidence(team.url)
    frame = evidence.sql("SELECT spike_run_id, decision FROM gate_decisions")
    assert dict(zip(frame["spike_run_id"], frame["decision"], strict=True)) == SAMPLE_DECISIONS


def test_hundreds_of_spike_runs_are_ingested_reevaluated_under_a_new_policy_and_queried(team: Team) -> None:
    here = team.machine("here")
    payloads = _write_generated(here.local / "generated", 200, seed=23)
    done = here.cli("ingest", *sorted(str(p) for p in (here.local / "generated").glob("*.json")), timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    before = {run_id: evaluate_feasibility(p)["decision"] for run_id, p in payloads.items()}
    assert ingest_decisions(done.stdout) == before

    # the policy is changed where the team keeps it: in the bucket
    team.fs.pipe(team.key("thresholds.toml"), toml_text(POLICY_B).encode())
    again = here.cli("reevaluate", timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    after = {run_id: evaluate_feasibility(p, policy=POLICY_B)["decision"] for run_id, p in payloads.items()}
    flipped = {run_id for run_id in payloads if before[run_id] != after[run_id]}
    assert flipped, "the new policy must change some decisions for this test to mean anything"

    counts = dict(map(tuple, _rows(here, "SELECT decision, count(*) FROM gate_decisions GROUP BY 1")))
    assert {k: int(v) for k, v in counts.items()} == dict(Counter(after.values()))
    changes = _rows(here, "SELECT spike_run_id, count(*) FROM decision_changes GROUP BY 1")
    assert {run_id: int(n) for run_id, n in changes} == dict.fromkeys(flipped, 1)
    history = _rows(here, "SELECT count(*), count(DISTINCT spike_run_id) FROM decision_history")
    assert history == [[str(2 * len(payloads)), str(len(payloads))]]
    assert here.cli("doctor").returncode == 0


def test_two_machines_ingesting_at_once_lose_and_double_nothing(team: Team) -> None:
    first, second = team.machine("first"), team.machine("second")
    payloads = {
        **_write_generated(first.local / "mine", 20, seed=31),
        **_write_generated(second.local / "mine", 20, seed=32),
    }
    assert len(payloads) == 40, "the two machines must ingest different spike runs"
    processes = [m.popen("ingest", *sorted(str(p) for p in (m.local / "mine").glob("*.json"))) for m in (first, second)]
    outputs = [p.communicate(timeout=900) for p in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stdout + stderr

    expected = {run_id: evaluate_feasibility(p)["decision"] for run_id, p in payloads.items()}
    for machine in (first, second):
        rows = _rows(machine, "SELECT spike_run_id, decision FROM gate_decisions")
        assert dict(map(tuple, rows)) == expected  # type: ignore[arg-type]
    for table in ("spike_runs", "gate_decisions", "decision_history", "cost_metrics", "evidence_strength"):
        [[total, distinct]] = _rows(first, f"SELECT count(*), count(DISTINCT spike_run_id) FROM {table}")
        assert (int(total), int(distinct)) == (40, 40), table
    assert first.cli("doctor").returncode == 0 and second.cli("doctor").returncode == 0


def test_an_ingest_killed_mid_run_is_finished_by_the_next_one_exactly_once(team: Team) -> None:
    here = team.machine("here")
    payloads = _write_generated(here.local / "generated", 24, seed=5)
    files = sorted(str(p) for p in (here.local / "generated").glob("*.json"))
    process = here.popen("ingest", *files)
    metrics = team.key("tables", "adaptation_metrics")

    def started() -> bool:
        return any("/b-" in o for o in team.fs.find(metrics))

    wait_until(started, 300, "the first batch object of the ingest")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not any("/b-" in o for o in team.fs.find(team.key("tables", "gate_decisions"))), "killed too late"

    again = here.cli("ingest", *files, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    expected = {run_id: evaluate_feasibility(p)["decision"] for run_id, p in payloads.items()}
    assert dict(map(tuple, _rows(here, "SELECT spike_run_id, decision FROM gate_decisions"))) == expected  # type: ignore[arg-type]
    for table in ("spike_runs", "adaptation_summary", "cost_metrics", "gate_decisions", "decision_history"):
        [[total, distinct]] = _rows(here, f"SELECT count(*), count(DISTINCT spike_run_id) FROM {table}")
        assert (int(total), int(distinct)) == (24, 24), table
    assert here.cli("doctor").returncode == 0


def test_doctor_names_a_damaged_object_and_repair_rebuilds_its_spike_runs(team: Team) -> None:
    here = team.machine("here")
    assert here.cli("ingest", *SAMPLES).returncode == 0
    [damaged] = [o for o in team.objects("tables", "gate_checks") if o.endswith(".parquet") and "/b-" in o]
    team.fs.pipe(damaged, b"PAR1 this is not a parquet file")

    found = here.cli("doctor")
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"s3://{damaged}" in found.stdout and "unreadable gate_checks file" in found.stdout
    assert all(run_id in found.stdout for run_id in SAMPLE_DECISIONS)
    assert "Traceback" not in found.stderr
    # the other tables still answer while the damage is there
    assert len(_rows(here, "SELECT * FROM gate_decisions")) == 6

    repaired = here.cli("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert team.fs.exists(team.key("damaged", "gate_checks", damaged.rsplit("/", 1)[1])), "set aside, not deleted"
    assert not team.fs.exists(damaged)
    assert here.cli("doctor").returncode == 0
    checks = _rows(here, "SELECT count(DISTINCT spike_run_id) FROM gate_checks")
    assert checks == [["6"]]


def _bucket_state(store: Any, fs: Any) -> dict[str, object]:  # noqa: ANN401
    """``test_crash_boundaries.state`` for a home in a bucket: decisions, history, flips and report files."""
    decisions = store.decisions()
    connection = store.connect()
    try:
        history: dict[str, list[tuple[object, ...]]] = {}
        for run_id, decision, version in connection.execute(
            "SELECT spike_run_id, decision, policy_version FROM decision_history ORDER BY evaluated_at"
        ).fetchall():
            history.setdefault(run_id, []).append((decision, version))
        changes: dict[str, list[tuple[object, ...]]] = {}
        for run_id, *entry in connection.execute(
            "SELECT spike_run_id, from_decision, to_decision, to_policy_version, cause_check FROM decision_changes "
            "ORDER BY changed_at"
        ).fetchall():
            changes.setdefault(run_id, []).append(tuple(entry))
    finally:
        connection.close()
    reports = {}
    for run_id in decisions:
        folder = f"{store.home.report_dir(run_id)}".removeprefix("s3://")
        report = json.loads(fs.cat(f"{folder}/report.json"))
        title = fs.cat(f"{folder}/interpretation.md").decode().splitlines()[0]
        reports[run_id] = (report["decision"], report["provenance"]["policy_version"], title)
    return {"decisions": decisions, "history": history, "changes": changes, "reports": reports}


def test_a_reevaluation_killed_after_any_put_is_finished_or_named_by_the_next_command(team: Team) -> None:
    """SIGKILL right after each object the re-evaluation PUTs (a bucket's write boundaries), then recovery: the
    next command finishes the work and every decision, history row, flip and report agrees, recorded once."""
    from maml_evidence.policy import load_policy
    from maml_evidence.store import EvidenceStore, remote
    from maml_evidence.store.doctor import diagnose
    from maml_evidence.store.reevaluation import reevaluate
    from maml_evidence_tests.faults.test_crash_boundaries import assert_agrees, crash_outcome, expected_flips

    pristine = f"{team.bucket}/pristine"
    here = team.machine("here")
    setup = Machine(f"s3://{pristine}", here.local / "pristine", team.server)
    setup.dagster_home.mkdir(parents=True)
    write_postgres_instance(setup.dagster_home, team.database)
    assert setup.cli("ingest", *SAMPLES).returncode == 0
    team.fs.pipe(f"{pristine}/thresholds.toml", toml_text(POLICY_B).encode())
    samples = [json.loads(Path(path).read_text(encoding="utf-8")) for path in SAMPLES]
    old = {str(p["spike_run_id"]): evaluate_feasibility(p) for p in samples}
    new = {str(p["spike_run_id"]): evaluate_feasibility(p, policy=POLICY_B) for p in samples}
    v0 = load_policy(here.local / "missing.toml").version
    vb = EvidenceStore(f"s3://{pristine}").policy().version
    flips = expected_flips(old, new, vb)
    puts = ((remote, "upload"),)

    def fresh(name: str) -> EvidenceStore:
        team.fs.copy(pristine, f"{team.bucket}/{name}", recursive=True)
        return EvidenceStore(f"s3://{team.bucket}/{name}")

    store = fresh("count")
    boundaries = run_killed_after(None, lambda: reevaluate(EvidenceStore(str(store.home.root))), puts)
    assert boundaries is not None and boundaries > 20  # rows, journal, commit, 18 report files, policy record
    assert_agrees(_bucket_state(store, team.fs), new, vb, flips)

    # Every boundary of this protocol is swept on a local home (faults/test_crash_boundaries.py); over HTTP each
    # costs 20-45 s, so here five spread evenly from the first PUT to the last, crossing the commit.
    outcomes = {"old": 0, "new": 0, "named": 0}
    for kill_after in sorted({1 + (boundaries - 1) * i // 4 for i in range(5)}):
        store = fresh(f"killed-{kill_after}")
        root = str(store.home.root)
        assert run_killed_after(kill_after, lambda: reevaluate(EvidenceStore(root)), puts) is None  # noqa: B023
        diagnosis = diagnose(store)
        read = lambda: _bucket_state(store, team.fs)  # noqa: B023, E731
        outcomes[crash_outcome(diagnosis.errors, read, (old, v0), (new, vb, flips))] += 1
        assert reevaluate(store).report_errors == [], kill_after
        assert_agrees(_bucket_state(store, team.fs), new, vb, flips)
        assert diagnose(store).findings == [], kill_after
    assert outcomes["old"] > 0 and outcomes["named"] > 0, outcomes


@pytest.mark.parametrize(
    ("home", "expected"),
    [
        ("s3://Bad_Bucket/x", "expected s3://BUCKET[/PREFIX] with a bucket name of 3-63 lowercase letters"),
        ("s3://ab", "got 's3://ab'"),
        ("s3://evidence/a//b", "has an empty, '.' or '..' part"),
        ("s3://evidence/../b", "has an empty, '.' or '..' part"),
    ],
)
def test_a_malformed_bucket_url_is_one_line_naming_it(home: str, expected: str, tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAML_EVIDENCE_")}
    done = subprocess.run(
        [str(BIN / "maml-evidence"), "sql", "SELECT 1"],
        capture_output=True,
        text=True,
        env={**env, "MAML_EVIDENCE_HOME": home, "MAML_EVIDENCE_LOCAL": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_bucket_home_without_a_shared_lock_or_store_is_refused_naming_what_to_set(
    seaweed: Server, tmp_path: Path
) -> None:
    """No Postgres for the locks: refused before anything is written (a local lock file would not be seen by
    another machine). An unreachable store: one line naming the endpoint and the variables, within seconds."""
    bucket = seaweed.new_bucket()
    machine = Machine(f"s3://{bucket}/evidence", tmp_path / "local", seaweed)
    machine.local.mkdir()
    done = machine.cli("ingest", SAMPLES[0])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "need a shared lock" in done.stderr and "MAML_EVIDENCE_LOCK_URL=postgresql://" in done.stderr
    assert "Traceback" not in done.stderr
    assert not [o for o in seaweed.filesystem().find(bucket) if "/payloads/" in o], "nothing may be stored"

    machine.extra = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    started = time.monotonic()
    done = machine.cli("sql", "SELECT 1")
    assert done.returncode == 2 and "cannot reach the bucket" in done.stderr, done.stderr
    assert "http://127.0.0.1:1" in done.stderr and "AWS_ACCESS_KEY_ID" in done.stderr
    assert time.monotonic() - started < 30


def test_compaction_in_the_bucket_keeps_every_row_once_and_deletes_merged_objects_after_the_grace(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maml_evidence.store import EvidenceStore
    from maml_evidence.store.doctor import diagnose
    from maml_evidence.store.schema import TABLES
    from maml_evidence.store.tables import GRACE_ENV

    here = team.machine("here")
    assert here.cli("ingest", *SAMPLES).returncode == 0
    team.fs.pipe(team.key("thresholds.toml"), toml_text(POLICY_B).encode())
    assert here.cli("reevaluate").returncode == 0
    store = EvidenceStore(team.url)
    tables = store.tables

    def every_row() -> dict[str, list[str]]:
        connection = store.connect()
        try:
            return {n: sorted(map(repr, connection.execute(f"FROM {n}").fetchall())) for n in TABLES}
        finally:
            connection.close()

    before = every_row()
    merged = {name: tables.data_files(name) for name in TABLES if len(tables.data_files(name)) > 1}
    assert {"gate_decisions", "decision_history", "gate_checks"} <= merged.keys(), "nothing to compact"
    for name in merged:
        assert tables.compact(name)
        assert set(tables.superseded(name)) == set(merged[name]), name
        assert len(tables.live_files(name)) == 1, name
    assert every_row() == before  # the merged objects are still there, their rows hidden
    monkeypatch.setenv(GRACE_ENV, "0")
    for name, files in merged.items():
        tables.compact_if_needed(name)
        assert not any(team.fs.exists(str(f).removeprefix("s3://")) for f in files), name
        assert tables.superseded(name) == {}, name
    assert every_row() == before
    assert diagnose(store).findings == []


def test_the_local_inbox_quarantines_into_the_bucket_and_leaves_what_it_cannot_copy(team: Team) -> None:
    here = team.machine("here")
    inbox = here.local / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "broken.json").write_text('{"spike_run_id": "broken", "baseline": ', encoding="utf-8")
    (inbox / "link.json").symlink_to(SAMPLES[0])
    (inbox / "good.json").write_bytes(Path(SAMPLES[0]).read_bytes())
    done = here.cli("ingest")
    assert done.returncode == 1, done.stdout + done.stderr  # something was quarantined
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line and not line.startswith(" ")}
    assert "QUARANTINED" in lines["broken.json"]
    assert f"-> s3://{team.bucket}/evidence/quarantine/" in lines["broken.json"]
    assert "links are never followed" in lines["link.json"] and "left in place, reported once" in lines["link.json"]
    [moved] = [o for o in team.objects("quarantine") if o.endswith("broken.json")]
    assert team.fs.cat(moved) == b'{"spike_run_id": "broken", "baseline": '
    reason = team.fs.cat(moved + ".reason.txt").decode()
    assert f"file: {inbox / 'broken.json'}" in reason and "moved_to: s3://" in reason
    assert sorted(p.name for p in inbox.iterdir()) == ["good.json", "link.json"]  # the rejected one moved out
    assert json.loads(team.fs.cat(team.key("reports", "2026-10-06-support-bots-enable", "report.json")))
    again = here.cli("ingest")
    assert again.returncode == 0 and "already reported" in again.stdout, again.stdout + again.stderr
