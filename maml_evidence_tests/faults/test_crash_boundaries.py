"""A crash at any write boundary of re-evaluation or ingest is finished or named by the next command.

For every boundary (each atomic rename the command makes, in order) the command is killed right there; then:
``doctor`` either finds the store consistent (all of the old state, or all of the new) or names a disagreement;
and after the next command (``reevaluate``, ``ingest`` or ``doctor --repair``) ``gate_decisions``, the last
``decision_history`` row, ``decision_changes`` and the report files all agree, with nothing recorded twice.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from maml_evidence.gate import flip_cause
from maml_evidence.policy import load_policy
from maml_evidence.store import EvidenceStore
from maml_evidence.store.doctor import diagnose, repair_records
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence_tests.faults.crashpoint import run_killed_after
from maml_evidence_tests.policy.conftest import POLICY_B, Home, copy_home, oracle


def state(home: Home) -> dict[str, object]:
    """What must agree: per spike run, the current decision, its history, its flips and its report files."""
    decisions = home.store.decisions()
    history: dict[str, list[tuple[object, ...]]] = {}
    for row in home.rows("SELECT * FROM decision_history ORDER BY evaluated_at"):
        history.setdefault(str(row["spike_run_id"]), []).append((row["decision"], row["policy_version"]))
    changes: dict[str, list[tuple[object, ...]]] = {}
    for row in home.rows("SELECT * FROM decision_changes ORDER BY changed_at"):
        entry = (row["from_decision"], row["to_decision"], row["to_policy_version"], row["cause_check"])
        changes.setdefault(str(row["spike_run_id"]), []).append(entry)
    reports = {}
    for run_id in decisions:
        folder = home.evidence / "reports" / run_id
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        title = (folder / "interpretation.md").read_text(encoding="utf-8").splitlines()[0]
        reports[run_id] = (report["decision"], report["provenance"]["policy_version"], title)
    return {"decisions": decisions, "history": history, "changes": changes, "reports": reports}


def assert_agrees(found: dict[str, object], expected: dict[str, dict], version: str, flips: dict) -> None:
    """Every spike run decided as ``expected`` under ``version``, recorded once, each flip exactly once."""
    decisions, history, changes, reports = (found[k] for k in ("decisions", "history", "changes", "reports"))
    assert set(decisions) == set(expected)  # type: ignore[arg-type]
    for run_id, report in expected.items():
        row = decisions[run_id]  # type: ignore[index]
        assert (row["decision"], row["policy_version"]) == (report["decision"], version), run_id
        assert history[run_id][-1] == (report["decision"], version), run_id  # type: ignore[index]
        # report files: the decision; rewritten under the new policy exactly when the decision flipped
        assert reports[run_id][0] == report["decision"], run_id  # type: ignore[index]
        assert f"`{report['decision']}`" in reports[run_id][2], run_id  # type: ignore[index]
        assert changes.get(run_id, []) == flips.get(run_id, []), run_id  # type: ignore[union-attr]


def crash_outcome(errors: list[object], read_state: Callable[[], dict[str, object]], old: tuple, new: tuple) -> str:
    """After a crash: "named" when doctor finds a problem; else the store is wholly "old" or wholly "new"."""
    if errors:
        return "named"
    found = read_state()  # doctor sees no problem: then there is none
    try:
        assert_agrees(found, *old, {})
        return "old"
    except AssertionError:
        assert_agrees(found, *new)
        return "new"


def expected_flips(old: dict[str, dict], new: dict[str, dict], version: str) -> dict[str, list[tuple[object, ...]]]:
    """Per spike run the oracle flips: its one decision_changes row (from, to, policy, cause)."""
    return {
        run_id: [
            (old[run_id]["decision"], new[run_id]["decision"], version,
             flip_cause(old[run_id]["failed_check"], new[run_id]["failed_check"]))
        ]
        for run_id in old
        if old[run_id]["decision"] != new[run_id]["decision"]
    }  # fmt: skip


@pytest.fixture
def policy_changed(template: Home, tmp_path: Path) -> tuple[Home, Path]:
    """A copy of the template home with POLICY_B written, and a pristine copy of it to restore from."""
    home = copy_home(template, tmp_path / "work")
    home.write_policy(POLICY_B)
    pristine = tmp_path / "pristine"
    shutil.copytree(home.evidence, pristine)
    return home, pristine


def restore(home: Home, pristine: Path) -> None:
    shutil.rmtree(home.evidence)
    shutil.copytree(pristine, home.evidence)


def test_reevaluation_killed_at_every_write_boundary_is_finished_by_the_next_one(
    policy_changed: tuple[Home, Path],
) -> None:
    home, pristine = policy_changed
    old, new = oracle(), oracle(POLICY_B)
    v0, vb = load_policy(pristine / "missing.toml").version, load_policy(home.policy_file).version
    flips = expected_flips(old, new, vb)
    assert len(flips) == 6
    before = state(home)
    assert_agrees(before, old, v0, {})

    boundaries = run_killed_after(None, lambda: reevaluate(EvidenceStore(home.evidence)))
    assert boundaries is not None and boundaries > 20  # rows, journal, commit, 12 report files, policy record
    assert_agrees(state(home), new, vb, flips)

    outcomes = {"old": 0, "new": 0, "named": 0}
    for kill_after in range(1, boundaries + 1):
        restore(home, pristine)
        assert run_killed_after(kill_after, lambda: reevaluate(EvidenceStore(home.evidence))) is None
        store = EvidenceStore(home.evidence)
        diagnosis = diagnose(store)
        outcomes[crash_outcome(diagnosis.errors, lambda: state(home), (old, v0), (new, vb, flips))] += 1
        # the next command finishes the work: every decision, history row, flip and report agrees
        if kill_after % 2 == 0:  # every other time, doctor --repair's record repair goes first
            repair_records(store, diagnosis)
        assert reevaluate(store).report_errors == [], kill_after
        assert_agrees(state(home), new, vb, flips)
        assert diagnose(store).findings == [], kill_after
    # the sweep really crossed the commit: some crashes left the old state, some were named and finished
    assert outcomes["old"] > 0 and outcomes["named"] > 0, outcomes


def _new_file(folder: Path, known: set[str]) -> bool:
    return any(p.name not in known and p.suffix == ".parquet" for p in folder.iterdir())


@pytest.mark.parametrize("kill_when", ["gate_decisions", "decision_commits"])
def test_killed_reevaluate_command_is_named_by_doctor_and_finished_by_the_next_one(
    policy_changed: tuple[Home, Path], kill_when: str
) -> None:
    """The issue's scenario through the real commands: SIGKILL as a batch file appears, before or after commit."""
    import os
    import signal
    import subprocess
    import time

    import dagster as dg

    home, _pristine = policy_changed
    old, new, vb = oracle(), oracle(POLICY_B), load_policy(home.policy_file).version
    flips = expected_flips(old, new, vb)
    folder = home.evidence / "tables" / kill_when
    known = {p.name for p in folder.iterdir()}
    process = subprocess.Popen(
        [str(Path(__import__("sys").executable).parent / "maml-evidence"), "reevaluate", "--force", "--home",
         str(home.evidence)],
        env=home.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not _new_file(folder, known):
        assert process.poll() is None, "the re-evaluation finished before it could be killed"
        assert time.monotonic() < deadline, "no batch file appeared"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    instance = home.instance()
    try:
        runs = instance.get_runs(dg.RunsFilter(job_name="reevaluate_history"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.STARTED]
        killed_run = runs[0].run_id
    finally:
        instance.dispose()

    doctor = home.cli("doctor")
    if kill_when == "decision_commits":  # committed, reports not all written: doctor names it and exits 1
        assert doctor.returncode == 1, doctor.stdout
        assert "interrupted" in doctor.stdout and "Traceback" not in doctor.stderr

    again = home.cli("reevaluate")
    assert again.returncode == 0, again.stdout + again.stderr
    if kill_when == "decision_commits":
        assert "recovered: finished batch" in again.stdout
    else:
        assert "6 decisions changed" in again.stdout
    assert_agrees(state(home), new, vb, flips)
    assert home.cli("doctor").returncode == 0

    instance = home.instance()
    try:
        killed = instance.get_run_by_id(killed_run)
        assert killed is not None and killed.status == dg.DagsterRunStatus.FAILURE
    finally:
        instance.dispose()


def test_ingest_killed_at_every_write_boundary_is_finished_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ingest (intake, the Dagster job, the decision commit) killed after each of its renames in turn."""
    from maml_evidence import evaluate_feasibility
    from maml_evidence.headless import ingest
    from maml_evidence_tests.samples import SAMPLE_DECISIONS, SAMPLE_INBOX

    run_id = next(iter(SAMPLE_DECISIONS))
    source = SAMPLE_INBOX / f"{run_id}.json"
    expected = evaluate_feasibility(json.loads(source.read_text(encoding="utf-8")))
    home = Home(tmp_path / "evidence", tmp_path / "dagster_home")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the evidence home's own instance, as the command uses

    def fresh() -> None:
        shutil.rmtree(tmp_path, ignore_errors=True)
        (home.evidence / "inbox").mkdir(parents=True)
        shutil.copy(source, home.evidence / "inbox" / source.name)

    def assert_done() -> None:
        store = EvidenceStore(home.evidence)
        assert store.incomplete() == [] and store.failures() == {}
        found = state(home)
        decided = {k: v["decision"] for k, v in found["decisions"].items()}  # type: ignore[union-attr]
        assert decided == {run_id: expected["decision"]}
        assert len(found["history"][run_id]) == 1  # type: ignore[index]  # decided once, never twice
        assert found["reports"][run_id][0] == expected["decision"]  # type: ignore[index]
        assert diagnose(store).findings == []

    fresh()
    boundaries = run_killed_after(None, lambda: ingest(EvidenceStore(home.evidence).ensure()))
    assert boundaries is not None and boundaries > 15
    assert_done()
    for kill_after in range(1, boundaries + 1):
        fresh()
        assert run_killed_after(kill_after, lambda: ingest(EvidenceStore(home.evidence).ensure())) is None
        store = EvidenceStore(home.evidence).ensure()
        # doctor sees nothing wrong: then nothing was accepted yet, or all is done
        if not diagnose(store).findings and store.registry.known_ids():
            assert_done()
        report = ingest(EvidenceStore(home.evidence).ensure())  # the next command finishes it
        assert [r.error for r in report.runs if not r.success] == [], kill_after
        assert_done()
