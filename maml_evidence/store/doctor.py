"""``maml-evidence doctor``: find damaged evidence and set it aside so it can be rebuilt from stored payloads.

The stored payload revisions are the source of truth; every table row is derived from them. A damaged
table file is therefore moved to ``damaged/`` (never deleted) and its spike runs are re-evaluated.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from maml_evidence.gate import flip_cause
from maml_evidence.store.catalog import catalog_problem, query
from maml_evidence.store.commit import ReportTask, commit, decisions_lock, pending_journals, write_reports
from maml_evidence.store.evidence import EvidenceStore
from maml_evidence.store.files import move
from maml_evidence.store.home import StoreError
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import KEYS_SUFFIX, Damage, new_batch_id, readable

ORPHAN_AGE_SECONDS = 600


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    subject: str
    message: str
    spike_run_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        runs = f" [spike runs: {', '.join(self.spike_run_ids[:10])}{' ...' if len(self.spike_run_ids) > 10 else ''}]"
        return f"{self.severity.upper():7} {self.subject}: {self.message}{runs if self.spike_run_ids else ''}"


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    unevaluated: list[str] = field(default_factory=list)
    # spike runs whose report files disagree with their current decision: rewritten from it by --repair
    stale_reports: list[ReportTask] = field(default_factory=list)
    report_times: dict[str, datetime] = field(default_factory=dict)
    # spike runs whose tables disagree with each other: re-evaluated by --repair
    disagreeing: list[str] = field(default_factory=list)
    # decision flips recorded in decision_history without their decision_changes row: re-created by --repair
    missing_changes: list[dict[str, object]] = field(default_factory=list)
    journals: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def _full_read_problem(path: Path) -> str | None:
    try:
        with readable(path) as source:
            pq.read_table(source)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - any decoding failure is damage to report
        return str(exc).splitlines()[0][:200]
    return None


def diagnose(store: EvidenceStore) -> Diagnosis:
    """Check the catalog's format, every table file (footer and full read), every payload revision and report.

    Files a compaction superseded are readable and hidden by the views: they are not damage.
    """
    result = Diagnosis()
    problem = catalog_problem(store.home)
    if problem:
        result.findings.append(Finding("error", str(store.home.catalog), problem))
    tables = store.tables
    for name in TABLES:
        healthy, damaged = tables.scan(name)
        for path in healthy[1:]:
            problem = _full_read_problem(path)
            if problem:
                damaged.append(Damage(name, path, tuple(tables.keys_of(path)), problem))
        for damage in damaged:
            result.damage.append(damage)
            result.findings.append(
                Finding("error", str(damage.path), f"unreadable {name} file: {damage.error}", damage.keys)
            )
        now = time.time()
        for leftover in tables.directory(name).glob(".*.partial"):
            if now - leftover.stat().st_mtime > ORPHAN_AGE_SECONDS:
                result.orphans.append(leftover)
                result.findings.append(Finding("warning", str(leftover), "temporary file left by an interrupted write"))
    for run_id in store.registry.known_ids():
        try:
            revision = store.registry.current(run_id)
            if revision is not None:
                store.registry.read(revision)
        except StoreError as exc:
            result.findings.append(Finding("error", run_id, str(exc), (run_id,)))
    _check_agreement(store, result)
    for batch in pending_journals(store):
        result.journals.append(str(batch["batch"]))
        result.findings.append(
            Finding(
                "error",
                str(batch["path"]),
                f"a {batch['kind']} batch was interrupted (its process died); "
                "the next ingest, reevaluate or doctor --repair finishes it",
            )
        )
    for run_id, reason in store.failures().items():
        result.findings.append(Finding("error", run_id, f"its last evaluation failed: {reason}", (run_id,)))
    result.unevaluated = store.incomplete()
    if result.unevaluated:
        result.findings.append(
            Finding(
                "warning",
                "gate",
                "stored spike runs whose evaluation is missing or incomplete",
                tuple(result.unevaluated),
            )
        )
    return result


AGREEMENT_SQL = {
    "history": """
        WITH last AS (
            SELECT * FROM decision_history
            QUALIFY row_number() OVER (PARTITION BY spike_run_id ORDER BY evaluated_at DESC) = 1)
        SELECT d.spike_run_id, d.decision, d.policy_version, l.decision, l.policy_version
        FROM gate_decisions d LEFT JOIN last l USING (spike_run_id)
        WHERE l.spike_run_id IS NULL OR l.decision IS DISTINCT FROM d.decision
           OR l.policy_version IS DISTINCT FROM d.policy_version OR l.evaluated_at IS DISTINCT FROM d.evaluated_at
        ORDER BY 1""",
    "evidence": """
        SELECT d.spike_run_id FROM gate_decisions d LEFT JOIN evidence_strength e USING (spike_run_id)
        WHERE e.spike_run_id IS NULL ORDER BY 1""",
    "cost": """
        SELECT d.spike_run_id, d.gpu_hour_usd, c.gpu_hour_usd
        FROM gate_decisions d JOIN cost_metrics c USING (spike_run_id)
        WHERE c.gpu_hour_usd IS DISTINCT FROM d.gpu_hour_usd ORDER BY 1""",
    "flips": """
        WITH h AS (
            SELECT spike_run_id, decision, failed_check, policy_version, trigger, evaluated_at,
                   lag(decision) OVER w AS prev_decision, lag(failed_check) OVER w AS prev_failed_check,
                   lag(policy_version) OVER w AS prev_policy_version
            FROM decision_history WINDOW w AS (PARTITION BY spike_run_id ORDER BY evaluated_at)),
        expected AS (
            SELECT * FROM h
            WHERE trigger = 're-evaluation' AND prev_decision IS NOT NULL AND prev_decision != decision),
        counted AS (
            SELECT spike_run_id, changed_at, count(*) AS n, any_value(from_decision) AS from_decision,
                   any_value(to_decision) AS to_decision
            FROM decision_changes GROUP BY ALL)
        SELECT coalesce(e.spike_run_id, c.spike_run_id) AS spike_run_id, e.spike_run_id IS NOT NULL AS in_history,
               c.n, e.prev_decision, e.decision, e.prev_failed_check, e.failed_check, e.prev_policy_version,
               e.policy_version, coalesce(e.evaluated_at, c.changed_at) AS flip_at
        FROM expected e FULL OUTER JOIN counted c ON e.spike_run_id = c.spike_run_id AND e.evaluated_at = c.changed_at
        WHERE e.spike_run_id IS NULL OR c.spike_run_id IS NULL OR c.n > 1
           OR e.prev_decision != c.from_decision OR e.decision != c.to_decision
        ORDER BY 1, flip_at""",
    "current": "SELECT spike_run_id, decision, policy_version, trigger, evaluated_at FROM gate_decisions ORDER BY 1",
}


def _check_agreement(store: EvidenceStore, result: Diagnosis) -> None:
    """gate_decisions, the last decision_history row, decision_changes, cost_metrics and the report files agree."""
    connection = store.connect()
    try:
        found = {name: query(connection, sql).fetchall() for name, sql in AGREEMENT_SQL.items()}
    finally:
        connection.close()
    for run_id, decision, version, h_decision, h_version in found["history"]:
        result.disagreeing.append(run_id)
        last = f"{h_decision} under policy {h_version}" if h_decision is not None else "no history row"
        result.findings.append(
            Finding(
                "error",
                run_id,
                f"gate_decisions says {decision} under policy {version}, its last decision_history row: {last}",
                (run_id,),
            )
        )
    if found["evidence"]:
        missing = tuple(run_id for (run_id,) in found["evidence"])
        result.disagreeing.extend(missing)
        result.findings.append(
            Finding(
                "error",
                "evidence_strength",
                f"{len(missing)} decided spike run(s) have no evidence row (stored before evidence strength was "
                "recorded, or lost): a policy that requires strong evidence cannot judge them; --repair measures them",
                missing,
            )
        )
    for run_id, decided_price, cost_price in found["cost"]:
        result.disagreeing.append(run_id)
        result.findings.append(
            Finding(
                "error",
                run_id,
                f"cost_metrics prices GPU hours at ${cost_price}, its decision at ${decided_price}",
                (run_id,),
            )
        )
    for run_id, in_history, count, before, after, before_check, after_check, from_v, to_v, at in found["flips"]:
        if in_history and count is None:
            result.missing_changes.append(
                {
                    "spike_run_id": run_id,
                    "from_policy_version": from_v,
                    "to_policy_version": to_v,
                    "from_decision": before,
                    "to_decision": after,
                    "cause_check": flip_cause(before_check, after_check),
                    "cause_detail": "re-created by maml-evidence doctor --repair from decision_history",
                    "changed_at": at,
                }
            )
            message = f"decision_history records a flip {before} -> {after} at {at} that decision_changes lacks"
        elif in_history:
            message = f"decision_changes records the flip at {at} {count} times, or with other decisions than history"
        else:
            message = f"decision_changes records a flip at {at} that decision_history does not"
        result.findings.append(Finding("error", run_id, message, (run_id,)))
    for run_id, decision, version, trigger, at in found["current"]:
        folder = store.home.report_dir(run_id)
        try:
            reported = json.loads((folder / "report.json").read_text(encoding="utf-8")).get("decision")
            title = (folder / "interpretation.md").read_text(encoding="utf-8").partition("\n")[0]
        except (OSError, ValueError, AttributeError):
            continue  # missing or unreadable report files: an incomplete evaluation, named below
        if reported != decision or f"`{decision}`" not in title:
            result.stale_reports.append(ReportTask(run_id, version, trigger))
            result.report_times[run_id] = at
            result.findings.append(
                Finding(
                    "error",
                    run_id,
                    f"report.json / interpretation.md say {reported}, gate_decisions says {decision}",
                    (run_id,),
                )
            )


def repair_records(store: EvidenceStore, diagnosis: Diagnosis) -> list[str]:
    """Finish interrupted batches, re-create missing decision_changes rows and rewrite stale report files."""
    done = []
    with decisions_lock(store) as recovered:
        done.extend(recovered)
        if diagnosis.missing_changes:
            batch = new_batch_id()
            keys = [str(row["spike_run_id"]) for row in diagnosis.missing_changes]
            store.tables.write("decision_changes", diagnosis.missing_changes, keys, batch=batch)
            commit(store, batch, "repair", datetime.now(UTC), [], len(keys), [])
            done.append(f"re-created {len(keys)} decision_changes rows from decision_history")
        for task in diagnosis.stale_reports:
            errors = write_reports(store, [task], diagnosis.report_times[task.spike_run_id])
            done.append(errors[0] if errors else f"{task.spike_run_id}: report files rewritten from its decision")
    return done


def set_aside(store: EvidenceStore, diagnosis: Diagnosis) -> list[str]:
    """Move damaged table files to damaged/<table>/ and drop stale temporary files; returns runs to rebuild."""
    for damage in diagnosis.damage:
        target = store.home.root / "damaged" / damage.table
        for path in (damage.path, damage.path.with_name(damage.path.name + KEYS_SUFFIX)):
            if path.exists():
                move(path, target)
    for orphan in diagnosis.orphans:
        orphan.unlink(missing_ok=True)
    affected = {
        key for d in diagnosis.damage for key in d.keys if d.table in TABLES and TABLES[d.table].key == "spike_run_id"
    }
    known = set(store.registry.known_ids())
    redo = affected | set(diagnosis.disagreeing) | set(store.failures())
    return sorted((redo & known) | set(store.incomplete()))
