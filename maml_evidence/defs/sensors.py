"""The inbox sensor: new payload files become spike-run partitions and one run that evaluates them."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from maml_evidence.defs.jobs import evaluate_spike_runs
from maml_evidence.defs.partitions import contiguous_ranges, range_tags, spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.store.intake import QUARANTINED, intake_files


def _stamp(path: Path) -> str | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return f"{stat.st_mtime_ns}:{stat.st_size}"


@dg.sensor(
    job=evaluate_spike_runs,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the evidence inbox; validates new payload files, quarantines bad ones, evaluates the rest.",
)
def spike_inbox_sensor(context: dg.SensorEvaluationContext, evidence: EvidenceStoreResource) -> dg.SensorResult:
    """Each tick: files new or changed since the cursor are taken in; valid new spike runs get one run."""
    store = evidence.store()
    store.policy()  # a broken thresholds.toml fails the tick loudly instead of evaluating under other thresholds
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    stamps = {path: _stamp(path) for path in sorted(store.home.inbox.glob("*.json"))}
    changed = [path for path, stamp in stamps.items() if stamp is not None and seen.get(path.name) != stamp]
    cursor = {path.name: stamp for path, stamp in stamps.items() if stamp is not None and path.name in seen}
    if not changed:
        return dg.SensorResult(skip_reason="no new or changed files in the inbox", cursor=json.dumps(cursor))

    instance = context.instance
    results = intake_files(
        store.home,
        changed,
        known_partitions=lambda: set(instance.get_dynamic_partitions(spike_runs.name)),
        add_partitions=lambda ids: instance.add_dynamic_partitions(spike_runs.name, ids),
        accepted_by="sensor",
    )
    for result in results:
        if result.outcome == QUARANTINED:
            context.log.warning(f"quarantined {result.path.name}: {result.message}")
            cursor.pop(result.path.name, None)
        else:
            context.log.info(f"{result.path.name}: {result.outcome} ({result.spike_run_id}, {result.message})")
            cursor[result.path.name] = stamps[result.path] or ""
    wanted = [r.spike_run_id for r in results if r.needs_run and r.spike_run_id]
    requests = []
    if wanted:
        all_keys = instance.get_dynamic_partitions(spike_runs.name)
        accepted = sorted(f"{r.spike_run_id}:{r.revision.sha256}" for r in results if r.needs_run and r.revision)
        digest = hashlib.sha256("|".join(accepted).encode()).hexdigest()[:16]
        for first, last in contiguous_ranges(all_keys, wanted):
            requests.append(
                dg.RunRequest(
                    run_key=f"{first}..{last}:{digest}", tags=range_tags(first, last), job_name=evaluate_spike_runs.name
                )
            )
    summary = ", ".join(f"{r.path.name}={r.outcome}" for r in results)
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor),
        skip_reason=None if requests else f"nothing new to evaluate ({summary})",
    )
