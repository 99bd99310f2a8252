"""Runs started by a maml-evidence command carry its process id, so a later command can tell a dead one.

A command runs its Dagster job in its own process (``execute_in_process``); if that process is killed, the run
stays STARTED in the instance forever. Every command that starts or waits for runs first marks the runs of
dead processes failed (``fail_dead_runs``), as the daemon's run monitoring does for the runs it launched.
"""

from __future__ import annotations

import os
import socket

import dagster as dg

PID_TAG, HOST_TAG = "maml_evidence/pid", "maml_evidence/host"
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def process_tags() -> dict[str, str]:
    """Tags naming this process, for a run it executes itself."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance, job_name: str) -> list[dg.DagsterRun]:
    """Mark unfinished runs of ``job_name`` whose process (on this host) died failed; returns the live ones."""
    live = []
    for run in instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=UNFINISHED)):
        tags = run.tags
        if tags.get(HOST_TAG) == socket.gethostname() and PID_TAG in tags and not _alive(int(tags[PID_TAG])):
            instance.report_run_failed(
                run, f"the process running it (pid {tags[PID_TAG]}) died, e.g. killed; a later command redoes its work"
            )
            continue
        live.append(run)
    return live
