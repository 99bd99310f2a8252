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
        if statement.type == duckdb.StatementType.EXPLAIN:
            # EXPLAIN ANALYZE executes what it explains: `EXPLAIN ANALYZE COPY ... TO` writes files, also into
            # the store's table folders, through a read-only connection. Judge the explained statement instead.
            explained = _explained_type(statement.query)
            allowed = explained == duckdb.StatementType.SELECT
            kind = f"EXPLAIN {explained.name}" if explained is not None else "EXPLAIN (of an unrecognised statement)"
        else:
            allowed = statement.type in ALLOWED
            kind = statement.type.name
        if not allowed:
            raise StoreError(
                f"refused: {kind} statements would modify the evidence store or the session; "
                "the sql command runs read-only queries (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)"
            )


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


def run_query(home: EvidenceHome, sql: str) -> QueryResult:
    """Run read-only SQL against ``evidence.duckdb`` opened read-only; the last statement's rows are returned."""
    check_read_only(sql)
    damaged: list[Damage] = []
    for name in TABLES:
        damaged.extend(ParquetTables(home).scan(name)[1])
    # With damage the catalog's views (which read every file) would fail outright: read the healthy files.
    connection = memory_connection(home) if damaged else catalog_connection(home)
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
