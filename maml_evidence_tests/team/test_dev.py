"""`maml-evidence dev` (dagster dev: webserver and daemon) on an evidence home whose instance is on Postgres."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

import dagster as dg

from maml_evidence_tests.samples import BIN
from maml_evidence_tests.team.conftest import TeamHome


def test_dev_serves_the_ui_and_runs_the_daemon_on_the_postgres_instance(team_home: TeamHome) -> None:
    assert team_home.cli("instance", "--postgres-url", team_home.url).returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dev = subprocess.Popen(
        [str(BIN / "maml-evidence"), "dev", "--port", str(port), "--home", str(team_home.evidence)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=team_home.env(),
        cwd=team_home.evidence.parent,
        start_new_session=True,
    )
    instance = dg.DagsterInstance.from_config(str(team_home.dagster_home))
    try:
        deadline = time.monotonic() + 90
        served = daemons = False
        while time.monotonic() < deadline and not (served and daemons):
            assert dev.poll() is None, f"dagster dev exited: {dev.stderr.read() if dev.stderr else ''}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as answer:
                    served = answer.status == 200
            except OSError:
                pass
            # the daemon's heartbeats land in Postgres, where the sensor's and schedule's state live too
            daemons = "SENSOR" in instance.get_daemon_heartbeats()
            time.sleep(0.5)
        assert served, "the UI never answered"
        assert daemons, "no sensor daemon heartbeat in the Postgres instance"
        assert not list(team_home.dagster_home.glob("**/*.db")), "a Postgres instance keeps no SQLite files"
    finally:
        instance.dispose()
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
