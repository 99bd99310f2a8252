"""Compaction keeps the files it merged for a grace period, hidden by the views, and deletes them only later."""

from __future__ import annotations

import pytest

from maml_evidence.store.doctor import diagnose
from maml_evidence.store.home import StoreError
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import GRACE_ENV, SUPERSEDED_GRACE_SECONDS, ParquetTables, grace_seconds
from maml_evidence_tests.catalog.conftest import Cli
from maml_evidence_tests.policy.conftest import Home


def every_row(home: Home) -> dict[str, list[str]]:
    """Every row of every view, sorted (as text, so list and null columns compare too)."""
    return {name: sorted(repr(tuple(row.values())) for row in home.rows(f"FROM {name}")) for name in TABLES}


def test_a_query_during_the_grace_period_sees_exactly_the_rows_it_sees_after(evaluated_twice: Home, cli: Cli) -> None:
    home = evaluated_twice
    tables = ParquetTables(home.store.home)
    before = every_row(home)
    merged = {name: tables.data_files(name) for name in TABLES if len(tables.data_files(name)) > 1}
    assert {"gate_decisions", "decision_history", "gate_checks"} <= merged.keys(), "nothing to compact"
    for name in merged:
        assert tables.compact(name)
    # the merged files are all still there, beside the compacted copy of their rows
    for name, files in merged.items():
        assert all(f.exists() for f in files), name
        assert set(tables.superseded(name)) == set(files), name
        assert tables.live_files(name) == [f for f in tables.data_files(name) if f not in files], name
        assert len(tables.live_files(name)) == 1, name
    during = every_row(home)
    assert during == before
    # a query that listed the files before the compaction (running, or bound and about to read) still reads them
    listed = "[" + ", ".join(f"'{f}'" for f in merged["decision_history"]) + "]"
    pinned = f"SELECT count(*) FROM read_parquet({listed}, union_by_name = true)"
    assert cli.rows(home.store.home.catalog, pinned) == [[str(len(before["decision_history"]))]]
    for name in TABLES:
        count = cli.rows(home.store.home.catalog, f"SELECT count(*) FROM {name}")
        assert count == [[str(len(before[name]))]], name
    assert diagnose(home.store).findings == []

    # a later pass inside the grace period keeps them; once it has passed, they go (with their sidecars)
    for name in merged:
        assert not tables.compact_if_needed(name)
        assert all(f.exists() for f in merged[name])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(GRACE_ENV, "0")
        for name in merged:
            tables.compact_if_needed(name)
    for name, files in merged.items():
        assert not any(f.exists() or f.with_name(f.name + ".keys").exists() for f in files), name
        assert tables.superseded(name) == {}
        assert not list(tables.directory(name).glob("*.supersedes")), name
    assert every_row(home) == before
    gone = cli.run(home.store.home.catalog, pinned)
    assert gone.returncode != 0 and ("No files found" in gone.stderr or "No such file" in gone.stderr), gone.stderr


def test_compacting_again_within_the_grace_period_counts_each_row_once(evaluated_twice: Home) -> None:
    home = evaluated_twice
    tables = ParquetTables(home.store.home)
    before = every_row(home)
    assert tables.compact("decision_history") and tables.compact("gate_decisions")
    first = set(tables.superseded("decision_history"))
    # a re-evaluation writes new batches on top; compact those with the first compacted file, all in grace
    home.write_policy({"gpu_hour_usd": 0.5})
    done = home.cli("reevaluate")
    assert done.returncode in (0, 1), done.stderr
    after_reevaluation = every_row(home)
    assert after_reevaluation != before
    assert len(after_reevaluation["decision_history"]) > len(before["decision_history"])
    for name in ("decision_history", "gate_decisions"):
        if len(tables.live_files(name)) > 1:
            assert tables.compact(name)
    assert first < set(tables.superseded("decision_history"))
    assert every_row(home) == after_reevaluation
    assert diagnose(home.store).errors == []


def test_the_grace_period_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GRACE_ENV, raising=False)
    assert grace_seconds() == SUPERSEDED_GRACE_SECONDS == 600
    monkeypatch.setenv(GRACE_ENV, "90")
    assert grace_seconds() == 90
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(GRACE_ENV, bad)
        with pytest.raises(StoreError, match=GRACE_ENV):
            grace_seconds()
