"""What `maml-evidence ingest` prints for spike runs it could not decide itself: pending elsewhere, or failed."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from maml_evidence import cli, headless
from maml_evidence.store.intake import ACCEPTED, UNCHANGED, IntakeResult
from maml_evidence_tests.faults.hostile import SAMPLE_INBOX, lines_by_subject
from maml_evidence_tests.pipeline.conftest import Pipeline, open_pipeline
from maml_evidence_tests.samples import SAMPLE_DECISIONS

pytestmark = pytest.mark.filterwarnings("ignore:Starting in dagster 1.11, get_sensor_def:UserWarning")
IDS = list(SAMPLE_DECISIONS)[:2]


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path, monkeypatch) as opened:
        yield opened


def test_spike_runs_the_sensor_took_in_are_waited_for_then_named_as_pending(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.inbox.mkdir(parents=True, exist_ok=True)
    for run_id in IDS:
        shutil.copy(SAMPLE_INBOX / f"{run_id}.json", pipeline.inbox)
    result = pipeline.tick()  # the sensor accepts them; its run is requested but (no daemon here) never starts
    pipeline.instance.add_dynamic_partitions("spike_runs", IDS)
    assert result.run_requests

    notes: list[str] = []
    report = headless.ingest(pipeline.store, wait_seconds=1, notify=notes.append)
    assert sorted(report.pending) == sorted(IDS) and not report.runs
    assert all("taken in by the inbox sensor" in reason for reason in report.pending.values())
    assert len(notes) == 1 and "waiting up to 1 s for 2 spike run(s)" in notes[0]

    monkeypatch.setattr(headless, "ingest", functools.partial(headless.ingest, wait_seconds=1))
    assert cli.main(["ingest", "--home", str(pipeline.home)]) == 1  # not done: say so in the exit code
    out = capsys.readouterr()
    lines = lines_by_subject(out.out)
    assert sorted(lines) == sorted(IDS)
    for run_id, line in lines.items():
        assert line.startswith("pending ") and f"spike_run_id = '{run_id}'" in line, line
    assert "note: waiting up to 1 s" in out.err


def test_failed_spike_runs_get_one_line_each_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The Dagster run fills IngestReport.failed; here the report is given, to pin down how it is printed.
    results = [
        IntakeResult(Path("a.json"), ACCEPTED, "run-a", message="revision 1", needs_run=True),
        IntakeResult(Path("b.json"), UNCHANGED, "run-b", message="same content as revision 1"),
    ]
    report = headless.IngestReport(
        results, [], {"run-b": {"decision": "enable_maml"}}, failed={"run-a": "cost_metrics: disk full"}
    )
    monkeypatch.setattr(headless, "ingest", lambda *_args, **_kwargs: report)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert cli.main(["ingest", "--home", str(tmp_path / "home")]) == 1
    lines = lines_by_subject(capsys.readouterr().out)
    assert lines == {
        "run-a": f"{'failed':<28} run-a  (cost_metrics: disk full)",
        "run-b": f"{'enable_maml':<28} run-b  (unchanged: same content as revision 1)",
    }
