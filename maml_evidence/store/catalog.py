"""The DuckDB catalog: ``evidence.duckdb`` holds only views over the Parquet tables.

No process keeps ``evidence.duckdb`` open for writing: it is written once (or when the evidence home moves)
and then only opened read-only, so analysts, the ``sql`` command and Dagster never fight over DuckDB's
single-writer lock. The project's own readers use an in-memory connection with the same views.

It is written in DuckDB's v1.0.0 storage format, so DuckDB 1.x clients (what most notebooks and BI tools run)
open it as well as 2.x; a catalog found in a newer format is rebuilt beside it and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb

from maml_evidence.store.files import atomic_write_text, file_lock
from maml_evidence.store.home import EvidenceHome, StoreError
from maml_evidence.store.remote import duckdb_connection
from maml_evidence.store.schema import COMMITS, TABLES
from maml_evidence.store.sqltext import literal
from maml_evidence.store.tables import Damage, ParquetTables, view_sql

CATALOG_VERSION = 4
# The oldest storage format DuckDB 2.0 writes; every view only reads Parquet files, so nothing newer is needed.
STORAGE_VERSION = "v1.0.0"
# The storage version number DuckDB writes in the file header (bytes 12-19, little endian, after the 8-byte
# checksum and the magic "DUCK") for STORAGE_VERSION; DuckDB 1.5 reads 64 to 68, 2.0 writes 999 by default.
STORAGE_NUMBER = 64
OLDEST_CLIENT = "1.0"
NEWEST_1X_NUMBER = 68
HEADER_MAGIC = b"DUCK"
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


def storage_number(path: Path) -> int | None:
    """The storage version number in a DuckDB file's header; None if the file is not a DuckDB database."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[8:12] != HEADER_MAGIC:
        return None
    return int(struct.unpack("<Q", header[12:20])[0])


def catalog_problem(home: EvidenceHome) -> str | None:
    """Why a DuckDB 1.x client cannot open the home's catalog; None if it can (or there is none yet)."""
    if not home.catalog.exists():
        return None
    number = storage_number(home.catalog)
    if number is None:
        return "not a DuckDB database file"
    if not STORAGE_NUMBER <= number <= NEWEST_1X_NUMBER:
        return (
            f"written in DuckDB storage version {number}, which DuckDB {OLDEST_CLIENT} to 1.5 clients cannot open "
            f"(they read {STORAGE_NUMBER} to {NEWEST_1X_NUMBER}); the next maml-evidence command on this home "
            f"rewrites it in the {STORAGE_VERSION} format"
        )
    return None


def _marker(home: EvidenceHome) -> dict[str, object]:
    return {
        "version": CATALOG_VERSION,
        "storage_version": STORAGE_VERSION,
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
    marker_path = home.catalog.parent / MARKER
    wanted = _marker(home)
    if _current(home, marker_path, wanted):
        return
    with file_lock(home.locks / "catalog.lock"):
        if _current(home, marker_path, wanted):
            return
        ParquetTables(home).refresh_schemas()
        write_catalog(home)
        atomic_write_text(marker_path, json.dumps(wanted, indent=2, sort_keys=True))


def _current(home: EvidenceHome, marker_path: Path, wanted: dict[str, object]) -> bool:
    return storage_number(home.catalog) == STORAGE_NUMBER and _read_marker(marker_path) == wanted


def write_catalog(home: EvidenceHome) -> None:
    """Build the catalog of views beside ``evidence.duckdb`` in the 1.x-readable format, then rename it into place.

    A reader holding the old file keeps reading it; a new reader opens the old or the new file, never half of one.
    Nothing holds DuckDB's write lock on ``evidence.duckdb`` itself, so open read-only sessions never block this.
    """
    tmp = home.catalog.parent / f".{home.catalog.name}.{uuid.uuid4().hex[:12]}.partial"
    try:
        connection = duckdb_connection(home.root)
        try:
            connection.execute(f"ATTACH {literal(str(tmp))} AS fresh (STORAGE_VERSION {literal(STORAGE_VERSION)})")
            for name, select in view_definitions(home).items():
                connection.execute(f"CREATE VIEW fresh.main.{name} AS {select}")
            connection.execute("DETACH fresh")
        finally:
            connection.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        # a write-ahead log left beside the old file would be replayed onto the new one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{home.catalog}.wal")
        os.replace(tmp, home.catalog)
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


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
    connection = duckdb_connection(home.root)
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
