"""Dagster metadata linking a decision to the MLflow runs its payload was collected from (report provenance)."""

from collections.abc import Mapping

import dagster as dg


def mlflow_run_metadata(report: Mapping[str, object]) -> dict[str, dg.MetadataValue]:
    """``mlflow_parent_run`` (a link, or the run id for a local store) and ``mlflow_runs`` (every run as Markdown);
    empty when the report's payload did not come from MLflow."""
    provenance = report.get("provenance")
    mlflow = provenance.get("mlflow") if isinstance(provenance, Mapping) else None
    if not isinstance(mlflow, Mapping):
        return {}
    parent, url = str(mlflow.get("parent_run_id")), mlflow.get("parent_run_url")
    urls = mlflow.get("run_urls")
    runs = urls if isinstance(urls, Mapping) else {}
    lines = [f"- [{run}]({link})" if link else f"- {run}" for run, link in runs.items()]
    return {
        "mlflow_parent_run": dg.MetadataValue.url(str(url)) if url else dg.MetadataValue.text(parent),
        "mlflow_runs": dg.MetadataValue.md(
            f"MLflow experiment {mlflow.get('experiment_id')} on {mlflow.get('tracking_uri')}:\n\n" + "\n".join(lines)
        ),
    }
