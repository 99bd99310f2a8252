"""``EvidenceStore``: the one object Dagster and the CLI use to evaluate spike runs and record the evidence."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import duckdb

from maml_evidence.gate import (
    GateMetrics,
    PayloadValidationError,
    Settings,
    SpikePayload,
    Verdict,
    effective_settings,
    parse_payload_text,
    validate_payload,
)
from maml_evidence.pictures import EFFECTS_FILE
from maml_evidence.policy import Policy, load_policy
from maml_evidence.sources.provenance import mlflow_provenance
from maml_evidence.store import rows
from maml_evidence.store.catalog import ensure_store, memory_connection, query
from maml_evidence.store.commit import DecisionRows, ReportTask, commit, decisions_lock, write_rows
from maml_evidence.store.files import atomic_write_bytes, atomic_write_text
from maml_evidence.store.home import EvidenceHome, StoreError
from maml_evidence.store.registry import PayloadRegistry, Revision
from maml_evidence.store.tables import Damage, ParquetTables, new_batch_id
from maml_evidence.strength import evaluate_with_evidence, interpretation_with_evidence

INGEST, REPLACE, REEVALUATION = "ingest", "replace", "re-evaluation"
LOG = logging.getLogger("maml_evidence")
# Tables with exactly one row per evaluated spike run.
_WARNED: set[tuple[Path, str]] = set()
EVALUATION_CACHE_SIZE = 50_000
_EVALUATIONS: dict[tuple[str, str, str, int, str], Evaluation] = {}
# Spike runs that failed in this process (per stored revision): later steps of the same run skip them.
_FAILED: dict[tuple[str, str, str], str] = {}
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
    evidence: dict[str, object]  # the unrounded evidence section (the report holds it rounded)

    @property
    def trigger(self) -> str:
        return REPLACE if self.revision.revision > 1 else INGEST

    @cached_property
    def settings(self) -> Settings:
        """The thresholds and GPU price it was judged under, and where each came from (the gate's one rule)."""
        payload = self.payload
        return effective_settings(self.policy.values, payload.threshold_overrides, payload.cost_overrides)

    @property
    def thresholds(self) -> dict[str, float | int | None]:
        """Every effective threshold it was judged under (a report shows the optional ones only when set)."""
        return self.settings.thresholds.as_dict()

    @property
    def sources(self) -> dict[str, str]:
        """Per threshold key and the GPU price: default, policy or payload."""
        return self.settings.sources


class EvidenceStore:
    """The evidence home's tables, payload revisions, reports and catalog."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.home = EvidenceHome(root)
        self.tables = ParquetTables(self.home)
        self.registry = PayloadRegistry(self.home)
        self.last_damage: list[Damage] = []
        # the full trace of each spike run whose evaluation raised (for the Dagster run's log; the command shows
        # only the one-line reason)
        self.last_traces: dict[str, str] = {}

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

    def evaluate_each(
        self, spike_run_ids: Iterable[str], policy: Policy | None = None
    ) -> tuple[list[Evaluation], dict[str, str]]:
        """Like ``evaluate``, but one spike run's failure never stops the others: returns (evaluations, failed).

        A spike run that failed earlier in this process (its evaluation, or a table write of it) stays failed
        for the later steps of the run, so no table holds a partial evaluation of it; the reason is kept in
        ``failures/<id>.txt`` until an evaluation of it commits.
        """
        policy = policy if policy is not None else self.policy()
        evaluations: list[Evaluation] = []
        failed: dict[str, str] = {}
        for run_id in spike_run_ids:
            earlier = _FAILED.get(self._failure_key(run_id))
            if earlier is not None:
                failed[run_id] = earlier
                continue
            try:
                evaluations.extend(self.evaluate([run_id], policy))
            except Exception as exc:  # noqa: BLE001 - one spike run's failure, of any kind, must not stop the batch
                failed[run_id] = self.record_failure(run_id, exc)
                self.last_traces[run_id] = traceback.format_exc()
        return evaluations, failed

    def _failure_key(self, run_id: str) -> tuple[str, str, str]:
        try:
            revision = self.registry.current(run_id)
        except StoreError:
            revision = None
        return (str(self.home.root), run_id, revision.sha256 if revision else "")

    def record_failure(self, run_id: str, error: BaseException | str) -> str:
        """Remember that ``run_id`` failed in this process and say why in ``failures/<id>.txt``; returns the reason."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        reason = " ".join(reason.split())  # one line, whatever the error said
        _FAILED[self._failure_key(run_id)] = reason
        try:
            atomic_write_text(self.home.failures / f"{run_id}.txt", reason + "\n")
        except (OSError, StoreError) as exc:
            LOG.warning("could not record the failure of %r: %s", run_id, exc)
        return reason

    def failures(self, spike_run_ids: Sequence[str] | None = None) -> dict[str, str]:
        """Spike runs whose last evaluation failed, with the reason (from ``failures/``)."""
        folder = self.home.failures
        paths = (
            [folder / f"{i}.txt" for i in spike_run_ids] if spike_run_ids is not None else sorted(folder.glob("*.txt"))
        )
        found = {}
        for path in paths:
            try:
                found[path.stem] = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
        return found

    def _clear_failures(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            _FAILED.pop(self._failure_key(run_id), None)
            (self.home.failures / f"{run_id}.txt").unlink(missing_ok=True)

    def _write(self, table: str, rows_: Sequence[rows.Row], evaluations: Sequence[Evaluation]) -> Path | None:
        """Write one table's batch; spike runs whose rows the table cannot hold fail alone (recorded), not the batch."""
        ids = _ids(evaluations)
        try:
            return self.tables.write(table, rows_, ids)
        except StoreError:
            bad = self.tables.unstorable(table, rows_)
            if not bad:
                raise
        for run_id, reason in bad.items():
            self.record_failure(run_id, f"cannot store its {table} rows: {reason}")
        good_ids = [i for i in ids if i not in bad]
        good = [row for row in rows_ if row["spike_run_id"] not in bad]
        return self.tables.write(table, good, good_ids) if good_ids else None

    def _storable(self, evaluations: Sequence[Evaluation], built: dict[str, list[rows.Row]]) -> list[Evaluation]:
        """The evaluations whose rows every table in ``built`` can hold; the others are recorded as failed."""
        bad: dict[str, str] = {}
        for table, table_rows in built.items():
            for run_id, reason in self.tables.unstorable(table, table_rows).items():
                bad.setdefault(run_id, f"cannot store its {table} rows: {reason}")
        for run_id, reason in bad.items():
            self.record_failure(run_id, reason)
        return [e for e in evaluations if e.spike_run_id not in bad]

    def recover(self) -> list[str]:
        """Finish what a killed command left of a decision batch (see ``store/commit.py``); what was done."""
        with decisions_lock(self) as done:
            return done

    def policy_for_version(self, version: str) -> Policy:
        """The policy a version stands for: the one in force, else the one recorded when it was first used."""
        current = self.policy()
        if current.version == version:
            return current
        marker = self.home.policies / f"{version}.json"
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
            policy = Policy(values=json.loads(recorded["policy_keys_set"]), source=recorded["source"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"policy version {version}: its record {marker} cannot be read: {exc}") from exc
        if policy.version != version:
            raise StoreError(f"policy version {version}: its record {marker} holds version {policy.version}")
        return policy

    def _evaluate_one(self, run_id: str, policy: Policy) -> Evaluation:
        revision, payload = self.load(run_id)
        # the statistics first (scipy, imported on the first evaluation of a process): the gate may judge them
        metrics, verdict, report, evidence = evaluate_with_evidence(payload, policy.values)
        provenance: dict[str, object] = {
            "spike_run_id": run_id,
            "revision": revision.revision,
            "sha256": revision.sha256,
            "source_file": revision.source_file,
            "policy_version": policy.version,
            "policy_source": policy.source,
        }
        mlflow = mlflow_provenance(payload.extras)  # links back to the MLflow runs it was collected from
        if mlflow is not None:
            provenance["mlflow"] = mlflow
        report["provenance"] = provenance
        return Evaluation(run_id, revision, payload, metrics, verdict, report, policy, evidence)

    # -- writers, one per asset ---------------------------------------------------------------------------
    def write_spike_runs(self, evaluations: Sequence[Evaluation]) -> Path | None:
        now = datetime.now(UTC)
        out = []
        for e in evaluations:
            stored = self.home.report_dir(e.spike_run_id) / "payload.json"
            atomic_write_bytes(stored, self.registry.read(e.revision))
            out.append(rows.spike_run_row(e.spike_run_id, e.revision, e.payload, e.metrics, str(stored), now))
        return self._write("spike_runs", out, evaluations)

    def write_adaptation(self, evaluations: Sequence[Evaluation]) -> tuple[Path | None, Path | None]:
        detail = [r for e in evaluations for r in rows.adaptation_rows(e.spike_run_id, e.metrics)]
        summary = [rows.adaptation_summary_row(e.spike_run_id, e.metrics) for e in evaluations]
        effects = [r for e in evaluations for r in rows.project_effect_rows(e.spike_run_id, e.metrics)]
        self._write("project_effects", effects, evaluations)
        return self._write("adaptation_metrics", detail, evaluations), self._write(
            "adaptation_summary", summary, evaluations
        )

    def write_accuracy(self, evaluations: Sequence[Evaluation]) -> tuple[Path | None, Path | None]:
        detail = [r for e in evaluations for r in rows.accuracy_rows(e.spike_run_id, e.metrics)]
        summary = [rows.accuracy_summary_row(e.spike_run_id, e.payload, e.metrics) for e in evaluations]
        return self._write("accuracy_metrics", detail, evaluations), self._write(
            "accuracy_summary", summary, evaluations
        )

    def write_cost(self, evaluations: Sequence[Evaluation]) -> Path | None:
        out = [rows.cost_row(e.spike_run_id, e.metrics, e.verdict, e.sources["gpu_hour_usd"]) for e in evaluations]
        breakeven = [
            rows.breakeven_row(
                e.spike_run_id,
                e.metrics.inputs.mean_step_reduction,
                e.verdict.extra_gpu_cost_usd_per_run,
                e.settings,
                e.policy.version,
            )
            for e in evaluations
        ]
        self._write("cost_breakeven", breakeven, evaluations)
        return self._write("cost_metrics", out, evaluations)

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

    def write_decisions(self, evaluations: Sequence[Evaluation]) -> list[Evaluation]:
        """Commit checks, decisions and history of these evaluations as one batch, then their report files.

        Uses the one commit protocol (``store/commit.py``) that re-evaluation uses too. Spike runs whose rows
        cannot be stored fail alone (recorded in ``failures/``); returns the evaluations that were committed.
        """
        with decisions_lock(self):
            now = datetime.now(UTC)
            built: dict[str, list[rows.Row]] = {
                "gate_decisions": [],
                "gate_checks": [],
                "decision_history": [],
                "evidence_strength": [],
            }
            for e in evaluations:
                built["gate_decisions"].append(
                    rows.decision_row(
                        e.spike_run_id,
                        e.verdict,
                        e.thresholds,
                        sources_json(e.sources),
                        e.policy.version,
                        e.trigger,
                        now,
                    )
                )
                built["gate_checks"].extend(rows.check_rows(e.spike_run_id, e.verdict, now))
                built["decision_history"].append(
                    rows.history_row(e.spike_run_id, e.revision.revision, e.verdict, e.policy.version, e.trigger, now)
                )
                built["evidence_strength"].append(
                    rows.evidence_row(e.spike_run_id, e.evidence, e.metrics.inputs, e.policy.version, now)
                )
            committed = self._storable(evaluations, built)
            if not committed:
                return []
            keep = {e.spike_run_id for e in committed}
            batch = new_batch_id()
            kept = {table: [r for r in table_rows if r["spike_run_id"] in keep] for table, table_rows in built.items()}
            decision_rows = DecisionRows(
                kept["gate_decisions"],
                kept["gate_checks"],
                kept["decision_history"],
                evidence=kept["evidence_strength"],
            )
            write_rows(self, batch, decision_rows)
            for policy in {e.policy.version: e.policy for e in committed}.values():
                self.record_policy(policy)
            tasks = [ReportTask(e.spike_run_id, e.policy.version, e.trigger) for e in committed]
            versions = [e.policy.version for e in committed]
            commit(self, batch, "ingest", now, versions, len(committed), tasks)
            self._clear_failures(keep)
            return committed

    def write_interpretation(self, spike_run_id: str) -> tuple[Path, str]:
        """Render the stored report.json of a spike run as interpretation.md beside it (under the decisions lock)."""
        with decisions_lock(self):
            folder = self.home.report_dir(spike_run_id)
            text = interpretation_with_evidence(self.read_report(spike_run_id), chart=(folder / EFFECTS_FILE).is_file())
            path = folder / "interpretation.md"
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
    """The payload sha256 a stored report was written for (``provenance``; ``evidence`` in stores before issue 11)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        stamp = report["provenance"] if "provenance" in report else report["evidence"]
        return stamp["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sources_json(sources: Mapping[str, str]) -> str:
    """Per threshold key and the GPU price: where its value came from (default, policy or payload), as JSON."""
    return json.dumps(dict(sources), sort_keys=True)


def _ids(evaluations: Sequence[Evaluation]) -> list[str]:
    return [e.spike_run_id for e in evaluations]
