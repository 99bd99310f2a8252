"""Many partitions materialized at once by separate processes while readers query the store."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter

import dagster as dg
import duckdb

from maml_evidence.store.catalog import query
from maml_evidence.store.schema import TABLES
from maml_evidence_tests.pipeline.conftest import SAMPLE_DECISIONS, Pipeline, sample, subprocess_env

WRITERS = 8
SAMPLES = list(SAMPLE_DECISIONS)
EXPECTED = {f"concurrent-{i:02d}": SAMPLE_DECISIONS[SAMPLES[i % len(SAMPLES)]] for i in range(WRITERS)}

# One Dagster run of one partition, in its own process, on the instance and evidence home of the environment.
WRITER = """
import sys
import dagster as dg
from maml_evidence.definitions import defs

result = defs.resolve_job_def("evaluate_spike_runs").execute_in_process(
    instance=dg.DagsterInstance.get(),
    partition_key=sys.argv[1],
    run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    raise_on_error=False,
)
for event in result.all_events:
    if event.is_step_failure:
        print(event.step_key, event.step_failure_data.error.message, file=sys.stderr)
sys.exit(0 if result.success else 1)
"""


def read_until(stop: threading.Event, pipeline: Pipeline, errors: list[str], counts: Counter) -> None:
    """Query the store the two ways users do, as fast as possible, until told to stop."""
    catalog = duckdb.connect(str(pipeline.home / "evidence.duckdb"), read_only=True)
    try:
        while not stop.is_set():
            try:
                query(catalog, "SELECT decision, count(*) FROM gate_decisions GROUP BY ALL").fetchall()
                query(catalog, "SELECT count(*) FROM gate_checks JOIN spike_runs USING (spike_run_id)").fetchall()
                counts["catalog"] += 1
                pipeline.store.decisions()
                counts["store"] += 1
                time.sleep(0.02)  # leave the two cores mostly to the writers
            except Exception as exc:  # noqa: BLE001 - every failure is what this test looks for
                errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        catalog.close()


def compact_until(stop: threading.Event, pipeline: Pipeline, errors: list[str], counts: Counter) -> None:
    """Compact every table repeatedly, as writers do once a table has many batch files."""
    tables = pipeline.store.tables
    while not stop.is_set():
        for name in TABLES:
            try:
                counts["compactions"] += tables.compact(name)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"compact {name}: {type(exc).__name__}: {exc}")
        time.sleep(0.2)


def test_eight_partitions_materialized_by_separate_processes_while_readers_query(pipeline_env: Pipeline) -> None:
    paths = [
        pipeline_env.drop(f"{i}.json", sample(SAMPLES[n % len(SAMPLES)], spike_run_id=i))
        for n, i in enumerate(EXPECTED)
    ]
    assert [r.spike_run_id for r in pipeline_env.intake(paths)] == list(EXPECTED)
    pipeline_env.ingest({"warm-up": sample(SAMPLES[0], spike_run_id="warm-up")})  # views have data to read

    stop, errors, counts = threading.Event(), [], Counter()
    helpers = [
        threading.Thread(target=read_until, args=(stop, pipeline_env, errors, counts)),
        threading.Thread(target=compact_until, args=(stop, pipeline_env, errors, counts)),
    ]
    for helper in helpers:
        helper.start()
    try:
        writers = {
            key: subprocess.Popen(
                [sys.executable, "-c", WRITER, key],
                env=subprocess_env(pipeline_env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for key in EXPECTED
        }
        outcomes = {key: (w.wait(timeout=180), w.communicate()[1]) for key, w in writers.items()}
    finally:
        stop.set()
        for helper in helpers:
            helper.join(timeout=60)

    failed = {key: err[-2000:] for key, (code, err) in outcomes.items() if code != 0}
    assert failed == {}
    assert not any("lock" in err.lower() for _code, err in outcomes.values())
    assert errors == [], "\n".join(errors)
    assert counts["catalog"] > 0 and counts["store"] > 0, counts

    per_run = dict(pipeline_env.sql("SELECT spike_run_id, count(*) FROM gate_decisions GROUP BY ALL"))
    assert per_run == {**dict.fromkeys(EXPECTED, 1), "warm-up": 1}
    decisions = {k: v["decision"] for k, v in pipeline_env.store.decisions(list(EXPECTED)).items()}
    assert decisions == EXPECTED
    checks = dict(pipeline_env.sql("SELECT spike_run_id, count(*) FROM gate_checks GROUP BY ALL"))
    assert checks == {**dict.fromkeys(EXPECTED, 5), "warm-up": 5}

    instance = pipeline_env.instance
    assert len(instance.get_runs()) == WRITERS + 1
    for asset in ("spike_payload", "decision_report", "interpretation"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=list(EXPECTED)), limit=100
        ).records
        assert Counter(r.partition_key for r in records) == Counter(list(EXPECTED)), asset
    gate = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("decision_report"), "maml_gate"), limit=100
    )
    assert Counter(r.partition for r in gate if r.partition in EXPECTED) == Counter(list(EXPECTED))
