"""The code location loads, validates with Dagster's own command, and declares what the UI shows."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from maml_evidence_tests.pipeline.conftest import EVALUATE_JOB, SENSOR, defs
from maml_evidence_tests.samples import BIN, REPO_ROOT, SPIKE_ASSET_NAMES, prepare_dagster_home

SPIKE_ASSETS = SPIKE_ASSET_NAMES
CHECKS = {
    ("adaptation_metrics", "enough_projects"),
    ("adaptation_metrics", "adaptation_triggered"),
    ("adaptation_metrics", "effectiveness_ok"),
    ("accuracy_metrics", "accuracy_ok"),
    ("cost_metrics", "cost_ok"),
    ("accuracy_metrics", "project_accuracy_ok"),
    ("decision_report", "evidence_strength"),
    ("decision_report", "maml_gate"),
}


@pytest.mark.parametrize(
    "target", [["-m", "maml_evidence.definitions"], ["-w", "workspace.yaml"]], ids=["module", "workspace"]
)
def test_dagster_definitions_validate_passes(target: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(prepare_dagster_home(tmp_path / "dagster_home"))}
    env.pop("MAML_EVIDENCE_HOME", None)
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", *target],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_spike_assets_are_partitioned_single_run_and_described() -> None:
    graph = defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(SPIKE_ASSETS) <= keys
    nodes = [graph.get(dg.AssetKey(name)) for name in SPIKE_ASSETS]
    assert len({n.group_name for n in nodes}) == 1 and nodes[0].group_name != "default"
    for node in nodes:
        name = node.key.to_user_string()
        assert node.description, name
        assert node.owners, name
        assert node.kinds, name
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition), name
        assert node.partitions_def.name == "spike_runs"
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
    metric_kinds = graph.get(dg.AssetKey("adaptation_metrics")).kinds
    assert {"duckdb", "parquet"} <= metric_kinds


def test_the_six_gate_checks_sit_on_the_assets_they_judge() -> None:
    graph = defs().resolve_asset_graph()
    found = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert found >= CHECKS
    for asset, name in CHECKS:
        spec = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey(asset), name))
        assert spec.description, name
        assert spec.partitions_def is not None and spec.partitions_def.name == "spike_runs", name


def test_inbox_sensor_runs_by_default_and_targets_the_evaluate_job() -> None:
    sensor = defs().resolve_sensor_def(SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == EVALUATE_JOB
    assert sensor.description


def test_evaluate_job_covers_exactly_the_spike_assets_and_their_checks() -> None:
    job = defs().resolve_job_def(EVALUATE_JOB)
    # and the pictures of history, so that every ingest refreshes them (one unpartitioned step per run)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {*SPIKE_ASSETS, "evidence_overview"}
    check_keys = {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph.asset_check_keys}
    assert check_keys >= CHECKS
    assert isinstance(job.partitions_def, dg.DynamicPartitionsDefinition)
