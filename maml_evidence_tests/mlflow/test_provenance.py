"""A collected payload names the runs it came from, and reports link to them."""

from __future__ import annotations

import json

from maml_evidence.sources.mlflow import MlflowSource
from maml_evidence.sources.provenance import mlflow_provenance, run_url
from maml_evidence_tests.mlflow.conftest import Experiment
from maml_evidence_tests.samples import SAMPLE_INBOX

SPIKE = "2026-11-03-translation-cost-too-high"


def test_source_names_the_parent_and_every_run_behind_the_payload(tracking_uri: str, experiment: Experiment) -> None:
    payload = json.loads((SAMPLE_INBOX / f"{SPIKE}.json").read_text(encoding="utf-8"))
    parent = experiment.log_payload(SPIKE, payload)

    (result,) = MlflowSource(tracking_uri, experiment.name).collect()

    source = result.payload["source"]["mlflow"]
    runs = experiment.runs
    assert source["tracking_uri"] == tracking_uri
    assert source["experiment_id"] == experiment.experiment_id
    assert source["experiment_name"] == experiment.name
    assert source["parent_run_id"] == parent == result.parent_run_id
    assert source["parent_run_url"] == f"{tracking_uri}/#/experiments/{experiment.experiment_id}/runs/{parent}"
    for arm in ("baseline", "candidate"):
        arm_source = source["arms"][arm]
        assert arm_source["train_run_id"] == runs[f"{SPIKE}/{arm}/train"]
        assert arm_source["meta_train_run_id"] == runs.get(f"{SPIKE}/{arm}/meta_train")
        assert arm_source["projects"] == {
            e["project"]: [runs[f"{SPIKE}/{arm}/{e['project']}"]] for e in payload[arm]["per_project_adaptation"]
        }
    assert source["arms"]["candidate"]["meta_train_run_id"] is not None

    links = mlflow_provenance(result.payload)
    assert links is not None and links["parent_run_id"] == parent
    assert set(links["run_urls"]) == {parent, *(i for label, i in runs.items() if label != f"{SPIKE}/parent")}
    assert all(url == run_url(tracking_uri, experiment.experiment_id, i) for i, url in links["run_urls"].items())


def test_links_only_for_a_tracking_server() -> None:
    assert run_url("http://mlflow.internal:5000/", "3", "abc") == "http://mlflow.internal:5000/#/experiments/3/runs/abc"
    assert run_url("sqlite:///tmp/mlflow.db", "3", "abc") is None
    assert mlflow_provenance({"notes": "hand-written"}) is None


def test_decision_report_metadata_links_the_runs() -> None:
    """What decision_report's partition page shows once wired (defs/mlflow_links.py)."""
    import dagster as dg

    from maml_evidence.defs.mlflow_links import mlflow_run_metadata

    payload = {
        "source": {
            "mlflow": {
                "tracking_uri": "http://m:5000",
                "experiment_id": "7",
                "parent_run_id": "p1",
                "arms": {"baseline": {"train_run_id": "t1", "projects": {"a": ["r1"]}}},
            }
        }
    }
    report = {"provenance": {"spike_run_id": "s", "mlflow": mlflow_provenance(payload)}}

    metadata = mlflow_run_metadata(report)

    assert metadata["mlflow_parent_run"] == dg.MetadataValue.url("http://m:5000/#/experiments/7/runs/p1")
    text = metadata["mlflow_runs"].value
    assert "- [r1](http://m:5000/#/experiments/7/runs/r1)" in text and "- [t1](" in text
    assert mlflow_run_metadata({"provenance": {"spike_run_id": "s"}}) == {}
