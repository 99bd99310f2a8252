"""The sensor and a manual ingest take the same spike runs at the same moment: one evaluation, no lock errors."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from maml_evidence.definitions import defs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.headless import open_instance
from maml_evidence.store import EvidenceStore
from maml_evidence_tests.faults.conftest import copy_samples


def test_sensor_and_cli_at_once_evaluate_each_run_once(home: Path) -> None:
    ids = copy_samples(home / "inbox")
    store = EvidenceStore(home).ensure()
    cli = subprocess.Popen(
        [sys.executable, "-m", "maml_evidence.cli", "ingest", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    instance = open_instance(store)  # the CLI and the sensor share the evidence home's instance
    resources = {"evidence": EvidenceStoreResource(home=str(home))}
    sensor = defs.resolve_sensor_def("spike_inbox_sensor")
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=resources))
    for request in result.run_requests:
        run = defs.resolve_job_def("evaluate_spike_runs").execute_in_process(
            instance=instance, tags=request.tags, resources=resources
        )
        assert run.success
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, out + err
    assert "lock" not in (out + err).lower() and "Traceback" not in err

    # whoever took a spike run in first evaluated it; the other saw it unchanged
    accepted_by_cli = {line.split()[1] for line in out.splitlines() if "(accepted" in line}
    requested_by_sensor = set()
    for request in result.run_requests:
        keys = instance.get_dynamic_partitions("spike_runs")
        start = keys.index(request.tags["dagster/asset_partition_range_start"])
        end = keys.index(request.tags["dagster/asset_partition_range_end"])
        requested_by_sensor |= set(keys[start : end + 1])
    assert accepted_by_cli | requested_by_sensor == set(ids)
    assert not accepted_by_cli & requested_by_sensor

    connection = store.connect()
    try:
        rows = connection.execute("SELECT spike_run_id, count(*) FROM gate_decisions GROUP BY 1").fetchall()
        history = dict(connection.execute("SELECT spike_run_id, count(*) FROM decision_history GROUP BY 1").fetchall())
    finally:
        connection.close()
    assert sorted(r[0] for r in rows) == ids and all(r[1] == 1 for r in rows)
    assert all(history[i] == 1 for i in ids), history
    instance.dispose()
