"""The MLflow sensor: ready spikes in an MLflow experiment become inbox payloads, taken in as the inbox sensor does.

Stopped by default; configured by environment variables, read at each tick (README "Spike evidence from MLflow"):

- ``MAML_EVIDENCE_MLFLOW_TRACKING_URI`` (else ``MLFLOW_TRACKING_URI``): the tracking server
- ``MAML_EVIDENCE_MLFLOW_EXPERIMENT``: the experiment's name (required)
- ``MAML_EVIDENCE_MLFLOW_ACCURACY_METRIC``: the learning-curve metric (default ``val_accuracy``)
- ``MAML_EVIDENCE_MLFLOW_WRITE_BACK``: ``1``/``true``/``yes`` writes each stored decision back as tags on its
  spike's parent run (at the next tick after the decision is stored, and again whenever it changes)
- ``MAML_EVIDENCE_MLFLOW_ALLOW_UNMATCHED_PROJECTS``: ``1``/``true``/``yes`` collects spikes with projects logged
  in one arm only (judged on the common projects); by default such a spike is quarantined naming those runs
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from maml_evidence.defs.jobs import evaluate_spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.defs.sensors import take_in

URI_ENV, EXPERIMENT_ENV = "MAML_EVIDENCE_MLFLOW_TRACKING_URI", "MAML_EVIDENCE_MLFLOW_EXPERIMENT"
METRIC_ENV, WRITE_BACK_ENV = "MAML_EVIDENCE_MLFLOW_ACCURACY_METRIC", "MAML_EVIDENCE_MLFLOW_WRITE_BACK"
UNMATCHED_ENV = "MAML_EVIDENCE_MLFLOW_ALLOW_UNMATCHED_PROJECTS"
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class MlflowSettings:
    """Where the sensor collects from, as the environment gives it."""

    tracking_uri: str
    experiment: str
    accuracy_metric: str
    write_back: bool
    allow_unmatched_projects: bool = False


def mlflow_settings(environ: Mapping[str, str]) -> MlflowSettings:
    """The sensor's settings; a missing one is named with the variable to set."""
    from maml_evidence.sources.mlflow import DEFAULT_ACCURACY_METRIC

    uri = environ.get(URI_ENV) or environ.get(MLFLOW_URI_ENV) or ""
    experiment = environ.get(EXPERIMENT_ENV) or ""
    needed = ((f"{URI_ENV} (or {MLFLOW_URI_ENV})", uri), (EXPERIMENT_ENV, experiment))
    missing = [name for name, value in needed if not value]
    if missing:
        raise dg.Failure(f"mlflow_spike_sensor is not configured: set {' and '.join(missing)}")
    return MlflowSettings(
        tracking_uri=uri,
        experiment=experiment,
        accuracy_metric=environ.get(METRIC_ENV) or DEFAULT_ACCURACY_METRIC,
        write_back=_on(environ.get(WRITE_BACK_ENV)),
        allow_unmatched_projects=_on(environ.get(UNMATCHED_ENV)),
    )


def _on(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dg.sensor(
    job=evaluate_spike_runs,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Collects ready spikes from an MLflow experiment into the inbox and evaluates them "
    "(configured by MAML_EVIDENCE_MLFLOW_* environment variables).",
)
def mlflow_spike_sensor(context: dg.SensorEvaluationContext, evidence: EvidenceStoreResource) -> dg.SensorResult:
    """Each tick: write back stored decisions (if asked), collect ready spikes not yet stored, take them in.

    A spike that cannot be assembled is quarantined once per distinct reason (the cursor remembers it), with a
    reason file naming the MLflow runs at fault; an unreachable server skips the tick and writes nothing.
    """
    from maml_evidence.sources.mlflow import (
        FAILED,
        WRITTEN,
        MlflowSource,
        SourceError,
        TrackingUnreachable,
        payload_text,
        quarantine_failure,
    )
    from maml_evidence.store.files import atomic_write_text

    settings = mlflow_settings(os.environ)
    store = evidence.store()
    store.policy()  # a broken thresholds.toml fails the tick loudly, as in the inbox sensor
    reported: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    try:
        source = MlflowSource(
            settings.tracking_uri,
            settings.experiment,
            settings.accuracy_metric,
            allow_unmatched_projects=settings.allow_unmatched_projects,
        )
        written_back = source.write_back(store.home) if settings.write_back else []
        collected = source.collect(stored=lambda sid: store.registry.current(sid) is not None)
    except (TrackingUnreachable, SourceError) as exc:
        context.log.warning(str(exc))
        return dg.SensorResult(skip_reason=str(exc), cursor=context.cursor)
    for done in written_back:
        if done.tags:
            context.log.info(f"{done.spike_run_id}: tagged MLflow run {done.parent_run_id} with {done.tags}")
    cursor = {}
    paths = []
    for result in collected:
        for note in result.notes:
            context.log.warning(f"{result.spike_run_id}: {note}")
        if result.outcome == WRITTEN and result.payload is not None:
            path = store.home.inbox / f"{result.spike_run_id}.json"
            atomic_write_text(path, payload_text(result.payload))
            paths.append(path)
        elif result.outcome == FAILED:
            fingerprint = hashlib.sha256(result.error.encode()).hexdigest()[:16]
            cursor[result.spike_run_id] = fingerprint
            if reported.get(result.spike_run_id) != fingerprint:
                reason_file = quarantine_failure(store.home, source, result)
                context.log.warning(f"quarantined MLflow spike {result.spike_run_id} ({reason_file}): {result.error}")
    _results, requests = take_in(context, store, paths)
    summary = ", ".join(f"{r.spike_run_id}={r.outcome}" for r in collected) or "no spike parent runs"
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor, sort_keys=True),
        skip_reason=None if requests else f"nothing new to evaluate ({summary})",
    )
