"""Re-judging history in bulk when the threshold policy changes.

The gate core's ``judge`` runs over the stored per-run metrics (no payload is re-read or re-validated), in
one process, and the new decisions, checks, history and flips are written as one batch per table. Reports
and interpretations are rewritten only for spike runs whose decision changed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maml_evidence.gate import THRESHOLD_KEYS, GateInputs, Verdict, flip_cause, judge, merge_thresholds
from maml_evidence.gate.thresholds import resolve_settings
from maml_evidence.policy import Policy
from maml_evidence.store import rows
from maml_evidence.store.catalog import query
from maml_evidence.store.evidence import REEVALUATION, EvidenceStore
from maml_evidence.store.tables import new_batch_id

GATE_INPUTS_SQL = """
SELECT d.spike_run_id, d.policy_version, d.decision, d.failed_check, r.revision,
       a.common_project_count, a.baseline_mean_steps, a.baseline_max_steps,
       a.mean_step_reduction, a.relative_step_reduction, acc.mean_accuracy_regression_pp,
       c.extra_training_minutes, c.training_overhead_pct, r.payload_thresholds, r.payload_cost_profile,
       c.gpu_hour_usd, c.gpu_hour_usd_source, c.baseline_train_minutes, c.baseline_meta_train_minutes,
       c.candidate_train_minutes, c.candidate_meta_train_minutes
FROM gate_decisions d
JOIN spike_runs r USING (spike_run_id)
JOIN adaptation_summary a USING (spike_run_id)
JOIN accuracy_summary acc USING (spike_run_id)
JOIN cost_metrics c USING (spike_run_id)
ORDER BY d.spike_run_id
"""


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


def stale_policy_versions(store: EvidenceStore, policy: Policy) -> list[str]:
    """Policy versions of current decisions that differ from ``policy`` (empty: history is up to date)."""
    connection = store.connect()
    try:
        found = query(connection, "SELECT DISTINCT policy_version FROM gate_decisions").fetchall()
    finally:
        connection.close()
    return sorted(v for (v,) in found if v != policy.version)


def _settings(policy: Policy, payload_thresholds: str, payload_cost: str):  # noqa: ANN202 - internal tuple
    values, sources = resolve_settings(
        policy.values, json.loads(payload_thresholds or "{}"), json.loads(payload_cost or "{}")
    )
    thresholds = merge_thresholds({key: values[key] for key in THRESHOLD_KEYS})
    return (
        thresholds,
        thresholds.as_dict(),
        float(values["gpu_hour_usd"]),
        json.dumps(sources, sort_keys=True),
        sources["gpu_hour_usd"],
    )


@dataclass
class _Chunk:
    """What one worker judged and wrote."""

    mix: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    changed_verdicts: dict[str, Verdict] = field(default_factory=dict)


# Set before forking workers so they inherit the rows instead of receiving them pickled.
_RECORDS: list[tuple] = []
PARALLEL_FROM = 20_000


def _judge_and_write(home_root: str, policy: Policy, bounds: tuple[int, int], now: datetime, batch: str) -> _Chunk:
    """Judge ``_RECORDS[bounds]`` with the gate core and write their rows (checks, then the committing decisions)."""
    store = EvidenceStore(home_root)
    version = policy.version
    cache: dict[tuple[str, str], tuple] = {}
    decisions, checks, history, change_rows, costs = [], [], [], [], []
    result = _Chunk()
    for (run_id, old_version, old_decision, old_failed, revision, count, b_mean, b_max, reduction, relative,
         regression, extra, overhead, payload_thresholds, payload_cost, old_price, old_price_source,
         *minutes) in _RECORDS[bounds[0] : bounds[1]]:  # fmt: skip
        key = (payload_thresholds, payload_cost)
        settings = cache.get(key)
        if settings is None:
            settings = cache[key] = _settings(policy, payload_thresholds, payload_cost)
        thresholds, threshold_values, price, sources, price_source = settings
        verdict = judge(
            GateInputs(count, b_mean, b_max, reduction, relative, regression, extra, overhead), thresholds, price
        )
        result.mix[verdict.decision] = result.mix.get(verdict.decision, 0) + 1
        decisions.append(rows.decision_row(run_id, verdict, threshold_values, sources, version, REEVALUATION, now))
        checks.extend(rows.check_rows(run_id, verdict, now))
        history.append(rows.history_row(run_id, revision, verdict, version, REEVALUATION, now))
        if price != old_price or price_source != old_price_source:
            costs.append(rows.cost_values_row(run_id, tuple(minutes), extra, overhead, verdict, price_source))
        if verdict.decision != old_decision:
            cause = flip_cause(old_failed, verdict.failed_check)
            detail = next((c.reason for c in verdict.checks if c.name == cause), "")
            result.changes.append(Change(run_id, old_decision, verdict.decision, cause, detail))
            result.changed_verdicts[run_id] = verdict
            change_rows.append(
                {
                    "spike_run_id": run_id,
                    "from_policy_version": old_version,
                    "to_policy_version": version,
                    "from_decision": old_decision,
                    "to_decision": verdict.decision,
                    "cause_check": cause,
                    "cause_detail": detail,
                    "changed_at": now,
                }
            )
    ids = [record[0] for record in _RECORDS[bounds[0] : bounds[1]]]
    tables = store.tables
    tables.write("gate_checks", checks, ids, compact=False, batch=batch)
    tables.write("gate_decisions", decisions, ids, compact=False, batch=batch)
    tables.write("decision_history", history, ids, compact=False)
    if costs:
        tables.write("cost_metrics", costs, [row["spike_run_id"] for row in costs], compact=False)
    if change_rows:
        tables.write("decision_changes", change_rows, [c.spike_run_id for c in result.changes], compact=False)
    return result


def _run_chunk(args: tuple) -> _Chunk:  # noqa: ANN001 - a pool task
    return _judge_and_write(*args)


def reevaluate(
    store: EvidenceStore, policy: Policy | None = None, *, force: bool = False, refresh_reports: bool = True
) -> ReevaluationResult:
    """Re-judge every stored spike run under ``policy`` (default: the policy file in force).

    Large histories are split across the machine's cores (forked workers, each judging and writing its share
    as one batch per table); every run's checks and decision still commit together.
    """
    global _RECORDS
    timings: dict[str, float] = {}
    started = time.perf_counter()
    policy = policy if policy is not None else store.policy()
    connection = store.connect()
    try:
        records = query(connection, GATE_INPUTS_SQL).fetchall()
    finally:
        connection.close()
    damaged = [d.describe() for d in store.last_damage]
    timings["read"] = time.perf_counter() - started
    previous = sorted({r[1] for r in records if r[1] != policy.version})
    if not force and not previous:
        return ReevaluationResult(
            policy,
            [],
            0,
            [],
            {},
            skipped_reason=f"every stored decision already uses policy {policy.version}",
            damaged=damaged,
        )

    t0 = time.perf_counter()
    store.record_policy(policy)
    now = datetime.now(UTC)
    batch = new_batch_id()
    workers = min(os.cpu_count() or 1, 4) if len(records) >= PARALLEL_FROM and _can_fork() else 1
    step = -(-len(records) // workers)
    tasks = [
        (str(store.home.root), policy, (i, min(i + step, len(records))), now, batch)
        for i in range(0, len(records), step)
    ]
    _RECORDS = records
    try:
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                chunks = pool.map(_run_chunk, tasks)
        else:
            chunks = [_run_chunk(task) for task in tasks]
    finally:
        _RECORDS = []
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
    for table in ("decision_history", "decision_changes", "gate_checks", "gate_decisions", "cost_metrics"):
        store.tables.compact_if_needed(table)
    timings["compact"] = time.perf_counter() - t0

    report_errors: list[str] = []
    if refresh_reports and changes:
        t0 = time.perf_counter()
        report_errors = store.refresh_reports([c.spike_run_id for c in changes], policy)
        timings["reports"] = time.perf_counter() - t0
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
    )


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
