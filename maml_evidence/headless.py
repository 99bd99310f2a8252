"""Headless use of the pipeline: the same Dagster job and instance the UI uses, driven from the CLI."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from maml_evidence.defs.jobs import EVALUATE_JOB
from maml_evidence.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, contiguous_ranges, range_tags, spike_runs
from maml_evidence.store import EvidenceStore
from maml_evidence.store.intake import QUARANTINED, UNCHANGED, IntakeResult, intake_files
from maml_evidence.store.reevaluation import Change, latest_changes

DAGSTER_YAML = """\
# Dagster instance of this evidence home (created by maml-evidence). Run history, partitions and
# asset-check results live beside it in SQLite, so they survive restarts of `dagster dev`.
telemetry:
  enabled: false
"""

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def configure_dagster_home(store: EvidenceStore) -> Path:
    """Use $DAGSTER_HOME if set, else <evidence home>/dagster_home (created with its dagster.yaml)."""
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"]).resolve()
    else:
        home = store.home.dagster_home
        os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["MAML_EVIDENCE_HOME"] = str(store.home.root)
    return home


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    return (
        "; ".join(
            f"{e.step_key}: {e.step_failure_data.error.message.strip()}"  # type: ignore[union-attr]
            for e in failures
            if e.step_failure_data and e.step_failure_data.error
        )
        or "the run failed"
    )


@dataclass(frozen=True)
class RunOutcome:
    first: str
    last: str
    run_id: str
    success: bool
    error: str | None = None


PID_TAG, HOST_TAG = "maml_evidence/pid", "maml_evidence/host"
SENSOR_LAUNCH_GRACE_SECONDS = 300
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def being_evaluated(instance: dg.DagsterInstance, store: EvidenceStore, spike_run_ids: Sequence[str]) -> set[str]:
    """Which of these spike runs another live process is evaluating (or the sensor has just requested).

    A run started by this command in a process that has since died (killed mid-ingest) is marked failed
    and does not count, so the next ingest finishes its spike runs.
    """
    wanted = set(spike_run_ids)
    keys = instance.get_dynamic_partitions(spike_runs.name)
    position = {key: index for index, key in enumerate(keys)}
    busy: set[str] = set()
    runs = instance.get_runs(dg.RunsFilter(job_name=EVALUATE_JOB, statuses=UNFINISHED))
    for run in runs:
        tags = run.tags
        if tags.get(HOST_TAG) == socket.gethostname() and PID_TAG in tags and not _alive(int(tags[PID_TAG])):
            instance.report_run_failed(
                run, "the process evaluating this run died (e.g. killed); resumed by a later ingest"
            )
            continue
        first, last = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
        if first in position and last in position:
            busy |= set(keys[position[first] : position[last] + 1]) & wanted
        elif tags.get("dagster/partition") in wanted:
            busy.add(tags["dagster/partition"])
    now = datetime.now(UTC)
    for run_id in wanted - busy:
        revision = store.registry.current(run_id)
        recent = revision is not None and (now - revision.accepted_at_dt).total_seconds() < SENSOR_LAUNCH_GRACE_SECONDS
        if recent and revision.accepted_by == "sensor":
            busy.add(run_id)
    return busy


def evaluate_partitions(instance: dg.DagsterInstance, spike_run_ids: Sequence[str]) -> list[RunOutcome]:
    """Materialize the given spike runs with the evaluate job: one run per contiguous range of partitions."""
    from maml_evidence.definitions import defs

    job = defs.resolve_job_def(EVALUATE_JOB)
    outcomes = []
    all_keys = instance.get_dynamic_partitions(spike_runs.name)
    for first, last in contiguous_ranges(all_keys, spike_run_ids):
        result = job.execute_in_process(
            instance=instance,
            tags={**range_tags(first, last), PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()},
            run_config=QUIET_RUN_CONFIG,
            raise_on_error=False,
        )
        error = None if result.success else _failure_text(result)
        outcomes.append(RunOutcome(first, last, result.run_id, result.success, error))
    return outcomes


@dataclass(frozen=True)
class IngestReport:
    results: list[IntakeResult]
    runs: list[RunOutcome]
    decisions: dict[str, dict[str, object]]

    @property
    def quarantined(self) -> list[IntakeResult]:
        return [r for r in self.results if r.outcome == QUARANTINED]


def ingest(store: EvidenceStore, paths: Sequence[Path] | None = None, *, replace: bool = False) -> IngestReport:
    """Take files in (inbox by default), evaluate what is new through the Dagster job, report decisions."""
    configure_dagster_home(store)
    instance = dg.DagsterInstance.get()
    files = list(paths) if paths else sorted(store.home.inbox.glob("*.json"))

    results = intake_files(
        store.home,
        files,
        replace=replace,
        known_partitions=lambda: set(instance.get_dynamic_partitions(spike_runs.name)),
        add_partitions=lambda ids: add_partitions(instance, ids),
    )
    wanted = [r.spike_run_id for r in results if r.needs_run and r.spike_run_id]
    # Stored before but never completely evaluated (an ingest killed mid-run): finish them now, unless
    # another live process is evaluating them or the sensor has just taken them in.
    unchanged = [r.spike_run_id for r in results if r.outcome == UNCHANGED and r.spike_run_id]
    incomplete = store.incomplete(unchanged) if unchanged else []
    busy = being_evaluated(instance, store, incomplete) if incomplete else set()
    wanted = list(dict.fromkeys(wanted + [i for i in incomplete if i not in busy]))
    runs = evaluate_partitions(instance, wanted) if wanted else []
    ids = [r.spike_run_id for r in results if r.spike_run_id and r.outcome != QUARANTINED]
    decisions = store.decisions(ids) if ids else {}
    return IngestReport(results, runs, decisions)


def add_partitions(instance: dg.DagsterInstance, spike_run_ids: Sequence[str]) -> None:
    """Register the spike-run partitions the instance does not have yet, in the order given."""
    existing = set(instance.get_dynamic_partitions(spike_runs.name))
    new = [run_id for run_id in dict.fromkeys(spike_run_ids) if run_id not in existing]
    if new:
        instance.add_dynamic_partitions(spike_runs.name, new)


def rebuild(store: EvidenceStore, spike_run_ids: Sequence[str]) -> list[RunOutcome]:
    """Re-evaluate stored spike runs from their payloads through the evaluate job (after damage was set aside)."""
    configure_dagster_home(store)
    instance = dg.DagsterInstance.get()
    add_partitions(instance, spike_run_ids)
    return evaluate_partitions(instance, spike_run_ids)


@dataclass(frozen=True)
class ReevaluationOutcome:
    run_id: str
    success: bool
    metadata: dict[str, object]
    changes: list[Change]
    error: str | None = None


def reevaluate_history(store: EvidenceStore, *, force: bool = False) -> ReevaluationOutcome:
    """Run the reevaluate_history job once on the evidence home's instance."""
    from maml_evidence.definitions import defs
    from maml_evidence.defs.policy import REEVALUATE_JOB

    configure_dagster_home(store)
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def(REEVALUATE_JOB)
    run_config = {**QUIET_RUN_CONFIG, "ops": {"decision_reevaluation": {"config": {"force": force}}}}
    result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
    if not result.success:
        return ReevaluationOutcome(result.run_id, False, {}, [], _failure_text(result))
    materialization = result.asset_materializations_for_node("decision_reevaluation")[0]
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    changes = latest_changes(store, str(metadata["policy_version"])) if metadata.get("decisions_changed") else []
    return ReevaluationOutcome(result.run_id, True, metadata, changes)
