"""The DuckDB catalog: ``evidence.duckdb`` holds only views over the Parquet tables.

No process keeps ``evidence.duckdb`` open for writing: it is written once (or when the evidence home moves)
and then only opened read-only, so analysts, the ``sql`` command and Dagster never fight over DuckDB's
single-writer lock. The project's own readers use an in-memory connection with the same views.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb

from maml_evidence.store.files import atomic_write_text, file_lock
from maml_evidence.store.home import EvidenceHome, StoreError
from maml_evidence.store.schema import COMMITS, TABLES
from maml_evidence.store.tables import Damage, ParquetTables, view_sql

CATALOG_VERSION = 3
MARKER = "evidence.catalog.json"
VANISHED_ATTEMPTS = 5
GLOB_CHARACTERS = "[]*?{}"


def _vanished(exc: duckdb.IOException) -> bool:
    """DuckDB's error for a file that a glob listed and compaction removed before it was read."""
    return "No such file" in str(exc) or "No files found" in str(exc)


def view_definitions(home: EvidenceHome) -> dict[str, str]:
    """Every view of the store: name -> SELECT."""
    tables = ParquetTables(home)
    return {
        name: view_sql(table, tables.directory(name), tables.directory(COMMITS) if table.committed else None)
        for name, table in TABLES.items()
    }


def _marker(home: EvidenceHome) -> dict[str, object]:
    return {
        "version": CATALOG_VERSION,
        "root": str(home.root),
        "views": view_definitions(home),
        # a declared column added or changed: the schema files are rewritten before the views (refresh_schemas)
        "columns": {name: [f"{c.name} {c.type}" for c in table.columns] for name, table in TABLES.items()},
    }


def ensure_store(home: EvidenceHome) -> None:
    """Create the home's folders, table schema files and the DuckDB catalog of views (idempotent, cheap)."""
    special = sorted(set(str(home.root)) & set(GLOB_CHARACTERS))
    if special:
        raise StoreError(
            f"evidence home {str(home.root)!r}: its path contains {' '.join(special)}, which DuckDB reads as a "
            "file pattern in every view; choose a folder whose path has none of [ ] * ? { }"
        )
    home.ensure()
    ParquetTables(home).ensure()
    marker_path = home.root / MARKER
    wanted = _marker(home)
    if home.catalog.exists() and _read_marker(marker_path) == wanted:
        return
    with file_lock(home.locks / "catalog.lock"):
        if home.catalog.exists() and _read_marker(marker_path) == wanted:
            return
        ParquetTables(home).refresh_schemas()
        try:
            connection = duckdb.connect(str(home.catalog))
        except duckdb.IOException as exc:
            raise StoreError(
                f"{home.catalog}: cannot update the catalog's views while another process holds it open "
                f"(close DuckDB sessions on it and retry): {exc}"
            ) from exc
        try:
            for name, select in view_definitions(home).items():
                connection.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")
        finally:
            connection.close()
        atomic_write_text(marker_path, json.dumps(wanted, indent=2, sort_keys=True))


def _read_marker(path) -> object:  # noqa: ANN001
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def memory_connection(home: EvidenceHome, damaged: list[Damage] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the store's views over its readable files; holds no lock on any file.

    Damaged files are left out (so every other spike run stays queryable) and appended to ``damaged``.
    """
    tables = ParquetTables(home)
    connection = duckdb.connect()
    for attempt in range(VANISHED_ATTEMPTS):
        sources: dict[str, Path | list[Path]] = {}
        broken_files: list[Damage] = []
        for name in TABLES:
            healthy, broken = tables.scan(name)
            broken_files.extend(broken)
            # Over the folder's glob unless a file is damaged: a pinned file list would fail every later query
            # once compaction removes one of its files, while a glob is re-read by each query (see ``query``).
            sources[name] = healthy if broken else tables.directory(name)
        try:
            for name, table in TABLES.items():
                commit = sources[COMMITS] if table.committed else None
                connection.execute(f"CREATE OR REPLACE VIEW {name} AS {view_sql(table, sources[name], commit)}")
            break
        except duckdb.IOException as exc:  # binding reads the files: one may vanish under compaction
            if attempt == VANISHED_ATTEMPTS - 1 or not _vanished(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    if damaged is not None:
        damaged.extend(broken_files)
    return connection


def query(
    connection: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | None = None, *, attempts: int = 3
) -> duckdb.DuckDBPyConnection:
    """Run a query, retrying briefly when a batch file vanished under it (compaction just replaced it)."""
    for attempt in range(attempts):
        try:
            return connection.execute(sql, params or [])
        except duckdb.IOException as exc:
            if attempt == attempts - 1 or not _vanished(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
