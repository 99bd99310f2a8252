"""Issue 9 for the inbox sensor: the same hostile inbox, listed and judged exactly as `maml-evidence ingest` does."""

from __future__ import annotations

import faulthandler
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData

from maml_evidence.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from maml_evidence.store import EvidenceStore
from maml_evidence_tests.faults.hostile import (
    PASSWD_LINE,
    inbox_names,
    make_hostile_inbox,
    maml_evidence,
    nothing_copied_from,
    quarantine_layout,
)
from maml_evidence_tests.pipeline.conftest import Pipeline, open_pipeline

pytestmark = pytest.mark.filterwarnings("ignore:Starting in dagster 1.11, get_sensor_def:UserWarning")
TICK_LIMIT_SECONDS = 60


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path / "sensor", monkeypatch) as opened:
        yield opened


def tick(pipeline: Pipeline, cursor: str | None = None) -> SensorExecutionData:
    """One tick, as the daemon runs it (partition requests applied); a tick that hangs kills the test run."""
    faulthandler.dump_traceback_later(TICK_LIMIT_SECONDS, exit=True)
    try:
        result = pipeline.tick(cursor)
    finally:
        faulthandler.cancel_dump_traceback_later()
    for request in result.dynamic_partitions_requests or []:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        pipeline.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def covered(pipeline: Pipeline, result: SensorExecutionData) -> set[str]:
    keys = pipeline.partitions()
    out: set[str] = set()
    for request in result.run_requests or []:
        start, end = request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]
        out |= set(keys[keys.index(start) : keys.index(end) + 1])
    return out


def reported(home: Path) -> list[str]:
    state = home / ".locks" / "inbox-reported.json"
    return sorted(json.loads(state.read_text(encoding="utf-8"))["entries"]) if state.exists() else []


def test_the_sensor_takes_the_hostile_inbox_in_as_the_command_does(pipeline: Pipeline, tmp_path: Path) -> None:
    hostile = make_hostile_inbox(pipeline.inbox)
    first = tick(pipeline)

    # the good files after the hostile entries become partitions, requested in one run
    assert sorted(pipeline.partitions()) == sorted(hostile.accepted)
    assert covered(pipeline, first) == set(hostile.accepted)
    assert len(first.run_requests or []) == 1
    revision = EvidenceStore(pipeline.home).registry.current("0-non-utf8-name")
    assert revision is not None and revision.source_file.endswith("/0-good\\xfe.json")
    assert nothing_copied_from(pipeline.home, PASSWD_LINE) == []

    # the command, on an identical inbox, leaves the same inbox, quarantine and reported entries behind
    cli_root = tmp_path / "cli"
    make_hostile_inbox(cli_root / "home" / "inbox")
    assert maml_evidence(cli_root, "ingest").returncode == 1
    assert inbox_names(pipeline.home) == inbox_names(cli_root / "home")
    assert quarantine_layout(pipeline.home) == quarantine_layout(cli_root / "home")
    assert reported(pipeline.home) == reported(cli_root / "home") == ["0-notes.txt"]
    assert sorted(EvidenceStore(cli_root / "home").registry.known_ids()) == sorted(hostile.accepted)


def test_the_sensor_reports_each_rejected_entry_once(pipeline: Pipeline) -> None:
    make_hostile_inbox(pipeline.inbox)
    first = tick(pipeline)
    quarantined = quarantine_layout(pipeline.home)

    again = tick(pipeline, first.cursor)
    assert not again.run_requests and again.skip_message
    assert json.loads(again.cursor or "{}") == json.loads(first.cursor or "{}")

    # a sensor that lost its cursor looks at every entry again: no new quarantine, no new run, the .txt is
    # counted as already reported
    fresh = tick(pipeline, None)
    assert not fresh.run_requests
    assert "0-notes.txt=skipped" in (fresh.skip_message or "")
    assert quarantine_layout(pipeline.home) == quarantined
    assert reported(pipeline.home) == ["0-notes.txt"]
