"""Links from a report back to the MLflow runs its payload was assembled from (standard library only).

A payload collected from MLflow keeps its provenance under ``source.mlflow`` (an extra the gate keeps as given);
the store copies the links below into ``report.json`` under ``provenance.mlflow``.
"""

from __future__ import annotations

from collections.abc import Mapping


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI's page of a run, for an http(s) tracking server; None for a local store (no UI address)."""
    if not tracking_uri.lower().startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def source_run_ids(source: Mapping[str, object]) -> list[str]:
    """Every run id ``source.mlflow`` names: the parent run, then each arm's train, meta_train and project runs."""
    ids = [str(source.get("parent_run_id"))]
    arms = source.get("arms")
    for arm in arms.values() if isinstance(arms, Mapping) else ():
        if not isinstance(arm, Mapping):
            continue
        for stage in ("train_run_id", "meta_train_run_id"):
            if arm.get(stage):
                ids.append(str(arm[stage]))
        projects = arm.get("projects")
        for runs in projects.values() if isinstance(projects, Mapping) else ():
            if isinstance(runs, list):
                ids.extend(str(run) for run in runs if run)
    return list(dict.fromkeys(ids))


def mlflow_provenance(extras: Mapping[str, object]) -> dict[str, object] | None:
    """The report's ``provenance.mlflow``: tracking URI, experiment, parent run and a link to every run.

    None when the payload did not come from MLflow (no ``source.mlflow`` object with a parent run).
    """
    source = extras.get("source")
    mlflow = source.get("mlflow") if isinstance(source, Mapping) else None
    if not isinstance(mlflow, Mapping) or not mlflow.get("parent_run_id"):
        return None
    uri, experiment = str(mlflow.get("tracking_uri", "")), str(mlflow.get("experiment_id", ""))
    parent = str(mlflow["parent_run_id"])
    return {
        "tracking_uri": uri,
        "experiment_id": experiment,
        "parent_run_id": parent,
        "parent_run_url": run_url(uri, experiment, parent),
        "run_urls": {run: run_url(uri, experiment, run) for run in source_run_ids(mlflow)},
    }
