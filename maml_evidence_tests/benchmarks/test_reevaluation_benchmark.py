"""Issue 4's benchmark: 100,000 stored spike runs re-judged in bulk after a policy change, and a history query.

Prints the figures; asserts only correctness (counts, and a sample checked against the gate core), never a
wall-clock time. Run it with ``MAML_EVIDENCE_BENCHMARKS=1 pytest maml_evidence_tests/benchmarks -s``.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import time
from pathlib import Path

import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.policy import load_policy
from maml_evidence.store import EvidenceStore
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence.store.sql import run_query
from maml_evidence_tests.benchmarks.seed import seed_store
from maml_evidence_tests.generator import generate_payloads

SPIKE_RUNS = 100_000
SEED = 141
SAMPLE_EVERY = 997  # a prime stride: the sample covers every intended decision
POLICY = {
    "max_extra_gpu_cost_usd_per_run": 3.0,
    "max_training_overhead_pct": 90.0,
    "max_mean_accuracy_regression_pp": 2.5,
}
MIX_OVER_TIME = (
    "SELECT date_trunc('week', r.accepted_at) AS week, d.decision, count(*) AS runs "
    "FROM gate_decisions d JOIN spike_runs r USING (spike_run_id) GROUP BY ALL ORDER BY week, decision"
)
LATEST_CHANGES = (
    "SELECT spike_run_id, from_decision, to_decision, cause_check FROM decision_changes "
    "WHERE to_policy_version = '{version}'"
)


def timed(function, repeats: int = 5) -> tuple[float, object]:  # noqa: ANN001 - any callable
    timings, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), result


@pytest.mark.benchmark
def test_reevaluate_100k_spike_runs(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence").ensure()
    started = time.perf_counter()
    seed_mix = seed_store(store, SPIKE_RUNS, seed=SEED)
    seed_seconds = time.perf_counter() - started
    assert sum(seed_mix.values()) == SPIKE_RUNS

    old_version = store.policy().version
    store.home.policy_file.write_text("".join(f"{k} = {v}\n" for k, v in POLICY.items()), encoding="utf-8")
    new_version = load_policy(store.home.policy_file).version
    assert new_version != old_version

    started, cpu_started = time.perf_counter(), time.process_time()
    result = reevaluate(store, refresh_reports=False)
    reevaluate_seconds = time.perf_counter() - started
    reevaluate_cpu_seconds = time.process_time() - cpu_started  # less sensitive to other load on a shared machine

    # correctness: every run judged once, history and flips recorded, nothing duplicated
    assert result.evaluated == SPIKE_RUNS
    assert result.previous_versions == [old_version]
    assert sum(result.decision_mix.values()) == SPIKE_RUNS
    connection = store.connect()
    try:
        count = lambda sql, *p: connection.execute(sql, list(p)).fetchone()[0]  # noqa: E731
        assert count("SELECT count(*) FROM gate_decisions") == SPIKE_RUNS
        assert count("SELECT count(*) FROM gate_decisions WHERE policy_version = ?", new_version) == SPIKE_RUNS
        assert count("SELECT count(*) FROM gate_checks") == 5 * SPIKE_RUNS
        assert count("SELECT count(*) FROM decision_history") == 2 * SPIKE_RUNS
        assert count("SELECT count(*) FROM decision_changes") == len(result.changes) > 0
        stored_mix = dict(connection.execute("SELECT decision, count(*) FROM gate_decisions GROUP BY ALL").fetchall())
        assert stored_mix == result.decision_mix
        sample_ids = [f"bench-{SEED}-{i:06d}" for i in range(0, SPIKE_RUNS, SAMPLE_EVERY)]
        stored = dict(
            connection.execute(
                "SELECT spike_run_id, decision FROM gate_decisions WHERE list_contains(?, spike_run_id)", [sample_ids]
            ).fetchall()
        )
    finally:
        connection.close()
    flipped = {c.spike_run_id for c in result.changes}
    sample = itertools.islice(generate_payloads(SPIKE_RUNS, SEED), 0, None, SAMPLE_EVERY)
    for payload in sample:
        run_id = str(payload["spike_run_id"])
        before = evaluate_feasibility(payload)["decision"]
        after = evaluate_feasibility(payload, policy=POLICY)["decision"]
        assert stored[run_id] == after, run_id
        assert (run_id in flipped) is (before != after), run_id

    mix_seconds, mix = timed(lambda: run_query(store.home, MIX_OVER_TIME))
    assert sum(row[2] for row in mix.rows) == SPIKE_RUNS  # type: ignore[attr-defined]
    changes_seconds, changes = timed(lambda: run_query(store.home, LATEST_CHANGES.format(version=new_version)))
    assert len(changes.rows) == len(result.changes)  # type: ignore[attr-defined]

    again_seconds, again = timed(lambda: reevaluate(store, refresh_reports=False), repeats=1)
    assert again.skipped_reason  # type: ignore[attr-defined]

    figures = {
        "spike_runs": SPIKE_RUNS,
        "seeding_seconds_not_timed": round(seed_seconds, 1),
        "reevaluate_seconds": round(reevaluate_seconds, 2),
        "reevaluate_cpu_seconds": round(reevaluate_cpu_seconds, 2),
        "reevaluate_phases_seconds": {k: round(v, 2) for k, v in result.timings.items()},
        "decisions_changed": len(result.changes),
        "decision_mix_before": dict(sorted(seed_mix.items())),
        "decision_mix_after": dict(sorted(result.decision_mix.items())),
        "history_query_decision_mix_by_week_median_seconds": round(mix_seconds, 3),
        "history_query_latest_changes_median_seconds": round(changes_seconds, 3),
        "reevaluate_again_noop_seconds": round(again_seconds, 2),
        "target_seconds": 5.0,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print("\nre-evaluation benchmark:", json.dumps(figures, indent=2))
