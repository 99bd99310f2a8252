"""Read-only SQL over the evidence store, as the ``sql`` command and the notebook API run it.

Two layers keep it read-only. ``check_read_only`` refuses every statement kind but SELECT and EXPLAIN, and
``sandbox`` locks the connection with DuckDB's own settings, so that even a SELECT reads only the home's
``tables/`` folder and writes nothing anywhere: no files (``COPY``, ``enable_logging``), no extensions
(``INSTALL``, auto-install into ``~/.duckdb``), no spilled temporary files, and no setting can be changed back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import duckdb

from maml_evidence.store.catalog import ensure_store, memory_connection, query
from maml_evidence.store.home import EvidenceHome, StoreError
from maml_evidence.store.remote import duckdb_connection
from maml_evidence.store.schema import TABLES
from maml_evidence.store.sqltext import literal
from maml_evidence.store.tables import ParquetTables

T = TypeVar("T")

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
READ_STATEMENTS = "SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN"
# Settings that can only be given when a database starts; the rest of the sandbox is set after connecting.
SANDBOX_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
CATALOG_ALIAS = "evidence"


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[object, ...]]
    warnings: tuple[str, ...] = ()


def check_read_only(sql: str) -> None:
    """Refuse anything but SELECT/EXPLAIN (DESCRIBE, SHOW, SUMMARIZE and FROM-first queries are SELECTs)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise StoreError(f"SQL does not parse: {exc}") from None
    if not statements:
        raise StoreError("no SQL statement given")
    for statement in statements:
        if statement.type == duckdb.StatementType.EXPLAIN:
            # EXPLAIN ANALYZE executes what it explains: `EXPLAIN ANALYZE COPY ... TO` writes files, also into
            # the store's table folders, through a read-only connection. Judge the explained statement instead.
            explained = _explained_type(statement.query)
            allowed = explained == duckdb.StatementType.SELECT
            kind = f"EXPLAIN {explained.name}" if explained is not None else "EXPLAIN (of an unrecognised statement)"
        else:
            allowed = statement.type in ALLOWED
            kind = _statement_name(statement)
        if not allowed:
            raise StoreError(
                f"refused: {kind} statements can write files or change the store or the session; the sql command "
                f"reads only the evidence home and runs read-only queries ({READ_STATEMENTS})"
            )


def _statement_name(statement: duckdb.Statement) -> str:
    """What the user wrote (INSTALL, RESET, ...) where DuckDB's type says less (LOAD, SET, ...)."""
    words = statement.query.split(None, 2)
    first = words[0].upper() if words else ""
    if first == "FORCE" and len(words) > 1:  # FORCE INSTALL
        return f"FORCE {words[1].upper()}"
    return first if first.isalpha() and first != "WITH" else statement.type.name


def _explained_type(sql: str) -> duckdb.StatementType | None:
    """The type of the statement an EXPLAIN explains (after EXPLAIN, ANALYZE or an option list); None if unclear."""
    tokens = [(pos, kind) for pos, kind in duckdb.tokenize(sql) if kind != duckdb.token_type.comment]
    ends = [pos for pos, _ in tokens[1:]] + [len(sql)]
    texts = [(sql[pos:end].strip(), kind) for (pos, kind), end in zip(tokens, ends, strict=True)]
    index = 1  # texts[0] is EXPLAIN
    if index < len(texts) and texts[index][0].upper() == "ANALYZE":
        index += 1
    elif index < len(texts) and texts[index][0] == "(":
        depth = 0
        while index < len(texts):
            text, kind = texts[index]
            if kind == duckdb.token_type.operator:
                depth += text.count("(") - text.count(")")
            index += 1
            if depth <= 0:
                break
    if index >= len(texts):
        return None
    try:
        inner = duckdb.extract_statements(sql[tokens[index][0] :])
    except duckdb.Error:
        return None
    return inner[0].type if len(inner) == 1 else None


def readable_directory(home: EvidenceHome) -> str:
    """The one folder a query may read: the home's tables (every view reads only there, by absolute path)."""
    return str(home.tables) + ("/" if home.remote else os.sep)


def sandbox(connection: duckdb.DuckDBPyConnection, home: EvidenceHome) -> duckdb.DuckDBPyConnection:
    """Lock ``connection`` so that it reads only ``<home>/tables/`` and writes nothing; fails closed.

    Apply it after the views exist (creating them reads the files) and before any user SQL. The order matters:
    ``allowed_directories`` can only be set while external access is on, and the lock comes last.
    """
    settings = (
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        # an in-memory database spills large intermediates into ./.tmp: with no temp directory nothing is written
        "SET temp_directory = ''",
        # no Python variable of the caller's frame is read as a table (DuckDB's replacement scans)
        "SET python_enable_replacements = false",
        f"SET allowed_directories = [{literal(readable_directory(home))}]",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    )
    try:
        for setting in settings:
            connection.execute(setting)
    except duckdb.Error as exc:
        raise StoreError(f"cannot lock the query connection down (DuckDB {duckdb.__version__}): {exc}") from None
    return connection


def catalog_reader(home: EvidenceHome) -> duckdb.DuckDBPyConnection:
    """``evidence.duckdb`` attached read-only to a private in-memory database (not yet sandboxed).

    Not ``duckdb.connect(catalog)``: within one process DuckDB shares a database instance per file, so locking
    that instance would also lock and sandbox an analyst's own connection to evidence.duckdb in the same notebook.
    """
    ensure_store(home)
    connection = duckdb_connection(home.root, SANDBOX_CONFIG)
    try:
        connection.execute(f"ATTACH {literal(str(home.catalog))} AS {CATALOG_ALIAS} (READ_ONLY)")
        connection.execute(f"USE {CATALOG_ALIAS}")
    except duckdb.Error as exc:
        connection.close()
        raise StoreError(f"{home.catalog}: cannot open read-only: {exc}") from None
    return connection


def sandboxed_connection(home: EvidenceHome) -> tuple[duckdb.DuckDBPyConnection, tuple[str, ...]]:
    """The locked connection every read-only query runs on, and a warning per damaged file it leaves out."""
    tables = ParquetTables(home)
    damaged = [damage for name in TABLES for damage in tables.scan(name)[1]]
    # With damage the catalog's views (which read every file) would fail outright: read the healthy files.
    connection = memory_connection(home) if damaged else catalog_reader(home)
    try:
        sandbox(connection, home)
    except BaseException:
        connection.close()
        raise
    return connection, tuple(f"skipped {d.describe()}; run `maml-evidence doctor --repair`" for d in damaged)


def refusal(exc: duckdb.Error, home: EvidenceHome) -> str:
    """A user's message for a failed query: the sandbox's refusals say so and name what was refused."""
    text = str(exc)
    reads_only = f"refused: the sql command reads only the evidence home ({readable_directory(home)})"
    if isinstance(exc, duckdb.PermissionException):
        found = re.search(r'Cannot access (file|directory) "([^"]*)"', text)
        return f'{reads_only}, so it may not access {found[1]} "{found[2]}"' if found else f"{reads_only}: {text}"
    locked = re.search(r'Cannot change configuration option "([^"]+)" - the configuration has been locked', text)
    if locked:
        return f'{reads_only}, so it may not change DuckDB\'s setting "{locked[1]}"'
    return f"query failed: {text}"


def execute(
    home: EvidenceHome,
    sql: str,
    fetch: Callable[[duckdb.DuckDBPyConnection], T],
    params: Sequence[object] | None = None,
) -> tuple[T, tuple[str, ...]]:
    """Check ``sql``, run it on a sandboxed connection and ``fetch`` the last statement's result; plus warnings.

    ``params`` bind ``?`` / ``$name`` placeholders and need a single statement.
    """
    check_read_only(sql)
    statements = duckdb.extract_statements(sql)
    if params is not None and len(statements) != 1:
        raise StoreError(f"query parameters need exactly one statement, got {len(statements)}")
    connection, warnings = sandboxed_connection(home)
    try:
        cursor = connection
        for statement in statements:
            cursor = query(connection, statement.query, params)
        return fetch(cursor), warnings
    except duckdb.Error as exc:
        raise StoreError(refusal(exc, home)) from None
    finally:
        connection.close()


def _rows(cursor: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple[object, ...]]]:
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall() if columns else []


def run_query(home: EvidenceHome, sql: str) -> QueryResult:
    """Run read-only SQL on the sandboxed evidence views; the last statement's rows are returned."""
    (columns, rows), warnings = execute(home, sql, _rows)
    return QueryResult(columns, rows, warnings)
