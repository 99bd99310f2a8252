"""Fixtures for the pipeline tests: a temporary evidence home, a real Dagster instance, the job and the sensor."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from maml_evidence.defs.partitions import range_tags, register_spike_runs, spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.store import EvidenceStore
from maml_evidence.store.intake import IntakeResult, intake_files
from maml_evidence_tests.samples import QUIET, SAMPLE_DECISIONS, SAMPLE_INBOX, prepare_dagster_home

ENABLE_SAMPLE = "2026-10-06-support-bots-enable"
EVALUATE_JOB = "evaluate_spike_runs"
SENSOR = "spike_inbox_sensor"


def sample(name: str = ENABLE_SAMPLE, /, **changes: object) -> dict:
    """A shipped sample payload (by file stem) as a dict, with top-level keys changed (e.g. spike_run_id)."""
    payload = json.loads((SAMPLE_INBOX / f"{name}.json").read_text(encoding="utf-8"))
    payload.update(changes)
    return payload


def write_json(path: Path, payload: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def defs() -> dg.Definitions:
    from maml_evidence.definitions import defs as definitions

    return definitions


@dataclass
class Pipeline:
    """One evidence home with its Dagster instance, and the ways the product drives them."""

    home: Path
    dagster_home: Path
    instance: dg.DagsterInstance

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def resources(self) -> dict[str, object]:
        return {"evidence": EvidenceStoreResource(home=str(self.home))}

    @property
    def store(self) -> EvidenceStore:
        return EvidenceStore(self.home)

    def partitions(self) -> list[str]:
        return list(self.instance.get_dynamic_partitions(spike_runs.name))

    def drop(self, name: str, payload: object) -> Path:
        """Put a payload file into the inbox (a dict becomes JSON, a str is written as is)."""
        path = self.inbox / name
        if isinstance(payload, str):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(payload, encoding="utf-8")
            return path
        return write_json(path, payload)

    def drop_samples(self) -> list[Path]:
        self.inbox.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy(SAMPLE_INBOX / f"{i}.json", self.inbox)) for i in SAMPLE_DECISIONS]

    def intake(self, paths: Sequence[Path] | None = None) -> list[IntakeResult]:
        """Accept files into the store and register their partitions, as the sensor and the CLI do."""
        files = list(paths) if paths is not None else sorted(self.inbox.glob("*.json"))

        return intake_files(
            self.store.home,
            files,
            known_partitions=lambda: set(self.partitions()),
            add_partitions=lambda ids: register_spike_runs(self.instance, ids),
        )

    def tick(self, cursor: str | None = None):  # Dagster's tick result has no public type
        sensor = defs().resolve_sensor_def(SENSOR)
        context = dg.build_sensor_context(
            instance=self.instance, definitions=defs(), resources=self.resources, cursor=cursor
        )
        return sensor.evaluate_tick(context)

    def run(self, keys: Sequence[str], *, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        """One run of the evaluate job over ``keys`` (contiguous in partition order; one key: a plain run)."""
        job = defs().resolve_job_def(EVALUATE_JOB)
        if len(keys) == 1:
            return job.execute_in_process(
                instance=self.instance,
                partition_key=keys[0],
                resources=self.resources,
                run_config=QUIET,
                raise_on_error=raise_on_error,
            )
        return job.execute_in_process(
            instance=self.instance,
            tags=range_tags(keys[0], keys[-1]),
            resources=self.resources,
            run_config=QUIET,
            raise_on_error=raise_on_error,
        )

    def ingest(self, payloads: dict[str, dict]) -> list[str]:
        """Drop payloads (file stem -> payload), accept them and materialize them in one run; returns the ids."""
        paths = [self.drop(f"{name}.json", payload) for name, payload in payloads.items()]
        ids = [r.spike_run_id for r in self.intake(paths) if r.needs_run and r.spike_run_id]
        self.run(ids)
        return ids

    def view_counts(self, views: Sequence[str]) -> dict[str, int]:
        connection = self.store.connect()
        try:
            return {v: connection.execute(f"SELECT count(*) FROM {v}").fetchone()[0] for v in views}
        finally:
            connection.close()

    def sql(self, text: str, params: Sequence[object] = ()) -> list[tuple]:
        connection = self.store.connect()
        try:
            return connection.execute(text, list(params)).fetchall()
        finally:
            connection.close()


@pytest.fixture
def pipeline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """A fresh evidence home and Dagster home under tmp_path, both set in the environment."""
    with open_pipeline(tmp_path, monkeypatch) as pipeline:
        yield pipeline


@contextlib.contextmanager
def open_pipeline(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """Set MAML_EVIDENCE_HOME and DAGSTER_HOME under ``root`` and open the instance (usable at any fixture scope)."""
    home = root / "evidence"
    dagster_home = prepare_dagster_home(root / "dagster_home")
    monkeypatch.setenv("MAML_EVIDENCE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    EvidenceStore(home).ensure()
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        yield Pipeline(home=home, dagster_home=dagster_home, instance=instance)
    finally:
        instance.dispose()


def subprocess_env(pipeline: Pipeline, **extra: str) -> dict[str, str]:
    """The environment for a child process working on this pipeline's homes."""
    env = {**os.environ, "MAML_EVIDENCE_HOME": str(pipeline.home), "DAGSTER_HOME": str(pipeline.dagster_home)}
    env.update(extra)
    return env
