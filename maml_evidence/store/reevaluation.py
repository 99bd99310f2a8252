"""Re-judging history in bulk when the threshold policy changes.

The gate core's ``judge`` runs over the stored per-run metrics (no payload is re-read or re-validated), and the
new decisions, checks, history and flips commit as one batch through the store's commit protocol. Reports and
interpretations are rewritten only for spike runs whose decision changed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.func import FunctionNullHandling

from maml_evidence.gate import ENABLE, THRESHOLD_KEYS, GateInputs, Verdict, flip_cause, judge
from maml_evidence.gate.decision import CHECK_TABLE, FIXED_LIMITS, CheckSpec, plan, show_number
from maml_evidence.gate.economics import INPUT_KEYS
from maml_evidence.gate.metrics import extra_gpu_cost_usd
from maml_evidence.gate.thresholds import ECONOMICS_KEYS, Settings, effective_settings
from maml_evidence.policy import Policy
from maml_evidence.store import judging, rows
from maml_evidence.store.catalog import query
from maml_evidence.store.commit import ReportTask, commit, decisions_lock
from maml_evidence.store.evidence import REEVALUATION, EvidenceStore, sources_json
from maml_evidence.store.home import StoreError
from maml_evidence.store.schema import COMMITS, TABLES, THRESHOLD_TYPES
from maml_evidence.store.sqltext import ident, literal
from maml_evidence.store.tables import new_batch_id

LOG = logging.getLogger("maml_evidence")
PAIR = "settings_pair"  # the number of a spike run's settings pair (a row of the table ``settings``)
GATE_INPUTS_SQL = """
SELECT d.spike_run_id, d.policy_version AS old_policy_version, d.decision AS old_decision,
       d.failed_check AS old_failed_check, r.revision,
       a.common_project_count, a.baseline_mean_steps, a.baseline_max_steps,
       a.mean_step_reduction, a.relative_step_reduction, acc.mean_accuracy_regression_pp,
       c.extra_training_minutes, c.training_overhead_pct,
       coalesce(acc.worst_project_accuracy_regression_pp, 0.0) AS worst_project_accuracy_regression_pp,
       acc.worst_accuracy_project, coalesce(a.candidate_unreached_projects, 0) AS candidate_unreached_projects,
       e.step_reduction_p_value, e.upper95_regression_pp,
       e.spike_run_id IS NOT NULL AS has_evidence, e.grade AS old_grade,
       d.min_relative_step_reduction AS old_min_relative_step_reduction,
       d.max_mean_accuracy_regression_pp AS old_max_mean_accuracy_regression_pp,
       r.payload_thresholds, r.payload_cost_profile,
       c.gpu_hour_usd AS old_gpu_hour_usd, c.gpu_hour_usd_source AS old_gpu_hour_usd_source,
       c.baseline_train_minutes, c.baseline_meta_train_minutes,
       c.candidate_train_minutes, c.candidate_meta_train_minutes
FROM gate_decisions d
JOIN spike_runs r USING (spike_run_id)
JOIN adaptation_summary a USING (spike_run_id)
JOIN accuracy_summary acc USING (spike_run_id)
JOIN cost_metrics c USING (spike_run_id)
LEFT JOIN evidence_strength e USING (spike_run_id)
"""
# The spike runs ``judge_history`` finds flipped, with the check that caused each flip (the gate core's
# ``flip_cause``, which ``judge_history`` registers): what re-evaluation records and a what-if shows.
FLIPPED = (
    "(SELECT *, gate_flip_cause(old_failed_check, failed_check) AS cause FROM judged WHERE decision != old_decision)"
)


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
    # per flipped spike run: its stored gate inputs and settings, judged again only if asked (``changed_verdicts``)
    changed_inputs: dict[str, tuple[tuple[Any, ...], Settings]] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)
    report_errors: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    def changed_verdicts(self) -> dict[str, Verdict]:
        """The scalar gate's verdict of every flipped spike run (for Dagster's per-partition check records)."""
        return {run_id: verdict for run_id, (verdict, _, _) in self.changed_judgements().items()}

    def changed_judgements(self) -> dict[str, tuple[Verdict, GateInputs, Settings]]:
        """Every flipped spike run judged again by the scalar gate, with the inputs and settings behind it."""
        found = {}
        for run_id, (values, settings) in self.changed_inputs.items():
            inputs = GateInputs(*values)
            found[run_id] = (judge(inputs, settings.thresholds, settings.gpu_hour_usd), inputs, settings)
        return found


def stale_policy_versions(store: EvidenceStore, policy: Policy) -> list[str]:
    """Policy versions of current decisions that differ from ``policy`` (empty: history is up to date)."""
    connection = store.connect()
    try:
        found = query(connection, "SELECT DISTINCT policy_version FROM gate_decisions").fetchall()
    finally:
        connection.close()
    return sorted(v for (v,) in found if v != policy.version)


def _settings_table(policy: Policy, pairs: list[tuple[str, str]]) -> tuple[pa.Table, dict[tuple[str, str], Settings]]:
    """The settings each distinct pair of payload overrides is judged under, one row per pair."""
    resolved = {
        (t, c): effective_settings(policy.values, json.loads(t or "{}"), json.loads(c or "{}")) for t, c in pairs
    }
    columns: dict[str, list[object]] = {
        "payload_thresholds": [t for t, _ in resolved],
        "payload_cost_profile": [c for _, c in resolved],
        **{key: [s.values[key] for s in resolved.values()] for key in THRESHOLD_KEYS},
        "gpu_hour_usd": [s.gpu_hour_usd for s in resolved.values()],
        "threshold_sources": [sources_json(s.sources) for s in resolved.values()],
        "gpu_hour_usd_source": [s.sources["gpu_hour_usd"] for s in resolved.values()],
    }
    for key, value in FIXED_LIMITS.items():
        columns[key] = [value] * len(resolved)
    # the break-even inputs in force, to find the cost_breakeven rows a policy change makes stale
    for key in ECONOMICS_KEYS:
        columns[key] = [None if s.values[key] is None else float(s.values[key]) for s in resolved.values()]  # type: ignore[arg-type]
    columns["breakeven_sources"] = [json.dumps({k: s.sources[k] for k in INPUT_KEYS}) for s in resolved.values()]
    # which optional checks run under each pair, by the gate core's own rule
    for check in CHECK_TABLE:
        if check.enabled_by is not None:
            columns[judging.enabled_column(check)] = [check in plan(s.thresholds).checks for s in resolved.values()]
    # the thresholds and the price as sentences show them, by the gate core's own formatting (once per pair)
    for key in (*THRESHOLD_KEYS, "gpu_hour_usd", *FIXED_LIMITS):
        columns[f"shown_{key}"] = [show_number(key, (s.values | FIXED_LIMITS)[key]) for s in resolved.values()]
    types = {**THRESHOLD_TYPES, **dict.fromkeys(ECONOMICS_KEYS, pa.float64())}
    return pa.table({k: pa.array(v, type=types.get(k)) for k, v in columns.items()}), resolved


def _select(table: str, expressions: dict[str, str], source: str) -> str:
    """A SELECT of ``table``'s declared columns, each from ``expressions`` or the same-named source column."""
    names = TABLES[table].column_names
    return "SELECT " + ", ".join(f"{expressions.get(n, n)} AS {n}" for n in names) + f" FROM {source}"


def judge_history(connection: duckdb.DuckDBPyConnection, policy: Policy) -> dict[tuple[str, str], Settings]:
    """Every evaluated spike run judged column-wise with the gate's check table, as the view ``judged``.

    Returns the settings each distinct pair of payload overrides is judged under. The verdicts are materialized
    narrow (table ``verdicts``: the stored inputs, the outcome and the number of the settings pair), and
    ``judged`` joins each row to its pair's settings (table ``settings``, one row per pair) when it is read: the
    per-pair columns (threshold sources and every threshold as sentences show it, some 20 strings) copied into
    100,000 rows took a third of the judging time and memory.
    """
    pairs = connection.execute("SELECT DISTINCT payload_thresholds, payload_cost_profile FROM spike_runs").fetchall()
    settings, resolved = _settings_table(policy, pairs)
    settings = settings.append_column(PAIR, pa.array(range(settings.num_rows), pa.int32()))
    # tables and views of the connection's own in-memory database, not temporary ones: other cursors of it can
    # read them too
    connection.register("settings_of_pairs", settings)
    connection.execute("CREATE TABLE settings AS SELECT * FROM settings_of_pairs")
    connection.unregister("settings_of_pairs")
    # the spec's cost model, by the gate core's own function (DuckDB calls it per row)
    connection.create_function(
        "gate_extra_gpu_cost_usd", extra_gpu_cost_usd, ["DOUBLE", "DOUBLE"], "DOUBLE", side_effects=False
    )
    connection.create_function(
        "gate_flip_cause",
        flip_cause,
        ["VARCHAR", "VARCHAR"],
        "VARCHAR",
        null_handling=FunctionNullHandling.SPECIAL,  # no failed check (null) is an argument too
        side_effects=False,
    )
    decision, failed = judging.decision_sql()
    per_pair = ", ".join(ident(name) for name in settings.column_names if name != PAIR)
    query(
        connection,
        f"CREATE TABLE verdicts AS SELECT * EXCLUDE ({per_pair}), {decision} AS decision, {failed} AS failed_check, "
        f"{judging.grade_sql()} AS grade "
        f"FROM (SELECT *, {judging.flags_sql()} FROM (SELECT *, "
        "gate_extra_gpu_cost_usd(extra_training_minutes, gpu_hour_usd) AS extra_gpu_cost_usd_per_run "
        f"FROM ({GATE_INPUTS_SQL}) JOIN settings USING (payload_thresholds, payload_cost_profile)))",
    )
    connection.execute(f"CREATE VIEW judged AS SELECT * FROM verdicts JOIN settings USING ({PAIR})")
    return resolved


def _write(
    store: EvidenceStore,
    connection: duckdb.DuckDBPyConnection,
    policy: Policy,
    resolved: dict[tuple[str, str], Settings],
    now: datetime,
    batch: str,
) -> tuple[dict[str, int], list[Change], dict[str, tuple[tuple[Any, ...], Settings]]]:
    """Write the ``judged`` spike runs' rows into the (uncommitted) batch; returns the mix and the flips."""
    for macro in judging.MACROS:
        connection.execute(macro)
    connection.execute("SET preserve_insertion_order = false")  # lets DuckDB write each file on every core
    # the checks that run under at least one pair of settings: the others have no rows, sentences or values to show
    running = [c for c in CHECK_TABLE if any(c in plan(s.thresholds).checks for s in resolved.values())]
    sentences = _sentences(running, "judged")
    ids = [run_id for (run_id,) in connection.execute("SELECT spike_run_id FROM verdicts").fetchall()]
    at = f"TIMESTAMPTZ {literal(now.isoformat())}"
    constants = {
        "maml_recommended": f"decision = {literal(ENABLE)}",
        "policy_version": literal(policy.version),
        "trigger": literal(REEVALUATION),
        "evaluated_at": at,
    }
    # the price in force goes into cost_metrics before the decisions commit; a crash in between leaves the
    # decisions under the old policy, so the next re-evaluation redoes (and agrees with) it
    repriced = "judged WHERE gpu_hour_usd IS DISTINCT FROM old_gpu_hour_usd " \
        "OR gpu_hour_usd_source IS DISTINCT FROM old_gpu_hour_usd_source"  # fmt: skip
    repriced_ids = [r for (r,) in connection.execute(f"SELECT spike_run_id FROM {repriced}").fetchall()]
    if repriced_ids:
        store.tables.write_query("cost_metrics", connection, _select("cost_metrics", {}, repriced), repriced_ids, batch)
    checks = " UNION ALL ".join(judging.check_rows_sql("shown", check, at) for check in running)
    checks = f"WITH shown AS MATERIALIZED {sentences} {checks}"
    # The check rows (their sentences) take most of the time, on one core: ``verdicts`` is a single row group.
    # Everything else is written meanwhile on a second cursor (DuckDB releases the GIL).
    side = connection.cursor()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            decided = pool.submit(_decide, store, side, policy, resolved, running, constants, ids, now, batch)
            store.tables.write_query("gate_checks", connection, checks, ids, batch)
            return decided.result()
    finally:
        side.close()


def _decide(
    store: EvidenceStore,
    cursor: duckdb.DuckDBPyConnection,
    policy: Policy,
    resolved: dict[tuple[str, str], Settings],
    running: list[CheckSpec],
    constants: dict[str, str],
    ids: list[str],
    now: datetime,
    batch: str,
) -> tuple[dict[str, int], list[Change], dict[str, tuple[tuple[Any, ...], Settings]]]:
    """The ``judged`` spike runs' decisions, history, flips and stale break-even rows, into the batch.

    Returns the decision mix and the flips.
    """
    store.tables.write_query("gate_decisions", cursor, _select("gate_decisions", constants, "judged"), ids, batch)
    store.tables.write_query("decision_history", cursor, _select("decision_history", constants, "judged"), ids, batch)
    mix = dict(cursor.execute("SELECT decision, count(*) FROM verdicts GROUP BY ALL").fetchall())
    changes, verdicts = _write_changes(store, cursor, policy, resolved, running, now, batch)
    _refresh_breakeven(store, cursor, policy, resolved, batch)
    return mix, changes, verdicts


def _write_changes(
    store: EvidenceStore,
    cursor: duckdb.DuckDBPyConnection,
    policy: Policy,
    resolved: dict[tuple[str, str], Settings],
    running: list[CheckSpec],
    now: datetime,
    batch: str,
) -> tuple[list[Change], dict[str, tuple[tuple[Any, ...], Settings]]]:
    """The ``decision_changes`` rows of the spike runs whose decision flipped, into the batch."""
    for macro in judging.MACROS:  # temporary macros belong to one cursor
        cursor.execute(macro)
    # the detail is the sentence of the check that caused the flip (``flip_cause``, by the gate core), as it came
    # out under the new policy; none where that check no longer runs for the spike run
    details = " ".join(
        f"WHEN {literal(check.name)} THEN CASE WHEN {ident(check.name)} IS NOT NULL "
        f"THEN {judging.reason_sql(check)} END"
        for check in running
    )
    inputs = list(GateInputs.__annotations__)
    flipped = cursor.execute(
        "SELECT spike_run_id, old_decision, decision, old_policy_version, cause, "
        f"CASE cause {details} END AS detail, payload_thresholds, payload_cost_profile, {', '.join(inputs)} "
        f"FROM {_sentences(running, FLIPPED)} ORDER BY spike_run_id"
    )
    at = {column[0]: index for index, column in enumerate(flipped.description)}  # each column by its name
    inputs_of = itemgetter(*(at[name] for name in inputs))
    changes: list[Change] = []
    verdicts: dict[str, tuple[tuple[Any, ...], Settings]] = {}
    change_rows = []
    for row in flipped.fetchall():
        run_id, cause = row[at["spike_run_id"]], row[at["cause"]]
        detail = row[at["detail"]] or (_not_run(cause) if cause else "")
        old, new = row[at["old_decision"]], row[at["decision"]]
        changes.append(Change(run_id, old, new, cause, detail))
        verdicts[run_id] = (inputs_of(row), resolved[(row[at["payload_thresholds"]], row[at["payload_cost_profile"]])])
        change_rows.append(
            {
                "spike_run_id": run_id,
                "from_policy_version": row[at["old_policy_version"]],
                "to_policy_version": policy.version,
                "from_decision": old,
                "to_decision": new,
                "cause_check": cause,
                "cause_detail": detail,
                "changed_at": now,
            }
        )
    if change_rows:
        store.tables.write("decision_changes", change_rows, [c.spike_run_id for c in changes], batch=batch)
    return changes, verdicts


def _sentences(running: Sequence[CheckSpec], source: str) -> str:
    """``source`` with ``shown_<name>`` of every value the ``running`` checks' sentences show (``judging``).

    The thresholds and the price are shown by the settings table (once per pair), the rest here.
    """
    per_pair = {*THRESHOLD_KEYS, "gpu_hour_usd", *FIXED_LIMITS}
    printed, shown = judging.shown_columns([n for n in judging.sentence_names(running) if n not in per_pair])
    return f"(SELECT *, {shown} FROM (SELECT *, {printed} FROM {source}))"


def _not_run(check_name: str) -> str:
    """The detail of a flip caused by an optional check that no longer runs (its setting was switched off)."""
    setting = next(c.enabled_by for c in CHECK_TABLE if c.name == check_name)
    return f"{check_name} does not run under this policy ({setting} is not set)."


# Spike runs whose cost_breakeven row has other inputs than the new policy gives (price, break-even keys, sources).
STALE_BREAKEVEN_SQL = """
SELECT j.spike_run_id, j.payload_thresholds, j.payload_cost_profile, j.mean_step_reduction,
       j.extra_gpu_cost_usd_per_run
FROM judged j JOIN cost_breakeven b USING (spike_run_id)
WHERE j.gpu_hour_usd IS DISTINCT FROM b.gpu_hour_usd
   OR j.minutes_per_adaptation_step IS DISTINCT FROM b.minutes_per_adaptation_step
   OR j.adaptations_per_month IS DISTINCT FROM b.adaptations_per_month
   OR j.training_runs_per_month IS DISTINCT FROM b.training_runs_per_month
   OR j.breakeven_sources IS DISTINCT FROM b.sources
ORDER BY j.spike_run_id
"""


def _refresh_breakeven(
    store: EvidenceStore,
    connection: duckdb.DuckDBPyConnection,
    policy: Policy,
    resolved: dict[tuple[str, str], Settings],
    batch: str,
) -> int:
    """Write the break-even rows whose inputs the policy changes (by the gate's ``economics``); how many."""
    found = connection.execute(STALE_BREAKEVEN_SQL).fetchall()
    fresh = [
        rows.breakeven_row(run_id, reduction, extra_cost, resolved[(thresholds, cost)], policy.version)
        for run_id, thresholds, cost, reduction, extra_cost in found
    ]
    if fresh:
        store.tables.write("cost_breakeven", fresh, [row["spike_run_id"] for row in fresh], batch=batch)  # type: ignore[misc]
    return len(fresh)


# Spike runs whose evidence row the new policy makes stale: its grade changes, or a threshold the section's
# accuracy verdict or needed-projects figure depends on does.
STALE_EVIDENCE_SQL = """
SELECT spike_run_id FROM judged WHERE has_evidence AND (grade IS DISTINCT FROM old_grade
    OR min_relative_step_reduction IS DISTINCT FROM old_min_relative_step_reduction
    OR max_mean_accuracy_regression_pp IS DISTINCT FROM old_max_mean_accuracy_regression_pp)
ORDER BY spike_run_id
"""


def _refresh_evidence(
    store: EvidenceStore, connection: duckdb.DuckDBPyConnection, policy: Policy, now: datetime, batch: str
) -> list[str]:
    """Measure again, from its stored payload, each spike run whose evidence row the policy makes stale.

    The grade is found stale column-wise (``judging.grade_sql``); the section itself (power, sentences) needs
    scipy, about 1 ms a spike run. A run whose payload cannot be read keeps its row and is logged (``doctor``).
    Returns the runs refreshed (their reports are rewritten too).
    """
    stale = [run_id for (run_id,) in connection.execute(STALE_EVIDENCE_SQL).fetchall()]
    refreshed, rows_ = [], []
    for run_id in stale:
        try:
            [evaluation] = store.evaluate([run_id], policy)
        except StoreError as exc:
            LOG.warning("evidence of %s not refreshed: %s (run `maml-evidence doctor`)", run_id, exc)
            continue
        rows_.append(rows.evidence_row(run_id, evaluation.evidence, evaluation.metrics.inputs, policy.version, now))
        refreshed.append(run_id)
    if rows_:
        store.tables.write("evidence_strength", rows_, refreshed, batch=batch)
    return refreshed


def reevaluate(
    store: EvidenceStore, policy: Policy | None = None, *, force: bool = False, refresh_reports: bool = True
) -> ReevaluationResult:
    """Re-judge every stored spike run under ``policy`` (default: the policy file in force).

    The gate's check table runs column-wise in DuckDB over the stored gate inputs, the rows are written as one
    uncommitted batch, which then commits at once through the store's one commit protocol
    (``store/commit.py``); the reports of flipped spike runs are rewritten.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    policy = policy if policy is not None else store.policy()
    with decisions_lock(store) as recovered:
        connection = store.connect()
        try:
            resolved = judge_history(connection, policy)
            damaged = [d.describe() for d in store.last_damage]
            (count,) = connection.execute("SELECT count(*) FROM verdicts").fetchone()  # type: ignore[misc]
            previous = sorted(
                v for (v,) in connection.execute("SELECT DISTINCT old_policy_version FROM verdicts").fetchall()
                if v != policy.version
            )  # fmt: skip
            timings["read_and_judge"] = time.perf_counter() - started
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
            mix, changes, changed_inputs = _write(store, connection, policy, resolved, now, batch)
            refreshed = _refresh_evidence(store, connection, policy, now, batch)
            timings["write"] = time.perf_counter() - t0
        finally:
            connection.close()

        t0 = time.perf_counter()
        rewritten = sorted({c.spike_run_id for c in changes} | set(refreshed))  # decision or evidence changed
        reports = [ReportTask(run_id, policy.version, REEVALUATION) for run_id in rewritten] if refresh_reports else []
        report_errors = commit(store, batch, REEVALUATION, now, [policy.version], count, reports)
        timings["commit_and_reports"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for table in (
        "decision_history",
        "decision_changes",
        "gate_checks",
        "gate_decisions",
        "cost_metrics",
        "evidence_strength",
        COMMITS,
    ):
        store.tables.compact_if_needed(table)
    timings["compact"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    return ReevaluationResult(
        policy,
        previous,
        count,
        changes,
        mix,
        timings=timings,
        changed_inputs=changed_inputs,
        damaged=damaged,
        report_errors=report_errors,
        recovered=recovered,
    )


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
