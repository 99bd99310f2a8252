"""Fixtures for the read-only SQL tests (the ``sql`` command and the notebook API).

They reuse the policy suite's evidence home, ingested once through the real pipeline, and re-evaluate a copy
of it once under POLICY_D so that every view, decision_changes included, has rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maml_evidence.store.reevaluation import reevaluate
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import ParquetTables
from maml_evidence_tests.policy.conftest import Home, copy_home, home  # noqa: F401 - fixture

# A dearer GPU and fewer small spikes: the enable sample is now deferred for cost on price alone.
POLICY_D = {"gpu_hour_usd": 6.0, "min_projects": 4, "max_mean_accuracy_regression_pp": 2.5}


@pytest.fixture(scope="package")
def store_d(template: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """The template re-evaluated once under POLICY_D; tests only read it."""
    copied = copy_home(template, tmp_path_factory.mktemp("sql"))
    copied.write_policy(POLICY_D)
    assert reevaluate(copied.store).changes
    yield copied


@pytest.fixture(scope="package")
def damaged(store_d: Home, tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, Path]:
    """A copy of ``store_d`` with one gate_checks file truncated: queries then run on the in-memory views."""
    copied = copy_home(store_d, tmp_path_factory.mktemp("damaged"))
    broken = ParquetTables(copied.store.home).data_files("gate_checks")[0]
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    return copied, broken


@pytest.fixture(params=["catalog", "damaged"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(kind: str, store_d: Home, damaged: tuple[Home, Path]) -> Home:
    """A healthy home (queries run on evidence.duckdb) or a damaged one (in-memory views over healthy files)."""
    return store_d if kind == "catalog" else damaged[0]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the evidence home, with one file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("not evidence\n", encoding="utf-8")
    return folder


def store_state(of: Home) -> dict[str, object]:
    """Every file of the evidence home (size and mtime), the views' row counts, and the views' columns."""
    files = {
        str(p.relative_to(of.evidence)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in of.evidence.rglob("*")
        if p.is_file() and ".locks" not in p.parts
    }
    connection = of.store.connect()
    try:
        views = {
            name: (
                connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0],  # type: ignore[index]
                [row[0] for row in connection.execute(f"DESCRIBE {name}").fetchall()],
            )
            for name in TABLES
        }
    finally:
        connection.close()
    return {"files": files, "views": views}
