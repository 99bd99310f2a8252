"""Whether a command's run is alive, across hosts, on the shared Postgres instance: same host by process id,
another host (or a vanished one) by the heartbeat's age, daemon-launched runs left to Dagster's run monitoring."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg

from maml_evidence.defs.jobs import EVALUATE_JOB
from maml_evidence.defs.runs import (
    HEARTBEAT_TAG,
    HOST_TAG,
    PID_TAG,
    STALE_AFTER_SECONDS,
    beat,
    fail_dead_runs,
    heartbeat,
    process_tags,
)
from maml_evidence_tests.team.conftest import TeamHome, wait_until

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _started(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name=EVALUATE_JOB, run_id=run_id, status=dg.DagsterRunStatus.STARTED, tags=tags))
    return run_id


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _postgres_instance(team_home: TeamHome) -> dg.DagsterInstance:
    done = team_home.cli("instance", "--postgres-url", team_home.url)
    assert done.returncode == 0, done.stderr
    instance = dg.DagsterInstance.from_config(str(team_home.dagster_home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    return instance


def test_runs_on_other_hosts_die_by_a_stale_heartbeat_and_same_host_runs_by_pid(team_home: TeamHome) -> None:
    instance = _postgres_instance(team_home)
    here = socket.gethostname()
    fresh = (NOW - timedelta(seconds=STALE_AFTER_SECONDS - 5)).isoformat()
    stale = (NOW - timedelta(seconds=STALE_AFTER_SECONDS + 5)).isoformat()
    try:
        here_dead, here_live = str(_dead_pid()), str(os.getpid())
        runs = {
            "other host, fresh heartbeat": _started(instance, {PID_TAG: "42", HOST_TAG: "pod-a", HEARTBEAT_TAG: fresh}),
            "other host, stale heartbeat": _started(instance, {PID_TAG: "42", HOST_TAG: "pod-b", HEARTBEAT_TAG: stale}),
            "vanished host, no heartbeat": _started(instance, {PID_TAG: "17", HOST_TAG: "gone-host"}),
            "this host, live process": _started(instance, {PID_TAG: here_live, HOST_TAG: here}),
            "this host, dead process": _started(instance, {PID_TAG: here_dead, HOST_TAG: here, HEARTBEAT_TAG: fresh}),
            "launched by the daemon": _started(instance, {"dagster/sensor_name": "spike_inbox_sensor"}),
        }
        live = {run.run_id for run in fail_dead_runs(instance, EVALUATE_JOB, now=NOW)}
        status = {name: instance.get_run_by_id(run_id).status for name, run_id in runs.items()}  # type: ignore[union-attr]
        assert status == {
            "other host, fresh heartbeat": dg.DagsterRunStatus.STARTED,
            "other host, stale heartbeat": dg.DagsterRunStatus.FAILURE,
            "vanished host, no heartbeat": dg.DagsterRunStatus.FAILURE,
            "this host, live process": dg.DagsterRunStatus.STARTED,
            "this host, dead process": dg.DagsterRunStatus.FAILURE,
            "launched by the daemon": dg.DagsterRunStatus.STARTED,
        }
        assert live == {runs[n] for n, s in status.items() if s == dg.DagsterRunStatus.STARTED}
        # the failure names the host and the heartbeat's age
        failure = [
            e.message
            for e in instance.all_logs(runs["other host, stale heartbeat"])
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
        ]
        assert failure and "pod-b" in failure[0] and f"{STALE_AFTER_SECONDS + 5:.0f} s ago" in failure[0], failure
        # the fresh one dies too once its heartbeat has aged past the limit
        still = fail_dead_runs(instance, EVALUATE_JOB, NOW + timedelta(seconds=10))
        assert runs["other host, fresh heartbeat"] not in {r.run_id for r in still}
    finally:
        instance.dispose()


def test_a_running_command_refreshes_its_heartbeat_so_other_hosts_see_it_alive(team_home: TeamHome) -> None:
    instance = _postgres_instance(team_home)
    try:
        run_id = _started(instance, {**process_tags(), HEARTBEAT_TAG: (NOW - timedelta(hours=1)).isoformat()})
        assert beat(instance, now=NOW) == 1
        assert instance.get_run_by_id(run_id).tags[HEARTBEAT_TAG] == NOW.isoformat()  # type: ignore[union-attr]
        # the background beat: within the block, the tag moves on to the current time
        with heartbeat(instance, every=0.05):
            wait_until(
                lambda: instance.get_run_by_id(run_id).tags[HEARTBEAT_TAG] != NOW.isoformat(),  # type: ignore[union-attr]
                limit=20,
                what="the heartbeat thread",
            )
        refreshed = datetime.fromisoformat(instance.get_run_by_id(run_id).tags[HEARTBEAT_TAG])  # type: ignore[union-attr]
        assert abs((datetime.now(UTC) - refreshed).total_seconds()) < 10
        # seen from another host (by its age alone) it is alive; an hour later it would not be
        seen = instance.get_run_by_id(run_id)
        assert seen is not None
        from maml_evidence.defs.runs import death

        other = seen.with_tags({**seen.tags, HOST_TAG: "another-host"})
        assert death(other) is None
        assert death(other, datetime.now(UTC) + timedelta(hours=1)) is not None
    finally:
        instance.dispose()


def test_reevaluate_fails_the_run_a_vanished_host_left_started_and_spares_a_live_one(team_home: TeamHome) -> None:
    """A re-evaluation run left STARTED would block the policy schedule: the command fails it when stale."""
    from maml_evidence.defs.reevaluation import REEVALUATE_JOB

    instance = _postgres_instance(team_home)
    try:
        now = datetime.now(UTC)
        stale = (now - timedelta(seconds=STALE_AFTER_SECONDS * 3)).isoformat()
        fresh = now.isoformat()
        runs = {}
        for name, host, beat_at in (("vanished", "vanished-host", stale), ("busy", "busy-host", fresh)):
            runs[name] = str(uuid.uuid4())
            tags = {PID_TAG: "99", HOST_TAG: host, HEARTBEAT_TAG: beat_at}
            instance.add_run(
                dg.DagsterRun(job_name=REEVALUATE_JOB, run_id=runs[name], status=dg.DagsterRunStatus.STARTED, tags=tags)
            )
        done = team_home.cli("reevaluate")
        assert done.returncode == 0, done.stdout + done.stderr
        status = {name: instance.get_run_by_id(run_id).status for name, run_id in runs.items()}  # type: ignore[union-attr]
        assert status == {"vanished": dg.DagsterRunStatus.FAILURE, "busy": dg.DagsterRunStatus.STARTED}
    finally:
        instance.dispose()
