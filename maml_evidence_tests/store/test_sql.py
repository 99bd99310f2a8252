"""`maml-evidence sql`: read-only queries in four formats, refusals that leave the store intact, the README's
worked queries, concurrent read-only DuckDB clients, and a README that documents every view and column."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from maml_evidence.policy import load_policy
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence.store.schema import TABLES
from maml_evidence_tests.policy.conftest import PAYLOADS, POLICY_B, Home, oracle
from maml_evidence_tests.samples import REPO_ROOT
from maml_evidence_tests.store.conftest import POLICY_D, store_state

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def worked_queries() -> dict[str, str]:
    """The README's worked queries, keyed by their comment line."""
    block = re.search(r"```sql\n(.*?)```", section("SQL over the evidence"), re.DOTALL)
    assert block, "README: no ```sql block of worked queries"
    queries: dict[str, str] = {}
    for chunk in re.split(r"\n(?=-- )", block.group(1).strip()):
        title, _, body = chunk.partition("\n")
        queries[title.removeprefix("-- ").strip()] = body.strip()
    return queries


def readme_blocks(language: str) -> list[str]:
    """Every ```<language> block of the README's SQL section."""
    return re.findall(rf"```{language}\n(.*?)```", section("SQL over the evidence"), re.DOTALL)


def readme_sql_statements() -> list[str]:
    """Every statement of every ```sql block in the README's SQL section."""
    return [s.query for block in readme_blocks("sql") for s in duckdb.extract_statements(block)]


def query_titled(words: str) -> str:
    found = [q for title, q in worked_queries().items() if words in title]
    assert len(found) == 1, (words, list(worked_queries()))
    return found[0]


def ok(home: Home, sql: str, *args: str) -> str:
    result = home.cli("sql", sql, *args)
    assert result.returncode == 0, (sql, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


SELECT = (
    "SELECT spike_run_id, decision, failed_check, maml_recommended, min_projects, extra_gpu_cost_usd_per_run, "
    "evaluated_at FROM gate_decisions ORDER BY spike_run_id"
)


def test_json_and_csv_output_equal_the_store(store_d: Home) -> None:
    expected = [store_d.decisions()[run_id] for run_id in sorted(PAYLOADS)]
    as_json = json.loads(ok(store_d, SELECT, "--format", "json"))
    assert [r["spike_run_id"] for r in as_json] == sorted(PAYLOADS)
    for got, row in zip(as_json, expected, strict=True):
        assert got["decision"] == row["decision"]
        assert got["failed_check"] == row["failed_check"]  # null stays null
        assert got["maml_recommended"] is row["maml_recommended"]
        assert got["min_projects"] == row["min_projects"] and isinstance(got["min_projects"], int)
        assert got["extra_gpu_cost_usd_per_run"] == row["extra_gpu_cost_usd_per_run"]
        assert got["evaluated_at"] == row["evaluated_at"].isoformat()

    as_csv = list(csv.DictReader(io.StringIO(ok(store_d, SELECT, "--format", "csv"))))
    assert [r["spike_run_id"] for r in as_csv] == sorted(PAYLOADS)
    for got, row in zip(as_csv, expected, strict=True):
        assert got["decision"] == row["decision"]
        assert got["failed_check"] == (row["failed_check"] or "")
        assert int(got["min_projects"]) == row["min_projects"]
        assert float(got["extra_gpu_cost_usd_per_run"]) == row["extra_gpu_cost_usd_per_run"]
        assert got["maml_recommended"].lower() == str(row["maml_recommended"]).lower()


def test_table_and_markdown_output(store_d: Home) -> None:
    sql = "SELECT decision, count(*) AS runs FROM gate_decisions GROUP BY ALL ORDER BY decision"
    mix: dict[str, int] = {}
    for report in oracle(POLICY_D).values():
        mix[report["decision"]] = mix.get(report["decision"], 0) + 1

    table = ok(store_d, sql).splitlines()
    assert table[0].split() == ["decision", "runs"]
    assert set(table[1]) <= {"-", " "}
    assert table[-1] == f"({len(mix)} rows)"
    assert {line.split()[0]: int(line.split()[1]) for line in table[2:-1]} == mix

    markdown = ok(store_d, sql, "--format", "markdown").splitlines()
    assert markdown[0] == "| decision | runs |"
    assert re.fullmatch(r"\|(-+\|){2}", markdown[1].replace(":", ""))
    body = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown[2:]]
    assert {decision: int(runs) for decision, runs in body} == mix

    nulls = ok(store_d, "SELECT failed_check FROM gate_decisions WHERE decision = 'enable_maml' LIMIT 1")
    assert "NULL" in nulls


@pytest.mark.parametrize(
    "sql",
    [
        "FROM gate_decisions",
        "WITH d AS (SELECT * FROM gate_decisions) SELECT count(*) FROM d",
        "DESCRIBE gate_decisions",
        "SUMMARIZE gate_decisions",
        "EXPLAIN SELECT * FROM gate_checks",
        "EXPLAIN ANALYZE SELECT count(*) FROM decision_history",
        "SELECT 1; SELECT count(*) AS n FROM spike_runs",
    ],
)
def test_read_statements_are_accepted(store_d: Home, sql: str) -> None:
    assert ok(store_d, sql)


def test_show_tables_lists_every_view(store_d: Home) -> None:
    listed = {line.strip() for line in ok(store_d, "SHOW TABLES").splitlines()}
    assert set(TABLES) <= listed


REFUSED = [
    "CREATE TABLE notes AS SELECT 1 AS x",
    "CREATE OR REPLACE VIEW gate_decisions AS SELECT 1 AS x",
    "INSERT INTO gate_decisions SELECT * FROM gate_decisions",
    "DELETE FROM gate_decisions",
    "UPDATE gate_decisions SET decision = 'enable_maml'",
    "DROP VIEW gate_decisions",
    "COPY (SELECT * FROM gate_decisions) TO '{out}/copy.csv'",
    "COPY gate_decisions FROM '{out}/copy.csv'",
    "EXPORT DATABASE '{out}/export'",
    "ATTACH '{out}/other.duckdb' AS other",
    "DETACH evidence",
    "USE memory",
    "SET threads = 1",
    "LOAD json",
    "CHECKPOINT",
    "SELECT 1; DROP VIEW gate_decisions",
    "SELECT count(*) FROM gate_decisions; CREATE VIEW extra AS SELECT 1",
    # EXPLAIN ANALYZE executes what it explains: it must not smuggle a write past the check
    "EXPLAIN ANALYZE COPY (SELECT * FROM gate_decisions) TO '{out}/explained.csv'",
    "EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 1 AS x) TO '{out}/explained2.csv'",
    "EXPLAIN ANALYZE COPY (SELECT * REPLACE ('enable_maml' AS decision, '99999999999999999999-z' AS _batch) "
    "FROM read_parquet('{tables}/gate_decisions/*.parquet')) "
    "TO '{tables}/gate_decisions/b-99999999999999999999-z.parquet' (FORMAT parquet)",
]


def assert_refused(code: int, stdout: str, stderr: str, sql: str) -> None:
    assert code == 2, (sql, stdout, stderr)
    assert stdout == ""
    assert "Traceback" not in stderr
    assert stderr.startswith("error: ") and len(stderr.splitlines()) <= 3, stderr
    assert "refused" in stderr or "read-only" in stderr, stderr


@pytest.mark.parametrize("statement", REFUSED, ids=[s[:60] for s in REFUSED])
def test_modifying_statements_are_refused_and_the_store_is_intact(
    store_d: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str], statement: str
) -> None:
    """In process (the command's own entry point) for speed; the next test runs a few as real processes."""
    from maml_evidence.cli import main

    sql = statement.format(out=tmp_path, tables=store_d.evidence / "tables")
    before = store_state(store_d)
    code = main(["sql", sql, "--home", str(store_d.evidence)])
    captured = capsys.readouterr()
    assert_refused(code, captured.out, captured.err, sql)
    assert store_state(store_d) == before
    assert list(tmp_path.iterdir()) == []  # COPY / EXPORT / ATTACH created nothing


@pytest.mark.parametrize("index", [0, 6, 16, len(REFUSED) - 1])
def test_refusals_as_a_real_process(store_d: Home, tmp_path: Path, index: int) -> None:
    sql = REFUSED[index].format(out=tmp_path, tables=store_d.evidence / "tables")
    before = store_state(store_d)
    result = store_d.cli("sql", sql)
    assert_refused(result.returncode, result.stdout, result.stderr, sql)
    assert store_state(store_d) == before
    assert list(tmp_path.iterdir()) == []


def test_every_readme_sql_statement_runs_on_both_connections(target: Home) -> None:
    statements = readme_sql_statements()
    assert len(statements) >= len(worked_queries())
    for sql in statements:
        ok(target, sql, "--format", "json")


def test_readme_worked_queries(store_d: Home) -> None:
    assert len(worked_queries()) >= 4
    old, new = oracle(), oracle(POLICY_D)

    mix_rows = json.loads(ok(store_d, query_titled("decision mix over time"), "--format", "json"))
    totals: dict[str, int] = {}
    for row in mix_rows:
        assert row["week"]
        totals[row["decision"]] = totals.get(row["decision"], 0) + row["runs"]
    assert totals == {d: sum(1 for r in new.values() if r["decision"] == d) for d in totals}
    assert sum(totals.values()) == len(PAYLOADS)

    budget_query = query_titled("budget of $")
    assert "<= 5.0" in budget_query
    enabled_by = {}
    for budget in (3.0, 5.0, 10.0):
        sql = budget_query.replace("<= 5.0", f"<= {budget}")
        got = {r["spike_run_id"] for r in json.loads(ok(store_d, sql, "--format", "json"))}
        # the oracle: deferred for cost now, enabled if the budget per run were `budget`
        wider = {**POLICY_D, "max_extra_gpu_cost_usd_per_run": budget}
        expected = {
            run_id
            for run_id, payload in PAYLOADS.items()
            if new[run_id]["decision"] == "defer_maml_cost_too_high" and oracle_one(payload, wider) == "enable_maml"
        }
        assert got == expected, budget
        enabled_by[budget] = got
    assert enabled_by[3.0] < enabled_by[5.0]  # the query answers a real question here

    per_project = json.loads(ok(store_d, query_titled("per-project step reductions"), "--format", "json"))
    reductions: dict[str, list[float]] = {}
    for report in old.values():
        for row in report["comparison"]["per_project"]:
            reductions.setdefault(row["project"], []).append(row["step_reduction"])
    assert {r["project"] for r in per_project} == set(reductions)
    for row in per_project:
        values = reductions[row["project"]]
        assert row["runs"] == len(values)
        assert row["mean_reduction"] == pytest.approx(sum(values) / len(values), abs=1e-3)
        assert (row["worst"], row["best"]) == pytest.approx((min(values), max(values)), abs=1e-3)
    means = [row["mean_reduction"] for row in per_project]
    assert means == sorted(means, reverse=True)

    changed = json.loads(ok(store_d, query_titled("decision changed under the latest policy"), "--format", "json"))
    expected_flips = {
        run_id: (old[run_id]["decision"], new[run_id]["decision"])
        for run_id in PAYLOADS
        if old[run_id]["decision"] != new[run_id]["decision"]
    }
    assert expected_flips
    assert {r["spike_run_id"]: (r["from_decision"], r["to_decision"]) for r in changed} == expected_flips
    assert all(r["cause_check"] and r["cause_detail"] for r in changed)


def oracle_one(payload: dict, policy: dict) -> str:
    from maml_evidence import evaluate_feasibility

    return str(evaluate_feasibility(payload, policy=policy)["decision"])


def test_readme_latest_policy_query_after_returning_to_an_earlier_policy(home: Home) -> None:
    v0 = load_policy(home.policy_file).version
    home.write_policy(POLICY_B)
    reevaluate(home.store)
    home.policy_file.unlink()
    back = reevaluate(home.store)
    assert back.changes and back.policy.version == v0
    changed = json.loads(ok(home, query_titled("decision changed under the latest policy"), "--format", "json"))
    assert {r["spike_run_id"]: r["to_decision"] for r in changed} == {
        c.spike_run_id: c.to_decision for c in back.changes
    }


HOLDER = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
count = lambda: connection.execute(
    "SELECT count(*) FROM gate_decisions WHERE policy_version = ?", [sys.argv[2]]).fetchone()[0]
print("ready", count(), flush=True)
for line in sys.stdin:
    print("count", count(), flush=True)
"""
READER = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
print(connection.execute("SELECT count(*) FROM gate_decisions").fetchone()[0])
"""


def test_read_only_clients_share_the_catalog_while_the_store_is_written(home: Home) -> None:
    catalog = str(home.evidence / "evidence.duckdb")
    home.write_policy(POLICY_B)
    vb = load_policy(home.policy_file).version
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, catalog, vb],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().split() == ["ready", "0"]
        # a second process opens the same file read-only while the first holds it
        reader = subprocess.run([sys.executable, "-c", READER, catalog], capture_output=True, text=True, timeout=60)
        assert reader.returncode == 0, reader.stderr
        assert int(reader.stdout) == len(PAYLOADS)
        assert ok(home, "SELECT count(*) AS n FROM gate_decisions", "--format", "csv").split() == [
            "n",
            str(len(PAYLOADS)),
        ]
        # the store re-evaluates (writes) while the catalog is held open, and the open session sees the result
        assert reevaluate(home.store).evaluated == len(PAYLOADS)
        holder.stdin.write("again\n")
        holder.stdin.flush()
        assert holder.stdout.readline().split() == ["count", str(len(PAYLOADS))]
    finally:
        if holder.stdin:
            holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0, holder.stderr.read() if holder.stderr else ""


def documented_views() -> dict[str, list[tuple[str, str]]]:
    """README's "Views" section: view -> [(column, type)] in the order documented."""
    views: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in section("Views").splitlines():
        heading = re.fullmatch(r"### `(\w+)`", line.strip())
        if heading:
            current = heading.group(1)
            views[current] = []
            continue
        row = re.match(r"\| `(\w+)` \| (.+?) \| (.+?) \|$", line.strip())
        if row and current:
            assert row.group(3).strip(), f"README: {current}.{row.group(1)} has no meaning"
            views[current].append((row.group(1), row.group(2).strip()))
    return views


def test_readme_documents_every_view_and_column(store_d: Home) -> None:
    documented = documented_views()
    assert set(documented) == set(TABLES)
    for name, table in TABLES.items():
        assert documented[name] == [(c.name, str(c.type)) for c in table.columns], name
        actual = [r["column_name"] for r in store_d.rows(f"DESCRIBE {name}")]
        assert [column for column, _type in documented[name]] == actual, name


def test_sql_help_names_every_view(store_d: Home) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "maml-evidence"), "sql", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert all(name in text for name in TABLES), text


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT no_such_column FROM gate_decisions", "query failed"),
        ("SELEC 1", "does not parse"),
        ("", "no SQL statement"),
        ("   ;  ", "no SQL statement"),
    ],
)
def test_bad_queries_are_usage_errors(
    store_d: Home, capsys: pytest.CaptureFixture[str], sql: str, expected: str
) -> None:
    from maml_evidence.cli import main

    code = main(["sql", sql, "--home", str(store_d.evidence)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and expected in captured.err, captured.err
    assert "Traceback" not in captured.err
