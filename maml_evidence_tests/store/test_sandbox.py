"""The ``sql`` command's sandbox (issue 9): a query reads only ``<home>/tables/`` and writes nothing anywhere.

Each hostile query runs on both connections the command uses: the catalog (a healthy home) and the in-memory
views over the healthy files (a home with a damaged file).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from maml_evidence.store.home import EvidenceHome, StoreError
from maml_evidence.store.schema import TABLES
from maml_evidence.store.sql import readable_directory, run_query, sandbox, sandboxed_connection
from maml_evidence_tests.policy.conftest import PAYLOADS, Home, copy_home
from maml_evidence_tests.samples import BIN
from maml_evidence_tests.store.conftest import store_state

# Statements the read-only check lets through (they are SELECTs); the sandbox refuses them. (query, named thing)
HOSTILE = [
    ("SELECT * FROM read_csv('/etc/passwd')", 'file "/etc/passwd"'),
    ("SELECT * FROM read_text('/etc/passwd')", 'file "/etc/passwd"'),
    ("WITH p AS (SELECT * FROM read_csv('/etc/passwd')) SELECT count(*) FROM p", 'file "/etc/passwd"'),
    ("SELECT * FROM sniff_csv('/etc/passwd')", 'file "/etc/passwd"'),
    ("SELECT * FROM read_blob('<outside>/secret.txt')", 'file "<outside>/secret.txt"'),
    ("SELECT * FROM parquet_metadata('<outside>/secret.txt')", 'file "<outside>/secret.txt"'),
    ("SELECT * FROM glob('/*')", 'file "/*"'),
    ("SELECT * FROM read_csv('https://example.com/evidence.csv')", '"https://example.com/evidence.csv"'),
    ("SELECT * FROM read_text('~/.duckdb/extensions')", '"~/.duckdb/extensions"'),
    ("SELECT * FROM duckdb_secrets()", ".duckdb/stored_secrets"),  # persistent secrets are read from ~/.duckdb
    # in the evidence home but outside its tables
    ("SELECT * FROM read_text('<home>/thresholds.toml')", 'file "<home>/thresholds.toml"'),
    ("SELECT * FROM read_text('<tables>/../thresholds.toml')", 'file "<tables>/../thresholds.toml"'),
    ("SELECT * FROM read_json('<home>/reports/*/report.json')", '"<home>/reports/*/report.json"'),
    # the example: log files written into the inbox broke every later ingest
    (
        "SELECT * FROM enable_logging(storage='file', storage_config={'path': '<inbox>'})",
        'setting "enable_logging"',
    ),
    ("SELECT * FROM disable_logging()", 'setting "enable_logging"'),
]
# Statement kinds the read-only check refuses before any connection is opened (more in test_sql.REFUSED).
STATEMENTS = [
    ("INSTALL httpfs", "INSTALL"),
    ("FORCE INSTALL httpfs", "FORCE INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("SET allowed_directories = ['/']", "SET"),
    ("RESET lock_configuration", "RESET"),
    ("SET VARIABLE x = 1", "SET"),
    ("VACUUM", "VACUUM"),
    ("WITH d AS (SELECT 1) INSERT INTO gate_decisions SELECT * FROM d", "INSERT"),
    ("CALL enable_logging(storage='file', storage_config={'path': '<inbox>'})", "CALL"),
    ("CALL checkpoint()", "CALL"),
    ("ATTACH '<outside>/other.duckdb' AS other", "ATTACH"),
    ("COPY (SELECT * FROM gate_decisions) TO '<outside>/leak.csv'", "COPY"),
    ("EXPORT DATABASE '<outside>/dump'", "EXPORT"),
    ("CREATE SECRET (TYPE s3, KEY_ID 'k', SECRET 's')", "CREATE"),
]


def fill(sql: str, home: Home, outside: Path) -> str:
    for name, path in {
        "<home>": home.evidence,
        "<tables>": home.evidence / "tables",
        "<inbox>": home.evidence / "inbox",
        "<outside>": outside,
    }.items():
        sql = sql.replace(name, str(path))
    return sql


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def in_process(home: Home, sql: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from maml_evidence.cli import main

    code = main(["sql", sql, "--home", str(home.evidence)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("statement", "named"), HOSTILE, ids=[s[:50] for s, _ in HOSTILE])
def test_the_sandbox_refuses_reads_outside_the_tables_and_any_setting(
    target: Home, outside: Path, capsys: pytest.CaptureFixture[str], statement: str, named: str
) -> None:
    sql = fill(statement, target, outside)
    before, files_outside = store_state(target), listing(outside)
    code, out, err = in_process(target, sql, capsys)
    assert (code, out) == (2, ""), (sql, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    tables = readable_directory(target.store.home)
    assert err.startswith(f"error: refused: the sql command reads only the evidence home ({tables})"), err
    assert fill(named, target, outside) in err, err
    assert store_state(target) == before
    assert listing(outside) == files_outside


@pytest.mark.parametrize(("statement", "kind_name"), STATEMENTS, ids=[s[:40] for s, _ in STATEMENTS])
def test_statements_that_write_or_configure_are_refused_by_kind(
    store_d: Home, outside: Path, capsys: pytest.CaptureFixture[str], statement: str, kind_name: str
) -> None:
    sql = fill(statement, store_d, outside)
    before, files_outside = store_state(store_d), listing(outside)
    code, out, err = in_process(store_d, sql, capsys)
    assert (code, out) == (2, ""), (sql, err)
    assert err.startswith(f"error: refused: {kind_name} statements ") and "reads only the evidence home" in err, err
    assert "Traceback" not in err
    assert store_state(store_d) == before
    assert listing(outside) == files_outside


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH '<outside>/other.duckdb' AS other",
        "COPY (SELECT 1 AS x) TO '<outside>/leak.csv'",
        "EXPORT DATABASE '<outside>/dump'",
        "INSTALL httpfs",
        "SET threads = 1",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        "CALL enable_logging(storage='file', storage_config={'path': '<inbox>'})",
        "SELECT * FROM read_csv('/etc/passwd')",
    ],
)
def test_the_sandbox_alone_refuses_what_the_statement_check_refuses(
    target: Home, outside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statement: str
) -> None:
    """Defence in depth: without ``check_read_only`` the locked connection still writes and reads nothing.

    The one thing the sandbox alone allows is writing into ``<home>/tables/`` itself (DuckDB's allowed
    directories are readable and writable): there ``check_read_only`` is the guard (test_sql's COPY and
    EXPLAIN ANALYZE COPY into a table folder).
    """
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))  # where INSTALL would put the extension
    before, files_outside = store_state(target), listing(outside)
    connection, _ = sandboxed_connection(target.store.home)
    try:
        with pytest.raises(duckdb.Error):
            connection.execute(fill(statement, target, outside))
    finally:
        connection.close()
    assert store_state(target) == before
    assert listing(outside) == files_outside
    assert list(user_home.iterdir()) == []


def test_every_view_reads_under_the_sandbox(target: Home, kind: str, damaged: tuple[Home, Path]) -> None:
    counts = target.counts()  # the store's own unsandboxed reader
    assert counts["gate_decisions"] and counts["decision_changes"]
    for name in TABLES:
        result = run_query(target.store.home, f"SELECT count(*) AS n FROM {name}")
        assert result.rows == [(counts[name],)], name
        assert bool(result.warnings) == (kind == "damaged")
    if kind == "damaged":
        assert str(damaged[1]) in result.warnings[0] and "doctor --repair" in result.warnings[0]


def test_the_sandbox_settings_are_in_force_and_locked(target: Home) -> None:
    settings = {
        "enable_external_access": False,
        "lock_configuration": True,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "temp_directory": "",  # nothing spills to disk
        "python_enable_replacements": False,
        "allowed_directories": [readable_directory(target.store.home)],
    }
    sql = "SELECT " + ", ".join(f"current_setting('{name}') AS {name}" for name in settings)
    result = run_query(target.store.home, sql)
    assert dict(zip(result.columns, result.rows[0], strict=True)) == settings


def test_an_analysts_own_connection_in_the_same_process_is_untouched(store_d: Home, outside: Path) -> None:
    """DuckDB shares one instance per database file in a process: the sandbox must not lock that one."""
    own = duckdb.connect(str(store_d.evidence / "evidence.duckdb"), read_only=True)
    try:
        assert run_query(store_d.store.home, "SELECT count(*) FROM gate_decisions").rows == [(len(PAYLOADS),)]
        own.execute("SET threads = 2")
        assert own.execute("SELECT current_setting('enable_external_access')").fetchone() == (True,)
        rows = own.execute(f"SELECT * FROM read_csv('{outside}/secret.txt', header = false)").fetchall()
        assert rows == [("not evidence",)]
    finally:
        own.close()


def test_the_sandbox_fails_closed(store_d: Home) -> None:
    connection = duckdb.connect()
    connection.execute("SET lock_configuration = true")
    try:
        with pytest.raises(StoreError, match="cannot lock the query connection down"):
            sandbox(connection, store_d.store.home)
    finally:
        connection.close()


def test_a_home_whose_path_needs_quoting(store_d: Home, tmp_path: Path) -> None:
    quoted = copy_home(store_d, tmp_path / "it's evidence")
    home = EvidenceHome(quoted.evidence)
    assert run_query(home, "SELECT count(*) FROM gate_decisions").rows == [(len(PAYLOADS),)]
    with pytest.raises(StoreError, match="reads only the evidence home"):
        run_query(home, "SELECT * FROM read_text('/etc/passwd')")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_csv('https://example.com/evidence.csv')",
        "SELECT * FROM enable_logging(storage='file', storage_config={'path': '<inbox>'})",
        "SELECT * FROM read_csv('/etc/passwd')",
    ],
)
def test_as_a_real_process_nothing_is_written_anywhere(
    store_d: Home, outside: Path, tmp_path: Path, statement: str
) -> None:
    """No extension installed into ~/.duckdb, no log file in the inbox, nothing in the working directory."""
    user_home, cwd = tmp_path / "user-home", tmp_path / "cwd"
    user_home.mkdir()
    cwd.mkdir()
    sql = fill(statement, store_d, outside)
    before = store_state(store_d)
    result = subprocess.run(
        [str(BIN / "maml-evidence"), "sql", sql, "--home", str(store_d.evidence)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**store_d.env(), "HOME": str(user_home)},
        timeout=120,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith("error: refused: the sql command reads only the evidence home")
    assert "Traceback" not in result.stderr
    assert list(user_home.iterdir()) == [] and list(cwd.iterdir()) == []
    assert store_state(store_d) == before
    assert os.listdir(store_d.evidence / "inbox") == []
