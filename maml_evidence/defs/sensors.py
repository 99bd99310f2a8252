"""The inbox sensor: new payload files become spike-run partitions and one run that evaluates them."""

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from maml_evidence.defs.jobs import evaluate_spike_runs
from maml_evidence.defs.partitions import SPIKE_RUNS, contiguous_ranges, range_tags, register_spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.store import EvidenceStore
from maml_evidence.store.intake import QUARANTINED, SKIPPED, IntakeResult, inbox_entries, intake_files


def _stamp(path: Path) -> str | None:
    """The entry itself (never a link's target): inode, mtime and size; None once it is gone."""
    try:
        stat = os.lstat(path)
    except OSError:
        return None
    return f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"


@dg.sensor(
    job=evaluate_spike_runs,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the evidence inbox; validates new payload files, quarantines bad ones, evaluates the rest.",
)
def spike_inbox_sensor(context: dg.SensorEvaluationContext, evidence: EvidenceStoreResource) -> dg.SensorResult:
    """Each tick: inbox entries new or changed since the cursor are taken in; valid new spike runs get one run.

    The inbox is listed and judged exactly as ``maml-evidence ingest`` does (``inbox_entries``, ``intake_files``):
    every entry is accepted, unchanged, quarantined or skipped, each logged once.
    """
    store = evidence.store()
    store.policy()  # a broken thresholds.toml fails the tick loudly instead of evaluating under other thresholds
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    stamps = {path: _stamp(path) for path in inbox_entries(store.home)}
    changed = [path for path, stamp in stamps.items() if stamp is not None and seen.get(path.name) != stamp]
    cursor = {path.name: stamp for path, stamp in stamps.items() if stamp is not None and path.name in seen}
    if not changed:
        return dg.SensorResult(skip_reason="no new or changed files in the inbox", cursor=json.dumps(cursor))

    results, requests = take_in(context, store, changed)
    for result in results:
        if result.outcome == QUARANTINED or result.retry:  # taken again once changed / next time
            cursor.pop(result.path.name, None)
        else:
            cursor[result.path.name] = stamps[result.path] or ""
    summary = ", ".join(f"{r.display}={r.outcome}" for r in results)
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor),
        skip_reason=None if requests else f"nothing new to evaluate ({summary})",
    )


def take_in(
    context: dg.SensorEvaluationContext, store: EvidenceStore, paths: Sequence[Path]
) -> tuple[list[IntakeResult], list[dg.RunRequest]]:
    """Intake as the sensors do it: each entry taken in and logged once, one run request per contiguous range of
    the spike runs that need a run (the inbox sensor and the MLflow sensor both take files in through here)."""
    instance = context.instance
    results = intake_files(
        store.home,
        paths,
        known_partitions=lambda: set(instance.get_dynamic_partitions(SPIKE_RUNS)),
        add_partitions=lambda ids: register_spike_runs(instance, ids),
        accepted_by="sensor",
    )
    for result in results:
        if result.outcome == QUARANTINED:
            context.log.warning(f"quarantined {result.display} -> {result.quarantined_to}: {result.message}")
        elif result.outcome == SKIPPED and not result.already_reported:
            context.log.warning(f"skipped {result.display}: {result.message}")
        elif result.outcome != SKIPPED:
            context.log.info(f"{result.display}: {result.outcome} ({result.spike_run_id}, {result.message})")
    wanted = [r.spike_run_id for r in results if r.needs_run and r.spike_run_id]
    requests = []
    if wanted:
        all_keys = instance.get_dynamic_partitions(SPIKE_RUNS)
        accepted = sorted(f"{r.spike_run_id}:{r.revision.sha256}" for r in results if r.needs_run and r.revision)
        digest = hashlib.sha256("|".join(accepted).encode()).hexdigest()[:16]
        for first, last in contiguous_ranges(all_keys, wanted):
            requests.append(
                dg.RunRequest(
                    run_key=f"{first}..{last}:{digest}", tags=range_tags(first, last), job_name=evaluate_spike_runs.name
                )
            )
    return results, requests
