"""evidence.duckdb opens in DuckDB 1.x clients (the real CLI from PyPI): every view and the README's queries."""

from __future__ import annotations

import subprocess

import duckdb
import pytest

from maml_evidence.store import EvidenceStore
from maml_evidence.store.catalog import (
    NEWEST_1X_NUMBER,
    STORAGE_NUMBER,
    catalog_problem,
    storage_number,
    view_definitions,
)
from maml_evidence.store.doctor import diagnose
from maml_evidence.store.schema import TABLES
from maml_evidence_tests.catalog.conftest import Cli, readme_cli_command, worked_queries
from maml_evidence_tests.policy.conftest import Home


def test_the_catalog_is_in_the_1x_storage_format(store_d: Home) -> None:
    catalog = store_d.store.home.catalog
    assert storage_number(catalog) == STORAGE_NUMBER <= NEWEST_1X_NUMBER
    assert catalog_problem(store_d.store.home) is None


def test_every_view_reads_in_the_1x_cli_as_in_duckdb_2(store_d: Home, cli: Cli) -> None:
    catalog = store_d.store.home.catalog
    for name, table in TABLES.items():
        rows = cli.rows(catalog, f"SELECT count(*), count(DISTINCT {table.key}) FROM {name}")
        expected = store_d.rows(f"SELECT count(*) AS n, count(DISTINCT {table.key}) AS k FROM {name}")[0]
        assert [int(v) for v in rows[0]] == [expected["n"], expected["k"]], name
        assert expected["n"] > 0, f"{name} is empty: the test would prove nothing"
        columns = [row[0] for row in cli.rows(catalog, f"DESCRIBE {name}")]
        assert columns == [c.name for c in table.columns], name


def test_the_readme_queries_run_in_the_1x_cli(store_d: Home, cli: Cli) -> None:
    catalog = store_d.store.home.catalog
    queries = worked_queries()
    assert len(queries) >= 4
    for sql in queries:
        assert len(cli.rows(catalog, sql)) == len(store_d.rows(sql)), sql
    # as the README writes it: the query as the command's last argument
    done = subprocess.run(
        [str(cli.binary), "-readonly", str(catalog), readme_cli_command()], capture_output=True, text=True
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert "2026-10-06-support-bots-enable" in done.stdout


def test_a_catalog_in_the_newer_format_is_reported_then_rewritten(home: Home, cli: Cli) -> None:
    evidence = home.store.home
    # what an earlier maml-evidence wrote: the same views in DuckDB 2.0's own format, which 1.x cannot read
    evidence.catalog.unlink()
    connection = duckdb.connect(str(evidence.catalog))
    for name, select in view_definitions(evidence).items():
        connection.execute(f"CREATE VIEW {name} AS {select}")
    connection.close()
    assert storage_number(evidence.catalog) > NEWEST_1X_NUMBER
    refused = cli.run(evidence.catalog, "FROM gate_decisions")
    assert refused.returncode != 0 and "version number" in refused.stderr

    findings = [f for f in diagnose(EvidenceStore(evidence.root)).errors if f.subject == str(evidence.catalog)]
    assert len(findings) == 1 and "cannot open" in findings[0].message, findings

    # an analyst's open session on the old file keeps working while it is replaced
    reader = duckdb.connect(str(evidence.catalog), read_only=True)
    try:
        done = home.cli("sql", "SELECT count(*) FROM gate_decisions")
        assert done.returncode == 0, done.stderr
        assert storage_number(evidence.catalog) == STORAGE_NUMBER
        assert reader.execute("SELECT count(*) FROM gate_decisions").fetchone() == (len(home.decisions()),)
    finally:
        reader.close()
    assert cli.rows(evidence.catalog, "SELECT count(*) FROM gate_decisions") == [[str(len(home.decisions()))]]
    assert not [f for f in diagnose(EvidenceStore(evidence.root)).findings if f.subject == str(evidence.catalog)]
    assert not list(evidence.root.glob(".*.partial*")), "the rewrite left a temporary file"


def test_a_file_that_is_not_a_duckdb_database_is_reported(home: Home) -> None:
    evidence = home.store.home
    evidence.catalog.write_bytes(b"not a database at all, just some text")
    assert catalog_problem(evidence) == "not a DuckDB database file"
    home.store.ensure()
    assert catalog_problem(evidence) is None


@pytest.mark.parametrize("number", [STORAGE_NUMBER - 1, NEWEST_1X_NUMBER + 1])
def test_storage_numbers_outside_the_1x_range_are_reported(home: Home, number: int) -> None:
    evidence = home.store.home
    header = bytearray(evidence.catalog.read_bytes())
    header[12:20] = number.to_bytes(8, "little")
    evidence.catalog.write_bytes(bytes(header))
    assert f"storage version {number}" in (catalog_problem(evidence) or "")
