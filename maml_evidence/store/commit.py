"""The decision commit protocol: one implementation for ingest (``decision_report``) and bulk re-evaluation.

A batch of decisions is recorded in five steps, and a process may die after any of them:

1. rows: ``gate_checks``, ``gate_decisions``, ``decision_history``, ``decision_changes`` and
   ``evidence_strength`` files carrying the batch id (any number of files, from any number of forked workers);
2. journal: ``journal/<batch>.json`` names the batch and the spike runs whose report files it rewrites;
3. commit: one ``decision_commits`` row, renamed into place, makes every row of the batch visible at once;
4. reports: ``effects.png``, ``interpretation.md``, then ``report.json`` (the completion marker) of each spike run
   in the journal;
5. the journal is removed.

A crash before step 3 leaves rows that no view shows: the store still holds the earlier decisions, so the next
``ingest`` (unfinished evaluation) or ``reevaluate`` (decisions under an older policy) redoes the work. A crash
after step 3 leaves a journal that the next command finishes (``recover``). Committers hold the decisions lock
from step 1 to step 5, so a journal found by a lock holder was left by a dead process.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from maml_evidence.drafts import draw_ahead
from maml_evidence.pictures import EFFECTS_FILE, write_effects
from maml_evidence.store.files import atomic_write_text, file_lock
from maml_evidence.store.home import StoreError
from maml_evidence.store.schema import COMMITS
from maml_evidence.strength import interpretation_with_evidence

if TYPE_CHECKING:
    from maml_evidence.store.evidence import EvidenceStore

LOG = logging.getLogger("maml_evidence")
Row = dict[str, object]


@dataclass
class DecisionRows:
    """The rows one writer adds to a batch; ``changes`` only for decisions a policy change flipped."""

    decisions: list[Row] = field(default_factory=list)
    checks: list[Row] = field(default_factory=list)
    history: list[Row] = field(default_factory=list)
    changes: list[Row] = field(default_factory=list)
    evidence: list[Row] = field(default_factory=list)  # evidence_strength rows (their grade is judged too)


@dataclass(frozen=True)
class ReportTask:
    """A spike run whose report files a batch rewrites, and the policy and trigger they are written under."""

    spike_run_id: str
    policy_version: str
    trigger: str


def write_rows(store: EvidenceStore, batch: str, rows: DecisionRows, *, compact: bool = True) -> None:
    """Step 1: add rows to ``batch``; invisible until the batch commits."""
    keys = [str(row["spike_run_id"]) for row in rows.decisions]
    tables = store.tables
    tables.write("gate_checks", rows.checks, keys, compact=compact, batch=batch)
    tables.write("gate_decisions", rows.decisions, keys, compact=compact, batch=batch)
    tables.write("decision_history", rows.history, keys, compact=compact, batch=batch)
    if rows.changes:
        changed = [str(row["spike_run_id"]) for row in rows.changes]
        tables.write("decision_changes", rows.changes, changed, compact=compact, batch=batch)
    if rows.evidence:
        measured = [str(row["spike_run_id"]) for row in rows.evidence]
        tables.write("evidence_strength", rows.evidence, measured, compact=compact, batch=batch)


def commit(
    store: EvidenceStore,
    batch: str,
    kind: str,
    evaluated_at: datetime,
    policy_versions: Sequence[str],
    spike_run_count: int,
    reports: Sequence[ReportTask],
) -> list[str]:
    """Steps 2-5 (the caller wrote the rows and holds the decisions lock); returns report errors."""
    journal = store.home.journal / f"{batch}.json"
    entry = {
        "batch": batch,
        "kind": kind,
        "evaluated_at": evaluated_at.isoformat(),
        "reports": [[t.spike_run_id, t.policy_version, t.trigger] for t in reports],
    }
    atomic_write_text(journal, json.dumps(entry))
    row = {
        "batch": batch,
        "kind": kind,
        "policy_versions": sorted(set(policy_versions)),
        "spike_run_count": spike_run_count,
        "committed_at": evaluated_at,
    }
    store.tables.write(COMMITS, [row], [batch], batch=batch)
    errors = write_reports(store, reports, evaluated_at)
    journal.unlink(missing_ok=True)
    return errors


def write_reports(store: EvidenceStore, tasks: Sequence[ReportTask], evaluated_at: datetime) -> list[str]:
    """Step 4: effects.png, interpretation.md, then report.json of each spike run; unreadable payloads are reported.

    Every report is judged first, so the charts not already drawn ahead start in a worker process while the
    files are written. A spike run whose stored payload cannot be read keeps its old files and is returned (with
    a warning) instead of failing the whole batch.
    """
    errors: list[str] = []
    by_version: dict[str, list[ReportTask]] = {}
    for task in tasks:
        by_version.setdefault(task.policy_version, []).append(task)
    reports: list[tuple[dict[str, object], Path]] = []
    for version, group in by_version.items():
        policy = store.policy_for_version(version)
        for task in group:
            try:
                [evaluation] = store.evaluate([task.spike_run_id], policy)
            except StoreError as exc:
                LOG.warning("report of %s not refreshed: %s (run `maml-evidence doctor`)", task.spike_run_id, exc)
                errors.append(f"{task.spike_run_id}: {exc}")
                continue
            report = stamped_report(evaluation.report, evaluated_at, task.trigger)
            reports.append((report, store.home.report_dir(task.spike_run_id)))
    if len(reports) > 1:
        draw_ahead((report, folder / EFFECTS_FILE) for report, folder in reports)
    # The workers draw from the front of the queue, in this order; written from the back, this process takes back
    # (and draws itself) the charts no worker has started, and the two meet once instead of waiting in lockstep.
    for report, folder in reversed(reports):
        chart = write_effects(report, folder)  # a drawing error is only logged, and the chart is not linked
        atomic_write_text(folder / "interpretation.md", interpretation_with_evidence(report, chart=chart is not None))
        atomic_write_text(folder / "report.json", json.dumps(report, indent=2) + "\n")
    return errors


def stamped_report(report: dict[str, object], evaluated_at: datetime, trigger: str) -> dict[str, object]:
    """The report as stored: its provenance section says when and why this decision was recorded."""
    provenance = {**report["provenance"], "evaluated_at": evaluated_at.isoformat(), "trigger": trigger}  # type: ignore[dict-item]
    return {**report, "provenance": provenance}


def pending_journals(store: EvidenceStore) -> list[dict[str, object]]:
    """Journals of batches whose writer has not finished (readable ones; a damaged journal is skipped)."""
    found = []
    for path in sorted(store.home.journal.glob("*.json")):
        try:
            found.append({**json.loads(path.read_text(encoding="utf-8")), "path": str(path)})
        except (OSError, ValueError) as exc:
            LOG.warning("unreadable commit journal %s: %s", path, exc)
    return found


def recover(store: EvidenceStore) -> list[str]:
    """Finish what dead committers left (call with the decisions lock held); returns what was done.

    A committed batch gets its remaining reports written (only for spike runs whose current decision is still
    that batch's); an uncommitted one is dropped: its rows never become visible and the work is redone.
    """
    journals = pending_journals(store)
    if not journals:
        return []
    committed, current = _commit_state(store, [str(j["batch"]) for j in journals])
    done = []
    for journal in journals:
        batch = str(journal["batch"])
        path = store.home.journal / f"{batch}.json"
        if batch not in committed:
            path.unlink(missing_ok=True)
            done.append(f"dropped uncommitted batch {batch} ({journal['kind']}) left by a dead process")
            continue
        at = datetime.fromisoformat(str(journal["evaluated_at"]))
        tasks = [
            ReportTask(run_id, version, trigger)
            for run_id, version, trigger in journal["reports"]  # type: ignore[attr-defined]
            if current.get(run_id) == at
        ]
        errors = write_reports(store, tasks, at)
        path.unlink(missing_ok=True)
        done.append(
            f"finished batch {batch} ({journal['kind']}): wrote the reports of {len(tasks) - len(errors)} spike runs"
            + (f"; {len(errors)} could not be written" if errors else "")
        )
    for line in done:
        LOG.warning("%s", line)
    return done


def _commit_state(store: EvidenceStore, batches: list[str]) -> tuple[set[str], dict[str, datetime]]:
    """Which of ``batches`` are committed, and when each spike run's current decision was made."""
    connection = store.connect()
    try:
        found = connection.execute("SELECT batch FROM decision_commits WHERE list_contains(?, batch)", [batches])
        committed = {batch for (batch,) in found.fetchall()}
        current = dict(connection.execute("SELECT spike_run_id, evaluated_at FROM gate_decisions").fetchall())
    finally:
        connection.close()
    return committed, current


@contextlib.contextmanager
def decisions_lock(store: EvidenceStore) -> Iterator[list[str]]:
    """Hold the decisions lock (one committer at a time) after finishing any dead committer's batch."""
    with file_lock(store.home.locks / "decisions.lock"):
        yield recover(store)
