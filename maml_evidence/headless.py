"""Headless use of the pipeline: the same Dagster job and instance the UI uses, driven from the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from maml_evidence.defs.jobs import EVALUATE_JOB
from maml_evidence.defs.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    SPIKE_RUNS,
    contiguous_ranges,
    range_tags,
    register_spike_runs,
)
from maml_evidence.defs.runs import HOST_TAG, PID_TAG, fail_dead_runs, heartbeat, process_tags
from maml_evidence.store import EvidenceStore
from maml_evidence.store.intake import QUARANTINED, UNCHANGED, IntakeResult, intake_files
from maml_evidence.store.reevaluation import Change, latest_changes

DAGSTER_YAML = """\
# Dagster instance of this evidence home (created by maml-evidence). Run history, partitions and
# asset-check results live beside it in SQLite, so they survive restarts of `dagster dev`.
telemetry:
  enabled: false
"""

# The command prints its own one-line outcomes; stack traces stay in the Dagster run's event log.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def instance_folder(store: EvidenceStore) -> Path:
    """$DAGSTER_HOME if set, else <evidence home>/dagster_home; neither created nor changed."""
    chosen = os.environ.get("DAGSTER_HOME")
    return Path(chosen).resolve() if chosen else store.home.dagster_home


def dagster_home(store: EvidenceStore) -> Path:
    """``instance_folder``, created; its dagster.yaml is written (local SQLite storage) only where there is none,
    so one written by ``maml-evidence instance`` or by hand (Postgres storage, a run launcher) is used as it is.
    Sets nothing."""
    home = instance_folder(store)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    return home


def open_instance(store: EvidenceStore) -> dg.DagsterInstance:
    """The evidence home's Dagster instance (the one ``dagster dev`` on this home uses), opened explicitly."""
    from maml_evidence.deploy.instance import quiet_connection_retries, unavailable

    folder = dagster_home(store)
    try:
        with quiet_connection_retries():
            return dg.DagsterInstance.from_config(str(folder))
    except Exception as exc:
        error = unavailable(folder, exc)  # the Postgres storage's extra missing or its server down: one line
        if error is None:
            raise
        raise error from None


def run_resources(store: EvidenceStore) -> dict[str, object]:
    """The job's resources pointed at this evidence home, so no environment variable has to carry it."""
    from maml_evidence.defs.resources import EvidenceStoreResource

    return {"evidence": EvidenceStoreResource(home=str(store.home.root))}


def dev_environment(store: EvidenceStore) -> dict[str, str]:
    """The environment for ``dagster dev`` on this evidence home (a child process's, never this one's)."""
    return {**os.environ, "DAGSTER_HOME": str(dagster_home(store)), "MAML_EVIDENCE_HOME": str(store.home.root)}


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    """One line per failed step: the innermost cause's message (the full trace stays in the run's event log)."""
    lines = []
    for event in result.all_events:
        if not event.is_step_failure or not event.step_failure_data or not event.step_failure_data.error:
            continue
        error = event.step_failure_data.error
        while error.cause is not None:  # Dagster wraps the user error ("Error occurred while executing op ...")
            error = error.cause
        message = " ".join(error.message.split())
        if error.cls_name == "Failure":  # raised on purpose with a sentence for people: no class name needed
            message = message.partition(": ")[2] or message
        lines.append(f"{event.step_key}: {message}")
    return "; ".join(lines) or f"the run failed (see run {result.run_id} in the Dagster UI)"


@dataclass(frozen=True)
class RunOutcome:
    first: str
    last: str
    run_id: str
    success: bool
    error: str | None = None


SENSOR_LAUNCH_GRACE_SECONDS = 300


def holders(instance: dg.DagsterInstance, store: EvidenceStore, spike_run_ids: Iterable[str]) -> dict[str, str]:
    """Which of these spike runs another live process is evaluating (or the sensor has just taken in), and who.

    A run started by a command in a process that has since died (killed mid-ingest) is marked failed and does
    not count, so the next ingest finishes its spike runs.
    """
    wanted = set(spike_run_ids)
    keys = instance.get_dynamic_partitions(SPIKE_RUNS)
    position = {key: index for index, key in enumerate(keys)}
    out: dict[str, str] = {}
    for run in fail_dead_runs(instance, EVALUATE_JOB):
        tags = run.tags
        first, last = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
        if first in position and last in position:
            covered = set(keys[position[first] : position[last] + 1])
        else:
            covered = {tags.get("dagster/partition", "")}
        if PID_TAG in tags:
            who = f"process {tags[PID_TAG]} on {tags.get(HOST_TAG, 'an unknown host')}"
        else:
            who = f"the {tags.get('dagster/sensor_name', 'Dagster')} run"
        for run_id in sorted((covered & wanted) - out.keys()):
            out[run_id] = f"being evaluated by {who} (Dagster run {run.run_id})"
    now = datetime.now(UTC)
    for run_id in sorted(wanted - out.keys()):
        revision = store.registry.current(run_id)
        if revision is None or revision.accepted_by != "sensor":
            continue
        if (now - revision.accepted_at_dt).total_seconds() < SENSOR_LAUNCH_GRACE_SECONDS:
            out[run_id] = "taken in by the inbox sensor; its run has not started (is `maml-evidence dev` up?)"
    return out


def being_evaluated(instance: dg.DagsterInstance, store: EvidenceStore, spike_run_ids: Sequence[str]) -> set[str]:
    """The spike runs of ``holders``: held by another live process or just taken in by the sensor."""
    return set(holders(instance, store, spike_run_ids))


def evaluate_partitions(
    instance: dg.DagsterInstance, store: EvidenceStore, spike_run_ids: Sequence[str]
) -> list[RunOutcome]:
    """Materialize the given spike runs with the evaluate job: one run per contiguous range of partitions."""
    from maml_evidence.definitions import defs

    job = defs.resolve_job_def(EVALUATE_JOB)
    outcomes = []
    all_keys = instance.get_dynamic_partitions(SPIKE_RUNS)
    for first, last in contiguous_ranges(all_keys, spike_run_ids):
        with heartbeat(instance):  # the run's liveness for commands on other hosts (defs/runs.py)
            result = job.execute_in_process(
                instance=instance,
                tags={**range_tags(first, last), **process_tags()},
                resources=run_resources(store),
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
    # spike_run_id -> one-line reason, for spike runs whose evaluation failed in the Dagster run
    failed: dict[str, str] = field(default_factory=dict)
    # spike_run_id -> who is still evaluating it, for spike runs another process held past the wait
    pending: dict[str, str] = field(default_factory=dict)

    @property
    def quarantined(self) -> list[IntakeResult]:
        return [r for r in self.results if r.outcome == QUARANTINED]

    @property
    def skipped(self) -> list[IntakeResult]:
        """Entries skipped and reported by this ingest (not those reported by an earlier one)."""
        return [r for r in self.results if r.outcome == "skipped" and not r.already_reported]


def ingest(
    store: EvidenceStore,
    paths: Sequence[Path] | None = None,
    *,
    replace: bool = False,
    wait_seconds: float = 300.0,
    notify: Callable[[str], None] | None = None,
) -> IngestReport:
    """Take entries in (every inbox entry by default), evaluate what is new through the Dagster job, report decisions.

    Spike runs another live process is evaluating (a concurrent ingest, the sensor's run) are waited for, up to
    ``wait_seconds``, so that their decisions are reported too; what that process leaves unfinished is evaluated
    here. Any still held after the wait are in ``pending``, naming the process. ``notify`` hears when waiting starts.
    """
    import time

    from maml_evidence.defs.reevaluation import REEVALUATE_JOB
    from maml_evidence.store.intake import SKIPPED, inbox_entries

    files = list(paths) if paths else inbox_entries(store.home)
    store.recover()  # a batch a killed command committed gets its reports first, so it is not evaluated twice
    with open_instance(store) as instance:
        fail_dead_runs(instance, REEVALUATE_JOB)

        results = intake_files(
            store.home,
            files,
            replace=replace,
            known_partitions=lambda: set(instance.get_dynamic_partitions(SPIKE_RUNS)),
            add_partitions=lambda ids: register_spike_runs(instance, ids),
        )
        wanted = [r.spike_run_id for r in results if r.needs_run and r.spike_run_id]
        # Stored before but never completely evaluated (an ingest killed mid-run): finish them now, unless
        # another live process is evaluating them or the sensor has just taken them in.
        unchanged = [r.spike_run_id for r in results if r.outcome == UNCHANGED and r.spike_run_id]
        incomplete = store.incomplete(unchanged) if unchanged else []
        busy = being_evaluated(instance, store, incomplete) if incomplete else set()
        wanted = list(dict.fromkeys(wanted + [i for i in incomplete if i not in busy]))
        runs = evaluate_partitions(instance, store, wanted) if wanted else []
        evaluated = list(wanted)

        # Held by another process: wait for its decisions; evaluate here what its run ended without finishing.
        pending: dict[str, str] = {}
        if busy and notify is not None:
            who = "; ".join(sorted(set(holders(instance, store, busy).values())))
            notify(f"waiting up to {wait_seconds:.0f} s for {len(busy)} spike run(s) {who}")
        deadline = time.monotonic() + wait_seconds
        while busy:
            still = set(store.incomplete(sorted(busy)))
            held = being_evaluated(instance, store, sorted(still)) if still else set()
            orphaned = store.incomplete(sorted(still - held)) if still - held else []
            if orphaned:
                runs += evaluate_partitions(instance, store, orphaned)
                evaluated += orphaned
            busy = held
            if busy and time.monotonic() >= deadline:
                pending = holders(instance, store, busy)
                break
            if busy:
                time.sleep(0.5)
    ids = [r.spike_run_id for r in results if r.spike_run_id and r.outcome not in (QUARANTINED, SKIPPED)]
    decisions = store.decisions(ids) if ids else {}
    # a spike run that could not be evaluated or stored has its reason on file (the rest of its run went on)
    failed = store.failures(evaluated) if evaluated else {}
    return IngestReport(results, runs, decisions, failed=failed, pending=pending)


def rebuild(store: EvidenceStore, spike_run_ids: Sequence[str]) -> list[RunOutcome]:
    """Re-evaluate stored spike runs from their payloads through the evaluate job (after damage was set aside)."""
    with open_instance(store) as instance:
        fail_dead_runs(instance, EVALUATE_JOB)
        register_spike_runs(instance, spike_run_ids)
        return evaluate_partitions(instance, store, spike_run_ids)


@dataclass(frozen=True)
class ReevaluationOutcome:
    run_id: str
    success: bool
    metadata: Mapping[str, object]
    changes: list[Change]
    error: str | None = None


def run_reevaluation(store: EvidenceStore, *, force: bool = False) -> ReevaluationOutcome:
    """Run the reevaluate_history job once on the evidence home's instance."""
    from maml_evidence.definitions import defs
    from maml_evidence.defs.reevaluation import REEVALUATE_JOB

    with open_instance(store) as instance:
        fail_dead_runs(instance, REEVALUATE_JOB)
        job = defs.resolve_job_def(REEVALUATE_JOB)
        run_config = {**QUIET_RUN_CONFIG, "ops": {"decision_reevaluation": {"config": {"force": force}}}}
        with heartbeat(instance):
            result = job.execute_in_process(
                instance=instance,
                run_config=run_config,
                tags=process_tags(),
                resources=run_resources(store),
                raise_on_error=False,
            )
    if not result.success:
        return ReevaluationOutcome(result.run_id, False, {}, [], _failure_text(result))
    materialization = result.asset_materializations_for_node("decision_reevaluation")[0]
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    changes = latest_changes(store, str(metadata["policy_version"])) if metadata.get("decisions_changed") else []
    return ReevaluationOutcome(result.run_id, True, metadata, changes)
