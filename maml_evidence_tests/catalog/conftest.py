"""Fixtures for the catalog tests: the real DuckDB 1.x CLI (the ``duckdb-cli`` package of the test extra) and an
evidence home built by the pipeline, re-evaluated once so that every view has rows."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from maml_evidence_tests.policy.conftest import Home, copy_home, home  # noqa: F401 - fixture
from maml_evidence_tests.store.conftest import store_d  # noqa: F401 - fixture

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Cli:
    """The DuckDB command-line client an analyst installs with ``pip install duckdb-cli``."""

    binary: Path
    version: str

    def run(self, database: Path, sql: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``duckdb -readonly -bail [ARGS] DATABASE < SQL``: each statement in turn, stopping at the first error."""
        return subprocess.run(
            [str(self.binary), "-readonly", "-bail", *args, str(database)],
            input=sql + ";\n",
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
        )

    def rows(self, database: Path, sql: str) -> list[list[str]]:
        """One query's rows as CSV fields (header dropped); fails the test on any error."""
        done = self.run(database, sql, "-csv")
        assert done.returncode == 0 and not done.stderr, f"DuckDB {self.version}: {sql}\n{done.stderr}"
        return list(csv.reader(io.StringIO(done.stdout)))[1:]


@pytest.fixture(scope="session")
def cli() -> Cli:
    """The 1.x CLI from the ``duckdb-cli`` wheel (its binary ships inside the package, beside no Python duckdb)."""
    try:
        import duckdb_cli
    except ImportError:
        pytest.skip("the DuckDB CLI is not installed: pip install -e '.[test]' (it brings duckdb-cli, a 1.x build)")
    binary = Path(duckdb_cli.__file__).parent / "duckdb"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.split()[0]
    assert version.startswith("v1."), f"duckdb-cli {version}: these tests need a DuckDB 1.x client"
    return Cli(binary, version)


@pytest.fixture
def evaluated_twice(store_d: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:  # noqa: F811
    """A copy of the pipeline's store after an ingest and a re-evaluation: two batch files per decision table."""
    copied = copy_home(store_d, tmp_path)
    monkeypatch.setenv("MAML_EVIDENCE_HOME", str(copied.evidence))
    monkeypatch.setenv("DAGSTER_HOME", str(copied.dagster_home))
    return copied


def worked_queries() -> list[str]:
    """The README's worked queries (its ``sql`` block after "Worked queries:"), one statement each."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"Worked queries:\s*```sql\n(.*?)```", text, re.S)
    assert block, "README: no ```sql block after 'Worked queries:'"
    statements = [s.strip() for s in block.group(1).split(";")]
    return [s for s in statements if s]


def readme_cli_command() -> str:
    """The README's own DuckDB CLI command line."""
    found = re.search(r"^duckdb -readonly data/evidence\.duckdb \"(.+)\"$", README.read_text(encoding="utf-8"), re.M)
    assert found, 'README: the `duckdb -readonly data/evidence.duckdb "..."` example is gone'
    return found.group(1)
