"""The team tests' fixtures: a throwaway Postgres cluster for the session (``postgres.py``) and, per test, a fresh
database on it with an evidence home whose Dagster instance folder is beside it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from maml_evidence_tests.samples import BIN, run_cli
from maml_evidence_tests.team.postgres import Cluster, running_cluster, unavailable
from maml_evidence_tests.team.seaweed import Server, running_server
from maml_evidence_tests.team.seaweed import unavailable as seaweed_unavailable


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The session's Postgres cluster; the team tests skip, with the reason, where none can be started."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("dagster_postgres", reason='the team extra is not installed: pip install -e ".[team]"')
    with running_cluster() as started:
        yield started


@dataclass(frozen=True)
class TeamHome:
    """An evidence home whose Dagster home (beside it) is on its own Postgres database."""

    evidence: Path
    dagster_home: Path
    url: str

    def env(self) -> dict[str, str]:
        env = {**os.environ, "MAML_EVIDENCE_HOME": str(self.evidence), "DAGSTER_HOME": str(self.dagster_home)}
        if self.dagster_home == self.evidence / "dagster_home":
            del env["DAGSTER_HOME"]  # the evidence home's own instance, as a user without the variable has it
        return env

    def cli(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.evidence, *args, env={**self.env(), **env}, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "maml-evidence"), *args, "--home", str(self.evidence)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=self.evidence.parent,
            env=self.env(),
        )


@pytest.fixture
def team_home(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TeamHome:
    """A fresh evidence home, its instance folder and a fresh database; nothing written yet (the test decides)."""
    home = TeamHome(tmp_path / "evidence", tmp_path / "dagster_home", cluster.new_database())
    home.evidence.mkdir()
    monkeypatch.setenv("MAML_EVIDENCE_HOME", str(home.evidence))
    monkeypatch.setenv("DAGSTER_HOME", str(home.dagster_home))
    return home


def wait_until(condition, limit: float = 60, what: str = "the condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def seaweed() -> Iterator[Server]:
    """The session's S3 server (SeaweedFS); tests that need it skip, with the reason, where none can be started."""
    reason = seaweed_unavailable()
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("s3fs", reason='the team extra is not installed: pip install -e ".[team]"')
    with running_server() as started:
        yield started
