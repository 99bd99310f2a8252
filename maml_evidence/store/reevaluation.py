"""Re-judging history in bulk when the threshold policy changes.

The gate core's ``judge`` runs over the stored per-run metrics (no payload is re-read or re-validated), and the
new decisions, checks, history and flips commit as one batch through the store's commit protocol. Reports and
interpretations are rewritten only for spike runs whose decision changed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection

from maml_evidence.gate import THRESHOLD_KEYS, GateInputs, Thresholds, Verdict, flip_cause, judge, merge_thresholds
from maml_evidence.gate.thresholds import resolve_settings
from maml_evidence.policy import Policy
from maml_evidence.store import rows
from maml_evidence.store.catalog import query
from maml_evidence.store.commit import DecisionRows, ReportTask, commit, decisions_lock, write_rows
from maml_evidence.store.evidence import REEVALUATION, EvidenceStore, sources_json
from maml_evidence.store.home import StoreError
from maml_evidence.store.schema import COMMITS
from maml_evidence.store.tables import new_batch_id

GATE_INPUTS_SQL = """
SELECT d.spike_run_id, d.policy_version AS old_policy_version, d.decision AS old_decision,
       d.failed_check AS old_failed_check, r.revision,
       a.common_project_count, a.baseline_mean_steps, a.baseline_max_steps,
       a.mean_step_reduction, a.relative_step_reduction, acc.mean_accuracy_regression_pp,
       c.extra_training_minutes, c.training_overhead_pct, r.payload_thresholds, r.payload_cost_profile,
       c.gpu_hour_usd AS old_gpu_hour_usd, c.gpu_hour_usd_source AS old_gpu_hour_usd_source,
       c.baseline_train_minutes, c.baseline_meta_train_minutes,
       c.candidate_train_minutes, c.candidate_meta_train_minutes
FROM gate_decisions d
JOIN spike_runs r USING (spike_run_id)
JOIN adaptation_summary a USING (spike_run_id)
JOIN accuracy_summary acc USING (spike_run_id)
JOIN cost_metrics c USING (spike_run_id)
ORDER BY d.spike_run_id
"""


@dataclass(frozen=True, slots=True)
class StoredRun:
    """What the store holds of one spike run that re-judging it needs (the columns of ``GATE_INPUTS_SQL``)."""

    spike_run_id: str
    old_policy_version: str
    old_decision: str
    old_failed_check: str | None
    revision: int
    common_project_count: int
    baseline_mean_steps: float
    baseline_max_steps: float
    mean_step_reduction: float
    relative_step_reduction: float
    mean_accuracy_regression_pp: float
    extra_training_minutes: float
    training_overhead_pct: float
    payload_thresholds: str
    payload_cost_profile: str
    old_gpu_hour_usd: float
    old_gpu_hour_usd_source: str
    baseline_train_minutes: float
    baseline_meta_train_minutes: float
    candidate_train_minutes: float
    candidate_meta_train_minutes: float

    @property
    def inputs(self) -> GateInputs:
        return GateInputs(
            self.common_project_count,
            self.baseline_mean_steps,
            self.baseline_max_steps,
            self.mean_step_reduction,
            self.relative_step_reduction,
            self.mean_accuracy_regression_pp,
            self.extra_training_minutes,
            self.training_overhead_pct,
        )

    @property
    def minutes(self) -> tuple[float, float, float, float]:
        return (
            self.baseline_train_minutes,
            self.baseline_meta_train_minutes,
            self.candidate_train_minutes,
            self.candidate_meta_train_minutes,
        )


def read_stored_runs(store: EvidenceStore) -> tuple[list[StoredRun], list[str]]:
    """Every evaluated spike run, columns selected by name; and the damaged files that were skipped."""
    connection = store.connect()
    try:
        cursor = query(connection, GATE_INPUTS_SQL)
        names = [d[0] for d in cursor.description]
        if names != list(StoredRun.__dataclass_fields__):
            raise AssertionError(f"GATE_INPUTS_SQL columns {names} do not match StoredRun")
        records = [StoredRun(*row) for row in cursor.fetchall()]
    finally:
        connection.close()
    return records, [d.describe() for d in store.last_damage]


@dataclass(frozen=True)
class Change:
    spike_run_id: str
    from_decision: str
    to_decision: str
    cause_check: str | None
    cause_detail: str


@dataclass
class ReevaluationResult:
    """What a re-evaluation did; ``timings`` in seconds per phase."""

    policy: Policy
    previous_versions: list[str]
    evaluated: int
    changes: list[Change]
    decision_mix: dict[str, int]
    skipped_reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    changed_verdicts: dict[str, Verdict] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)
    workers: int = 1
    report_errors: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)


def stale_policy_versions(store: EvidenceStore, policy: Policy) -> list[str]:
    """Policy versions of current decisions that differ from ``policy`` (empty: history is up to date)."""
    connection = store.connect()
    try:
        found = query(connection, "SELECT DISTINCT policy_version FROM gate_decisions").fetchall()
    finally:
        connection.close()
    return sorted(v for (v,) in found if v != policy.version)


@dataclass(frozen=True)
class _Settings:
    thresholds: Thresholds
    threshold_values: dict[str, float | int]
    gpu_hour_usd: float
    sources_json: str
    price_source: str


def _settings(policy: Policy, payload_thresholds: str, payload_cost: str) -> _Settings:
    values, sources = resolve_settings(
        policy.values, json.loads(payload_thresholds or "{}"), json.loads(payload_cost or "{}")
    )
    thresholds = merge_thresholds({key: values[key] for key in THRESHOLD_KEYS})
    return _Settings(
        thresholds, thresholds.as_dict(), float(values["gpu_hour_usd"]), sources_json(sources), sources["gpu_hour_usd"]
    )


@dataclass
class _Chunk:
    """What one worker judged and wrote."""

    mix: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    changed_verdicts: dict[str, Verdict] = field(default_factory=dict)


@dataclass(frozen=True)
class _Task:
    """One worker's share: everything it needs, passed explicitly (pickled only where workers do not fork)."""

    home_root: str
    policy: Policy
    records: list[StoredRun]
    now: datetime
    batch: str


PARALLEL_FROM = 20_000


def _judge_and_write(task: _Task) -> _Chunk:
    """Judge ``task.records`` with the gate core and write their rows into the (uncommitted) batch."""
    store = EvidenceStore(task.home_root)
    version, now = task.policy.version, task.now
    cache: dict[tuple[str, str], _Settings] = {}
    rows_out = DecisionRows()
    costs = []
    result = _Chunk()
    for run in task.records:
        key = (run.payload_thresholds, run.payload_cost_profile)
        settings = cache.get(key)
        if settings is None:
            settings = cache[key] = _settings(task.policy, *key)
        verdict = judge(run.inputs, settings.thresholds, settings.gpu_hour_usd)
        run_id = run.spike_run_id
        result.mix[verdict.decision] = result.mix.get(verdict.decision, 0) + 1
        rows_out.decisions.append(
            rows.decision_row(
                run_id, verdict, settings.threshold_values, settings.sources_json, version, REEVALUATION, now
            )
        )
        rows_out.checks.extend(rows.check_rows(run_id, verdict, now))
        rows_out.history.append(rows.history_row(run_id, run.revision, verdict, version, REEVALUATION, now))
        if settings.gpu_hour_usd != run.old_gpu_hour_usd or settings.price_source != run.old_gpu_hour_usd_source:
            costs.append(
                rows.cost_values_row(
                    run_id, run.minutes, run.extra_training_minutes, run.training_overhead_pct, verdict,
                    settings.price_source,
                )
            )  # fmt: skip
        if verdict.decision != run.old_decision:
            cause = flip_cause(run.old_failed_check, verdict.failed_check)
            detail = next((c.reason for c in verdict.checks if c.name == cause), "")
            result.changes.append(Change(run_id, run.old_decision, verdict.decision, cause, detail))
            result.changed_verdicts[run_id] = verdict
            rows_out.changes.append(
                {
                    "spike_run_id": run_id,
                    "from_policy_version": run.old_policy_version,
                    "to_policy_version": version,
                    "from_decision": run.old_decision,
                    "to_decision": verdict.decision,
                    "cause_check": cause,
                    "cause_detail": detail,
                    "changed_at": now,
                }
            )
    # the price in force goes into cost_metrics before the decisions commit; a crash in between leaves the
    # decisions under the old policy, so the next re-evaluation redoes (and agrees with) it
    if costs:
        store.tables.write("cost_metrics", costs, [row["spike_run_id"] for row in costs], compact=False)
    write_rows(store, task.batch, rows_out, compact=False)
    return result


def reevaluate(
    store: EvidenceStore, policy: Policy | None = None, *, force: bool = False, refresh_reports: bool = True
) -> ReevaluationResult:
    """Re-judge every stored spike run under ``policy`` (default: the policy file in force).

    Large histories are split across the machine's cores (forked workers, each judging and writing its share
    into one uncommitted batch); the batch then commits at once through the store's one commit protocol
    (``store/commit.py``), and the reports of flipped spike runs are rewritten.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    policy = policy if policy is not None else store.policy()
    with decisions_lock(store) as recovered:
        records, damaged = read_stored_runs(store)
        timings["read"] = time.perf_counter() - started
        previous = sorted({r.old_policy_version for r in records if r.old_policy_version != policy.version})
        if not force and not previous:
            return ReevaluationResult(
                policy,
                [],
                0,
                [],
                {},
                skipped_reason=f"every stored decision already uses policy {policy.version}",
                damaged=damaged,
                recovered=recovered,
            )

        t0 = time.perf_counter()
        store.record_policy(policy)
        now = datetime.now(UTC)
        batch = new_batch_id()
        workers = min(os.cpu_count() or 1, 4) if len(records) >= PARALLEL_FROM and _can_fork() else 1
        step = max(1, -(-len(records) // workers))
        tasks = [
            _Task(str(store.home.root), policy, records[i : i + step], now, batch) for i in range(0, len(records), step)
        ]
        chunks = _run_forked(tasks) if workers > 1 else [_judge_and_write(task) for task in tasks]
        timings["judge_and_write"] = time.perf_counter() - t0
        mix: dict[str, int] = {}
        changes: list[Change] = []
        changed_verdicts: dict[str, Verdict] = {}
        for chunk in chunks:
            for decision, n in chunk.mix.items():
                mix[decision] = mix.get(decision, 0) + n
            changes.extend(chunk.changes)
            changed_verdicts.update(chunk.changed_verdicts)

        t0 = time.perf_counter()
        reports = [ReportTask(c.spike_run_id, policy.version, REEVALUATION) for c in changes] if refresh_reports else []
        report_errors = commit(store, batch, REEVALUATION, now, [policy.version], len(records), reports)
        timings["commit_and_reports"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for table in ("decision_history", "decision_changes", "gate_checks", "gate_decisions", "cost_metrics", COMMITS):
        store.tables.compact_if_needed(table)
    timings["compact"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    return ReevaluationResult(
        policy,
        previous,
        len(records),
        changes,
        mix,
        timings=timings,
        changed_verdicts=changed_verdicts,
        damaged=damaged,
        workers=workers,
        report_errors=report_errors,
        recovered=recovered,
    )


def _worker(task: _Task, results: Connection) -> None:
    try:
        results.send((True, _judge_and_write(task)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        results.send((False, f"{type(exc).__name__}: {exc}"))
    finally:
        results.close()


def _run_forked(tasks: list[_Task]) -> list[_Chunk]:
    """One forked process per task: each inherits its task (nothing is pickled on the way in)."""
    context = multiprocessing.get_context("fork")
    started = []
    for task in tasks:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(task, send), daemon=True)
        process.start()
        send.close()
        started.append((process, receive))
    chunks, errors = [], []
    for process, receive in started:
        try:
            ok, value = receive.recv()
        except EOFError:
            ok, value = False, "a re-evaluation worker died"
        process.join()
        (chunks if ok else errors).append(value)
    if errors:
        raise StoreError(f"re-evaluation failed, nothing was committed: {'; '.join(map(str, errors))}")
    return chunks


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def latest_changes(store: EvidenceStore, policy_version: str) -> list[Change]:
    """The flips recorded by the most recent re-evaluation into ``policy_version``."""
    connection = store.connect()
    try:
        found = query(
            connection,
            "SELECT spike_run_id, from_decision, to_decision, cause_check, cause_detail FROM decision_changes "
            "WHERE to_policy_version = ? AND changed_at = (SELECT max(changed_at) FROM decision_changes "
            "WHERE to_policy_version = ?) ORDER BY spike_run_id",
            [policy_version, policy_version],
        ).fetchall()
    finally:
        connection.close()
    return [Change(*row) for row in found]
