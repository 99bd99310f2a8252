"""Read-only SQL over the evidence store, as the ``sql`` command runs it."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from maml_evidence.store.catalog import catalog_connection, memory_connection, query
from maml_evidence.store.home import EvidenceHome, StoreError
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import Damage, ParquetTables

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


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
        if statement.type not in ALLOWED:
            kind = statement.type.name
            raise StoreError(
                f"refused: {kind} statements would modify the evidence store or the session; "
                "the sql command runs read-only queries (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)"
            )


def run_query(home: EvidenceHome, sql: str) -> QueryResult:
    """Run read-only SQL against ``evidence.duckdb`` opened read-only; the last statement's rows are returned."""
    check_read_only(sql)
    damaged: list[Damage] = []
    for name in TABLES:
        damaged.extend(ParquetTables(home).scan(name)[1])
    if damaged:
        # The catalog's views read every file and would fail outright; read the healthy ones instead.
        connection = memory_connection(home)
    else:
        connection = catalog_connection(home)
    warnings = tuple(f"skipped {d.describe()}; run `maml-evidence doctor --repair`" for d in damaged)
    try:
        cursor = None
        for statement in duckdb.extract_statements(sql):
            cursor = query(connection, statement.query)
        assert cursor is not None
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return QueryResult(columns, cursor.fetchall() if columns else [], warnings)
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {exc}") from None
    finally:
        connection.close()
