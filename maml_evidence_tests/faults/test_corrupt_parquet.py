"""A damaged Parquet file: named in warnings and by doctor, every other run stays queryable, repair rebuilds."""

import json
from pathlib import Path

from maml_evidence.store import EvidenceStore
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence_tests.faults.conftest import cli, copy_samples


def _ingest(home: Path) -> list[str]:
    ids = copy_samples(home / "inbox")
    result = cli("ingest", home=home)
    assert result.returncode == 0, result.stderr
    return ids


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_damaged_table_file_is_named_skipped_and_repaired(home: Path) -> None:
    ids = _ingest(home)
    damaged = next((home / "tables" / "gate_decisions").glob("b-*.parquet"))
    _truncate(damaged)

    # other tables stay queryable, untouched
    other = cli("sql", "SELECT count(DISTINCT spike_run_id) AS n FROM cost_metrics", "--format", "json", home=home)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout) == [{"n": len(ids)}]

    # the damaged table: rows of that file are skipped with a warning naming the file and its spike runs
    hit = cli("sql", "SELECT count(*) AS n FROM gate_decisions", "--format", "json", home=home)
    assert hit.returncode == 0, hit.stderr
    assert json.loads(hit.stdout) == [{"n": 0}]
    assert str(damaged) in hit.stderr and ids[0] in hit.stderr and "doctor --repair" in hit.stderr
    assert "Traceback" not in hit.stderr

    # re-evaluation skips it with a warning instead of failing
    store = EvidenceStore(home)
    (home / "thresholds.toml").write_text("max_training_overhead_pct = 95\n")
    result = reevaluate(store, refresh_reports=False)
    assert result.damaged and str(damaged) in result.damaged[0]

    # doctor finds it (exit 1), repair sets it aside and rebuilds every affected run
    found = cli("doctor", home=home)
    assert found.returncode == 1
    assert str(damaged) in found.stdout and "unreadable gate_decisions file" in found.stdout
    repaired = cli("doctor", "--repair", home=home)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert (home / "damaged" / "gate_decisions" / damaged.name).exists()
    after = cli("sql", "SELECT spike_run_id FROM gate_decisions ORDER BY 1", "--format", "json", home=home)
    assert [row["spike_run_id"] for row in json.loads(after.stdout)] == ids
    assert "warning" not in after.stderr
    assert cli("doctor", home=home).returncode == 0


def test_garbage_written_over_a_file_is_reported_not_crashing(home: Path) -> None:
    _ingest(home)
    target = next((home / "tables" / "adaptation_metrics").glob("b-*.parquet"))
    target.write_bytes(b"not a parquet file at all")
    result = cli("sql", "SELECT count(*) FROM adaptation_metrics", home=home)
    assert result.returncode == 0
    assert target.name in result.stderr and "Traceback" not in result.stderr
    assert cli("doctor", home=home).returncode == 1
