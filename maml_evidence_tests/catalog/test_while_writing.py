"""The 1.x CLI reads every view, error-free, while an ingest and compactions run in other processes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from maml_evidence.store.schema import TABLES
from maml_evidence_tests.catalog.conftest import Cli, worked_queries
from maml_evidence_tests.generator import DECISIONS, generate_payload
from maml_evidence_tests.policy.conftest import Home
from maml_evidence_tests.samples import BIN

# Compacts every table with more than one live file until the stop file appears, then once more; prints the count.
COMPACTOR = """
import sys
from pathlib import Path
from maml_evidence.store.home import EvidenceHome
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import ParquetTables

tables, stop, done = ParquetTables(EvidenceHome(sys.argv[1])), Path(sys.argv[2]), 0
while True:
    last = stop.exists()
    done += sum(tables.compact(name) for name in TABLES if len(tables.live_files(name)) > 1)
    if last:
        break
print(done)
"""


def checks() -> str:
    """Every view in full, the README's worked queries, and no spike run twice in a current view."""
    statements = [f"SELECT count(*) FROM (FROM {name})" for name in TABLES]
    statements += [
        f"SELECT CASE WHEN count(*) > count(DISTINCT {t.key}) THEN error('{name}: a {t.key} twice') END FROM {name}"
        for name, t in TABLES.items()
        if t.kind == "current" and name in ("gate_decisions", "spike_runs", "evidence_strength", "decision_commits")
    ]
    return ";\n".join([*statements, *worked_queries()])


def test_queries_never_fail_while_an_ingest_and_compactions_run(
    evaluated_twice: Home, cli: Cli, tmp_path: Path
) -> None:
    home = evaluated_twice
    before = len(home.decisions())
    rng = random.Random(15)
    files = []
    for index in range(6):
        run_id = f"while-{index}"
        path = tmp_path / "new" / f"{run_id}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(generate_payload(rng, run_id, DECISIONS[index % len(DECISIONS)])), encoding="utf-8")
        files.append(str(path))
    stop = tmp_path / "stop"
    compactor = subprocess.Popen(
        [sys.executable, "-c", COMPACTOR, str(home.evidence), str(stop)], stdout=subprocess.PIPE, text=True
    )
    ingest = subprocess.Popen(
        [str(BIN / "maml-evidence"), "ingest", *files, "--home", str(home.evidence)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=home.env(),
    )
    sql = checks()
    failures, rounds = [], 0
    try:
        while compactor.poll() is None:
            if ingest.poll() is not None:
                stop.touch()
            done = cli.run(home.store.home.catalog, sql)
            rounds += 1
            if done.returncode != 0 or done.stderr:
                failures.append(done.stderr.strip())
    finally:
        stop.touch()
        ingest_out, ingest_err = ingest.communicate(timeout=120)
        compactions = int(compactor.communicate(timeout=120)[0])
    assert ingest.returncode == 0, ingest_out + ingest_err
    assert failures == [], f"{len(failures)} of {rounds} rounds failed: {failures[:3]}"
    assert rounds > 0 and compactions > 0
    assert len(home.decisions()) == before + len(files)
    final = cli.run(home.store.home.catalog, sql)
    assert final.returncode == 0 and not final.stderr, final.stderr
    assert cli.rows(home.store.home.catalog, "SELECT count(*) FROM gate_decisions") == [[str(before + len(files))]]
