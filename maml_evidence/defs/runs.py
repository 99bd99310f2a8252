"""Runs started by a maml-evidence command carry who runs them, so a later command can tell a dead one.

A command runs its Dagster job in its own process (``execute_in_process``); if that process is killed, or its
machine vanishes, the run stays STARTED in the instance forever. Every command that starts or waits for runs
first marks the runs of dead processes failed (``fail_dead_runs``). The rule, one for every instance:

- a run tagged with this host: dead when its process id is gone (``os.kill(pid, 0)``, instant);
- a run tagged with another host (the instance is shared, e.g. on Postgres): dead when its heartbeat tag, which
  the running command refreshes every ``HEARTBEAT_SECONDS``, is older than ``STALE_AFTER_SECONDS`` by this
  machine's clock (so clocks must agree to well within that limit, as NTP keeps them);
- a run without these tags (launched by the daemon: sensor, schedule, backfill, the UI) is the daemon's: Dagster's
  run monitoring (``run_monitoring`` in dagster.yaml, on in the team instance) fails it when its worker is gone.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import dagster as dg

PID_TAG, HOST_TAG, HEARTBEAT_TAG = "maml_evidence/pid", "maml_evidence/host", "maml_evidence/heartbeat"
# A command refreshes the heartbeat of its unfinished runs this often; a run on another host whose heartbeat is
# older than the limit counts as dead (six missed beats: a busy machine is not mistaken for a dead one).
HEARTBEAT_SECONDS = 20.0
STALE_AFTER_SECONDS = 120.0
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def process_tags() -> dict[str, str]:
    """Tags naming this process (and its first heartbeat), for a run it executes itself."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), HEARTBEAT_TAG: _stamp(datetime.now(UTC))}


def beat(instance: dg.DagsterInstance, now: datetime | None = None) -> int:
    """Refresh the heartbeat of this process's unfinished runs; returns how many."""
    mine = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    runs = instance.get_runs(dg.RunsFilter(tags=mine, statuses=UNFINISHED))
    stamp = _stamp(now or datetime.now(UTC))
    for run in runs:
        instance.add_run_tags(run.run_id, {HEARTBEAT_TAG: stamp})
    return len(runs)


@contextmanager
def heartbeat(instance: dg.DagsterInstance, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """While the block runs, a daemon thread refreshes the heartbeat of this process's unfinished runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                beat(instance)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the run itself must not suffer
                continue

    thread = threading.Thread(target=loop, name="maml-evidence-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def death(run: dg.DagsterRun, now: datetime | None = None, *, stale_after: float = STALE_AFTER_SECONDS) -> str | None:
    """Why this unfinished run's command process is dead, or None while it may be alive (or is the daemon's)."""
    tags = run.tags
    if PID_TAG not in tags:
        return None  # launched by the daemon: its run monitoring watches the worker
    pid, host = tags[PID_TAG], tags.get(HOST_TAG, "")
    if host == socket.gethostname():
        if not pid.isdigit() or not _alive(int(pid)):
            return f"the process running it (pid {pid}) died, e.g. killed; a later command redoes its work"
        return None
    try:
        last = datetime.fromisoformat(tags.get(HEARTBEAT_TAG, ""))
    except ValueError:
        last = None
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    age = None if last is None else ((now or datetime.now(UTC)) - last).total_seconds()
    if age is not None and age <= stale_after:
        return None
    heard = "never sent a heartbeat" if age is None else f"sent its last heartbeat {age:.0f} s ago"
    return (
        f"the process running it (pid {pid} on {host or 'an unknown host'}) {heard} (limit {stale_after:.0f} s): "
        "its machine or process is gone; a later command redoes its work"
    )


def fail_dead_runs(instance: dg.DagsterInstance, job_name: str, now: datetime | None = None) -> list[dg.DagsterRun]:
    """Mark unfinished runs of ``job_name`` whose command process is dead (``death``) failed; returns the rest."""
    live = []
    for run in instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=UNFINISHED)):
        reason = death(run, now)
        if reason is not None:
            instance.report_run_failed(run, reason)
            continue
        live.append(run)
    return live
