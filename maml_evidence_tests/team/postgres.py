"""A throwaway Postgres cluster (Debian's server binaries, run as the ``postgres`` user): for the team tests'
session fixture and the ingest comparison (``python -m maml_evidence_tests.team.compare_ingest``)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "dagster"


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres(command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["su", "postgres", "-s", "/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout
    )


@dataclass(frozen=True)
class Cluster:
    port: int
    folder: Path
    _names: Iterator[int]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg2

        name = f"evidence_{next(self._names)}"
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        finally:
            connection.close()
        return self.url(name)


def unavailable() -> str | None:
    """Why no throwaway cluster can be started here, or None."""
    if _binaries() is None:
        return "no Postgres server binaries (/usr/lib/postgresql/*/bin/initdb): install Debian's postgresql"
    if os.geteuid() != 0 or shutil.which("su") is None:
        return "starting a throwaway Postgres cluster needs root (initdb runs as the postgres user via su)"
    if _as_postgres("true").returncode != 0:
        return "cannot run commands as the postgres user (su postgres failed)"
    return None


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A Postgres cluster in a temporary folder on a free loopback port, stopped and removed afterwards."""
    binaries = _binaries()
    assert binaries is not None, unavailable()
    # pytest's own temporary folders are root's alone (0700): the cluster gets its own, owned by postgres
    folder = Path(tempfile.mkdtemp(prefix="maml-evidence-postgres-"))
    shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    made = _as_postgres(f"{binaries}/initdb -D {data} -A trust -U {SUPERUSER} --no-sync")
    assert made.returncode == 0, made.stdout + made.stderr
    started = _as_postgres(
        f"{binaries}/pg_ctl -D {data} -w -l {folder}/log "
        f'-o "-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start'
    )
    assert started.returncode == 0, started.stdout + started.stderr + (folder / "log").read_text(errors="replace")
    try:
        yield Cluster(port, folder, itertools.count(1))
    finally:
        _as_postgres(f"{binaries}/pg_ctl -D {data} -m fast -w stop")
        shutil.rmtree(folder, ignore_errors=True)
