"""``EvidenceStore``: the one object Dagster and the CLI use to evaluate spike runs and record the evidence."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from maml_evidence.gate import (
    GateMetrics,
    PayloadValidationError,
    SpikePayload,
    Verdict,
    evaluate_payload,
    parse_payload_text,
    render_interpretation,
    validate_payload,
)
from maml_evidence.policy import Policy, load_policy
from maml_evidence.store import rows
from maml_evidence.store.catalog import ensure_store, memory_connection, query
from maml_evidence.store.files import atomic_write_bytes, atomic_write_text
from maml_evidence.store.home import EvidenceHome, StoreError
from maml_evidence.store.registry import PayloadRegistry, Revision
from maml_evidence.store.tables import Damage, ParquetTables, new_batch_id

INGEST, REPLACE, REEVALUATION = "ingest", "replace", "re-evaluation"
LOG = logging.getLogger("maml_evidence")
# Tables with exactly one row per evaluated spike run.
_WARNED: set[tuple[Path, str]] = set()
EVALUATION_CACHE_SIZE = 50_000
_EVALUATIONS: dict[tuple[str, str, str, int, str], Evaluation] = {}
PER_RUN_TABLES = ("spike_runs", "adaptation_summary", "accuracy_summary", "cost_metrics", "gate_decisions")


@dataclass(frozen=True)
class Evaluation:
    """One spike run judged by the gate core under one policy."""

    spike_run_id: str
    revision: Revision
    payload: SpikePayload
    metrics: GateMetrics
    verdict: Verdict
    report: dict[str, object]
    policy: Policy

    @property
    def trigger(self) -> str:
        return REPLACE if self.revision.revision > 1 else INGEST


class EvidenceStore:
    """The evidence home's tables, payload revisions, reports and catalog."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.home = EvidenceHome(root)
        self.tables = ParquetTables(self.home)
        self.registry = PayloadRegistry(self.home)
        self.last_damage: list[Damage] = []

    def ensure(self) -> EvidenceStore:
        ensure_store(self.home)
        return self

    def policy(self) -> Policy:
        return load_policy(self.home.policy_file)

    # -- evaluation ---------------------------------------------------------------------------------------
    def load(self, spike_run_id: str) -> tuple[Revision, SpikePayload]:
        revision = self.registry.current(spike_run_id)
        if revision is None:
            raise StoreError(f"spike run {spike_run_id!r} has no stored payload; ingest it first")
        data = self.registry.read(revision)
        try:
            return revision, validate_payload(parse_payload_text(data, spike_run_id), spike_run_id)
        except PayloadValidationError as exc:
            raise StoreError(f"stored payload of spike run {spike_run_id!r} no longer validates: {exc}") from exc

    def evaluate(self, spike_run_ids: Iterable[str], policy: Policy | None = None) -> list[Evaluation]:
        """Judge each spike run's current revision; results are shared by the steps of one process.

        Every asset and check of a run needs the same evaluation; it depends only on the stored revision and
        the policy, so it is computed once per (revision, policy) and reused (the gate core is deterministic).
        """
        policy = policy if policy is not None else self.policy()
        evaluations = []
        for run_id in spike_run_ids:
            revision = self.registry.current(run_id)
            key = (
                str(self.home.root),
                run_id,
                revision.sha256 if revision else "",
                revision.revision if revision else 0,
                policy.version,
            )
            cached = _EVALUATIONS.get(key)
            if cached is None:
                cached = self._evaluate_one(run_id, policy)
                if len(_EVALUATIONS) >= EVALUATION_CACHE_SIZE:
                    _EVALUATIONS.pop(next(iter(_EVALUATIONS)))
                _EVALUATIONS[key] = cached
            evaluations.append(cached)
        return evaluations

    def _evaluate_one(self, run_id: str, policy: Policy) -> Evaluation:
        revision, payload = self.load(run_id)
        metrics, verdict, report = evaluate_payload(payload, policy.values)
        report["evidence"] = {
            "spike_run_id": run_id,
            "revision": revision.revision,
            "sha256": revision.sha256,
            "source_file": revision.source_file,
            "policy_version": policy.version,
            "policy_source": policy.source,
        }
        return Evaluation(run_id, revision, payload, metrics, verdict, report, policy)

    # -- writers, one per asset ---------------------------------------------------------------------------
    def write_spike_runs(self, evaluations: Sequence[Evaluation]) -> Path:
        now = datetime.now(UTC)
        out = []
        for e in evaluations:
            stored = self.home.report_dir(e.spike_run_id) / "payload.json"
            atomic_write_bytes(stored, self.registry.read(e.revision))
            out.append(rows.spike_run_row(e.spike_run_id, e.revision, e.payload, e.metrics, str(stored), now))
        return self.tables.write("spike_runs", out, _ids(evaluations))

    def write_adaptation(self, evaluations: Sequence[Evaluation]) -> tuple[Path, Path]:
        detail = [r for e in evaluations for r in rows.adaptation_rows(e.spike_run_id, e.metrics)]
        summary = [rows.adaptation_summary_row(e.spike_run_id, e.metrics) for e in evaluations]
        return (
            self.tables.write("adaptation_metrics", detail, _ids(evaluations)),
            self.tables.write("adaptation_summary", summary, _ids(evaluations)),
        )

    def write_accuracy(self, evaluations: Sequence[Evaluation]) -> tuple[Path, Path]:
        detail = [r for e in evaluations for r in rows.accuracy_rows(e.spike_run_id, e.metrics)]
        summary = [rows.accuracy_summary_row(e.spike_run_id, e.payload, e.metrics) for e in evaluations]
        return (
            self.tables.write("accuracy_metrics", detail, _ids(evaluations)),
            self.tables.write("accuracy_summary", summary, _ids(evaluations)),
        )

    def write_cost(self, evaluations: Sequence[Evaluation]) -> Path:
        out = [
            rows.cost_row(
                e.spike_run_id, e.metrics, e.verdict, str(e.report["cost"]["assumptions"]["gpu_hour_usd_source"])
            )  # type: ignore[index]
            for e in evaluations
        ]
        return self.tables.write("cost_metrics", out, _ids(evaluations))

    def record_policy(self, policy: Policy) -> bool:
        """Add the policy version to threshold_policies the first time it is used; True if it was new."""
        marker = self.home.policies / f"{policy.version}.json"
        if marker.exists():
            return False
        now = datetime.now(UTC)
        row = {
            "policy_version": policy.version,
            "effective_policy": json.dumps(policy.effective, sort_keys=True),
            "policy_keys_set": json.dumps(policy.values, sort_keys=True),
            "source": policy.source,
            "first_seen_at": now,
        }
        # The marker is written last: a crash in between records the version again, never loses it.
        self.tables.write("threshold_policies", [row], [policy.version])
        atomic_write_text(marker, json.dumps({**row, "first_seen_at": now.isoformat()}, indent=2))
        return True

    def write_decisions(self, evaluations: Sequence[Evaluation], trigger: str | None = None) -> None:
        """Record checks and decisions (one commit), then history, then each spike run's report.json.

        ``gate_checks`` rows become visible only with the ``gate_decisions`` batch that commits them, so a
        failure in between never shows new checks beside an old decision.
        """
        now = datetime.now(UTC)
        decisions, checks, history = [], [], []
        for policy in {e.policy.version: e.policy for e in evaluations}.values():
            self.record_policy(policy)
        for e in evaluations:
            run_trigger = trigger or e.trigger
            decisions.append(
                rows.decision_row(
                    e.spike_run_id,
                    e.verdict,
                    e.report["thresholds"],  # type: ignore[arg-type]
                    sources_json(e.report),
                    e.policy.version,
                    run_trigger,
                    now,
                )
            )
            checks.extend(rows.check_rows(e.spike_run_id, e.verdict, now))
            history.append(
                rows.history_row(e.spike_run_id, e.revision.revision, e.verdict, e.policy.version, run_trigger, now)
            )
        ids = _ids(evaluations)
        batch = new_batch_id()
        self.tables.write("gate_checks", checks, ids, batch=batch)
        self.tables.write("gate_decisions", decisions, ids, batch=batch)
        self.tables.write("decision_history", history, ids)
        for e in evaluations:
            report = {**e.report, "evidence": {**e.report["evidence"], "evaluated_at": now.isoformat()}}  # type: ignore[dict-item]
            atomic_write_text(self.home.report_dir(e.spike_run_id) / "report.json", json.dumps(report, indent=2) + "\n")

    def refresh_reports(self, spike_run_ids: Sequence[str], policy: Policy) -> list[str]:
        """Rewrite report.json and interpretation.md of these spike runs under ``policy`` (no table rows).

        The decisions are already recorded; a run whose stored payload cannot be read keeps its old files and
        is returned (with a warning) instead of failing the whole re-evaluation.
        """
        now = datetime.now(UTC).isoformat()
        failed = []
        for run_id in spike_run_ids:
            try:
                [e] = self.evaluate([run_id], policy)
            except StoreError as exc:
                LOG.warning("report of %s not refreshed: %s (run `maml-evidence doctor`)", run_id, exc)
                failed.append(f"{run_id}: {exc}")
                continue
            evidence = {**e.report["evidence"], "evaluated_at": now, "trigger": REEVALUATION}  # type: ignore[dict-item]
            report = {**e.report, "evidence": evidence}
            folder = self.home.report_dir(e.spike_run_id)
            atomic_write_text(folder / "report.json", json.dumps(report, indent=2) + "\n")
            atomic_write_text(folder / "interpretation.md", render_interpretation(report))
        return failed

    def write_interpretation(self, spike_run_id: str) -> tuple[Path, str]:
        """Render the stored report.json of a spike run as interpretation.md beside it."""
        text = render_interpretation(self.read_report(spike_run_id))
        path = self.home.report_dir(spike_run_id) / "interpretation.md"
        atomic_write_text(path, text)
        return path, text

    # -- reading ------------------------------------------------------------------------------------------
    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with every view (no lock on evidence.duckdb).

        Damaged table files are skipped with a warning naming the file and its spike runs (``last_damage``).
        """
        self.ensure()
        damaged: list[Damage] = []
        connection = memory_connection(self.home, damaged)
        self.last_damage = damaged
        for damage in damaged:
            if (damage.path, damage.error) not in _WARNED:  # once per file per process, not per query
                _WARNED.add((damage.path, damage.error))
                LOG.warning("skipped %s; run `maml-evidence doctor --repair`", damage.describe())
        return connection

    def decisions(self, spike_run_ids: Sequence[str] | None = None) -> dict[str, dict[str, object]]:
        """Current gate_decisions rows keyed by spike run."""
        connection = self.connect()
        try:
            sql = "SELECT * FROM gate_decisions"
            params: list[object] = []
            if spike_run_ids is not None:
                sql += " WHERE list_contains(?, spike_run_id)"
                params = [list(spike_run_ids)]
            cursor = query(connection, sql, params)
            names = [d[0] for d in cursor.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        finally:
            connection.close()

    def incomplete(self, spike_run_ids: Sequence[str] | None = None) -> list[str]:
        """Stored spike runs whose evaluation of the current revision is not complete.

        Complete means: a row in every per-run table, a report.json of the current payload's sha256, and an
        interpretation.md. A run interrupted mid-evaluation (or whose rows were lost to damage) is incomplete.
        """
        ids = sorted(spike_run_ids if spike_run_ids is not None else self.registry.known_ids())
        if not ids:
            return []
        connection = self.connect()
        try:
            present: set[str] | None = None
            for table in PER_RUN_TABLES:
                found = {
                    row[0]
                    for row in query(
                        connection, f"SELECT spike_run_id FROM {table} WHERE list_contains(?, spike_run_id)", [ids]
                    ).fetchall()
                }
                present = found if present is None else present & found
        finally:
            connection.close()
        missing = []
        for run_id in ids:
            revision = self.registry.current(run_id)
            folder = self.home.report_dir(run_id)
            complete = (
                revision is not None
                and run_id in (present or set())
                and (folder / "interpretation.md").exists()
                and _report_sha(folder / "report.json") == revision.sha256
            )
            if not complete:
                missing.append(run_id)
        return missing

    def read_report(self, spike_run_id: str) -> dict[str, object]:
        path = self.home.report_dir(spike_run_id) / "report.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"spike run {spike_run_id!r} has no report yet ({path})") from None


def _report_sha(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["evidence"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sources_json(report: dict[str, object]) -> str:
    """Per threshold key and the GPU price: where its value came from (default, policy or payload), as JSON."""
    sources = {**report["threshold_sources"], "gpu_hour_usd": report["cost"]["assumptions"]["gpu_hour_usd_source"]}  # type: ignore[dict-item,index]
    return json.dumps(sources, sort_keys=True)


def _ids(evaluations: Sequence[Evaluation]) -> list[str]:
    return [e.spike_run_id for e in evaluations]
