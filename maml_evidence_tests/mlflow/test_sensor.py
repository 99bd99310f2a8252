"""The MLflow sensor: ready spikes into the inbox's intake, bad ones quarantined once, decisions written back."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from maml_evidence.defs.mlflow_sensor import mlflow_settings
from maml_evidence_tests.mlflow.conftest import Experiment
from maml_evidence_tests.pipeline.conftest import Pipeline, defs, open_pipeline
from maml_evidence_tests.samples import SAMPLE_DECISIONS, SAMPLE_INBOX

SENSOR = "mlflow_spike_sensor"
SPIKE = "2026-11-03-translation-cost-too-high"


def tick(pipeline: Pipeline, cursor: str | None = None):  # Dagster's tick result has no public type
    sensor = defs().resolve_sensor_def(SENSOR)
    context = dg.build_sensor_context(
        instance=pipeline.instance, definitions=defs(), resources=pipeline.resources, cursor=cursor
    )
    return sensor.evaluate_tick(context)


def reasons(pipeline: Pipeline) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(pipeline.quarantine.glob("*.reason.txt"))]


def test_the_sensor_is_stopped_by_default_and_registered() -> None:
    sensor = defs().resolve_sensor_def(SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.job_name == "evaluate_spike_runs"


def test_settings_come_from_the_environment() -> None:
    settings = mlflow_settings({"MLFLOW_TRACKING_URI": "http://m:5000", "MAML_EVIDENCE_MLFLOW_EXPERIMENT": "e"})
    assert (settings.tracking_uri, settings.experiment, settings.accuracy_metric) == (
        "http://m:5000",
        "e",
        "val_accuracy",
    )
    assert not settings.write_back
    own = mlflow_settings(
        {
            "MLFLOW_TRACKING_URI": "http://m:5000",
            "MAML_EVIDENCE_MLFLOW_TRACKING_URI": "http://n:5000",
            "MAML_EVIDENCE_MLFLOW_EXPERIMENT": "e",
            "MAML_EVIDENCE_MLFLOW_ACCURACY_METRIC": "acc",
            "MAML_EVIDENCE_MLFLOW_WRITE_BACK": "true",
        }
    )
    assert (own.tracking_uri, own.accuracy_metric, own.write_back) == ("http://n:5000", "acc", True)
    assert not own.allow_unmatched_projects
    allowing = mlflow_settings(
        {
            "MLFLOW_TRACKING_URI": "u",
            "MAML_EVIDENCE_MLFLOW_EXPERIMENT": "e",
            "MAML_EVIDENCE_MLFLOW_ALLOW_UNMATCHED_PROJECTS": "1",
        }
    )
    assert allowing.allow_unmatched_projects
    with pytest.raises(dg.Failure, match="set MAML_EVIDENCE_MLFLOW_TRACKING_URI .*MAML_EVIDENCE_MLFLOW_EXPERIMENT"):
        mlflow_settings({})


def test_ticks_collect_quarantine_once_evaluate_and_write_back(
    tracking_uri: str, experiment: Experiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = json.loads((SAMPLE_INBOX / f"{SPIKE}.json").read_text(encoding="utf-8"))
    parent = experiment.log_payload(SPIKE, payload)
    broken = experiment.parent("broken-spike")
    experiment.run("nan", {"maml_evidence.spike_run_id": "broken-spike", "maml_evidence.arm": "sideways"})
    monkeypatch.setenv("MAML_EVIDENCE_MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MAML_EVIDENCE_MLFLOW_EXPERIMENT", experiment.name)
    with open_pipeline(tmp_path, monkeypatch) as pipeline:
        first = tick(pipeline)

        # the good spike: into the inbox, taken in as the inbox sensor does, one run requested
        assert pipeline.partitions() == [SPIKE]
        (request,) = first.run_requests
        assert request.tags["dagster/asset_partition_range_start"] == SPIKE
        assert (pipeline.inbox / f"{SPIKE}.json").is_file()
        assert pipeline.store.registry.current(SPIKE).accepted_by == "sensor"
        # the broken one: quarantined with a reason naming its runs
        (reason,) = reasons(pipeline)
        assert "spike_run_id: broken-spike" in reason and f"parent run {broken}" in reason
        assert f"MLflow run {experiment.runs['nan']}" in reason and "must be baseline or candidate" in reason

        second = tick(pipeline, first.cursor)
        assert not second.run_requests and len(reasons(pipeline)) == 1  # reported once while unchanged

        pipeline.run([SPIKE])
        report = json.loads((pipeline.home / "reports" / SPIKE / "report.json").read_text(encoding="utf-8"))
        assert report["decision"] == SAMPLE_DECISIONS[SPIKE]
        assert report["provenance"]["mlflow"]["parent_run_id"] == parent
        assert "maml_evidence.decision" not in experiment.client.get_run(parent).data.tags  # not asked for
        # the decision_report partition page links the runs
        [record] = pipeline.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("decision_report"), asset_partitions=[SPIKE]), limit=1
        ).records
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["mlflow_parent_run"].value == report["provenance"]["mlflow"]["parent_run_url"]
        assert parent in metadata["mlflow_runs"].value

        monkeypatch.setenv("MAML_EVIDENCE_MLFLOW_WRITE_BACK", "1")
        third = tick(pipeline, second.cursor)

        assert not third.run_requests
        tags = experiment.client.get_run(parent).data.tags
        assert tags["maml_evidence.decision"] == SAMPLE_DECISIONS[SPIKE]
        assert tags["maml_evidence.failed_check"] == report["failed_check"]
        assert tags["maml_evidence.evidence_grade"] == report["evidence"]["grade"]
        assert tags["maml_evidence.policy_version"] == report["provenance"]["policy_version"]


def test_an_unreachable_server_skips_the_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from maml_evidence_tests.mlflow.conftest import free_port

    monkeypatch.setenv("MAML_EVIDENCE_MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MAML_EVIDENCE_MLFLOW_EXPERIMENT", "spikes")
    with open_pipeline(tmp_path, monkeypatch) as pipeline:
        result = tick(pipeline, '{"earlier": "abc"}')
        assert not result.run_requests and "is unreachable" in (result.skip_message or "")
        assert result.cursor == '{"earlier": "abc"}'
        assert not any(pipeline.inbox.iterdir()) and not any(pipeline.quarantine.iterdir())
