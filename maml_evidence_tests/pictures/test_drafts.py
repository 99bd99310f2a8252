"""Charts drawn ahead in a worker process: the same picture as one drawn in-line, used only for its own report.

A run's first step hands its charts to a worker (``drafts.draw_ahead``) and the step that commits the decisions
takes them (``pictures.write_effects``); whatever goes wrong with a worker only means drawing in-line.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import maml_evidence.pictures as pictures
from maml_evidence import drafts
from maml_evidence.drafts import draft_path, draw_ahead, report_digest
from maml_evidence.pictures import EFFECTS_FILE, render_effects, write_effects
from maml_evidence_tests.pictures.conftest import stored_report
from maml_evidence_tests.pipeline.conftest import Pipeline, open_pipeline, sample
from maml_evidence_tests.samples import SAMPLE_DECISIONS, SAMPLE_INBOX

ENABLE = "2026-10-06-support-bots-enable"
PENALTY = "2026-10-27-medical-coding-accuracy-penalty"


def sample_report(name: str) -> dict:
    return stored_report(json.loads((SAMPLE_INBOX / f"{name}.json").read_text(encoding="utf-8")), evaluated_at="x")


@pytest.fixture
def in_line(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The spike runs whose chart this process drew itself (the worker's drawing is not counted)."""
    drawn: list[str] = []

    def counting(report: dict) -> bytes:
        drawn.append(str(report.get("spike_run_id")))
        return render_effects(report)

    monkeypatch.setattr(pictures, "render_effects", counting)
    return drawn


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def wait_until_sent(report: dict, target: Path) -> drafts._Job:
    """The chart's job once a worker has started it (a job still queued would be taken back, drawn in-line)."""
    job = drafts._jobs[(str(target), report_digest(report))]  # noqa: SLF001
    deadline = time.monotonic() + 60
    while not job.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.sent
    return job


def test_a_chart_no_worker_has_started_is_drawn_by_the_caller(
    tmp_path: Path, in_line: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committing step never waits behind a queue: what no worker has picked up, it draws itself."""
    drafts._close_workers()  # noqa: SLF001

    def no_worker() -> None:
        raise OSError("no process today")

    monkeypatch.setattr(drafts, "_Worker", no_worker)
    report, target = sample_report(ENABLE), tmp_path / EFFECTS_FILE
    assert draw_ahead([(report, target)]) == 1  # queued; nobody to draw it

    assert write_effects(report, tmp_path) == target
    assert in_line == [str(report.get("spike_run_id"))]
    assert target.read_bytes() == render_effects(report)
    assert drafts.pending(target) == 0 and files(tmp_path) == [EFFECTS_FILE]


def test_a_chart_drawn_ahead_is_the_one_drawn_in_line(tmp_path: Path, in_line: list[str]) -> None:
    report = sample_report(ENABLE)
    target = tmp_path / EFFECTS_FILE
    assert draw_ahead([(report, target)]) == 1
    assert draw_ahead([(report, target)]) == 0  # asked twice, drawn once
    wait_until_sent(report, target)  # else the committing step would take it back and draw it itself

    # the committed report differs only in when and why it was recorded: the draft stands for it
    committed = {**report, "provenance": {**report["provenance"], "evaluated_at": "later", "trigger": "ingest"}}
    assert report_digest(committed) == report_digest(report)
    assert write_effects(committed, tmp_path) == target

    assert in_line == []
    assert target.read_bytes() == render_effects(committed)
    assert files(tmp_path) == [EFFECTS_FILE]  # the draft was moved into place, nothing left beside it
    assert drafts.pending(target) == 0


def test_a_draft_of_another_decision_is_never_used(tmp_path: Path, in_line: list[str]) -> None:
    first = sample_report(ENABLE)
    changed = json.loads(json.dumps(first))
    changed["decision"] = "defer_maml_low_effect"  # e.g. the policy changed between the two steps
    assert report_digest(changed) != report_digest(first)
    target = tmp_path / EFFECTS_FILE
    draw_ahead([(first, target)])
    job = wait_until_sent(first, target)  # a worker has started it (else it is simply dropped)

    write_effects(changed, tmp_path)

    assert in_line == [str(changed.get("spike_run_id"))]
    assert target.read_bytes() == render_effects(changed)
    job.future.exception(timeout=60)  # the worker finished the superseded draft...
    deadline = time.monotonic() + 10
    while len(files(tmp_path)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert files(tmp_path) == [EFFECTS_FILE]  # ...which was then removed, unused


def test_a_killed_worker_only_means_drawing_in_line(tmp_path: Path, in_line: list[str]) -> None:
    report = sample_report(PENALTY)
    target = tmp_path / EFFECTS_FILE
    assert draw_ahead([(report, target)]) == 1
    [worker] = [w for w in drafts._workers if w.alive]  # noqa: SLF001
    os.kill(worker.process.pid, signal.SIGKILL)  # before it could even import the plotting library
    worker.process.wait(timeout=30)

    assert write_effects(report, tmp_path) == target  # not left waiting for an answer that never comes

    assert in_line == [str(report.get("spike_run_id"))]
    assert target.read_bytes() == render_effects(report)
    assert files(tmp_path) == [EFFECTS_FILE]
    # the next charts get a new worker
    other = tmp_path / "other"
    again = sample_report(ENABLE)
    assert draw_ahead([(again, other / EFFECTS_FILE)]) == 1
    write_effects(again, other)
    assert in_line == [str(report.get("spike_run_id"))]
    assert (other / EFFECTS_FILE).read_bytes() == render_effects(again)


def test_leftovers_of_a_dead_run_are_removed_not_used(tmp_path: Path, in_line: list[str]) -> None:
    report = sample_report(ENABLE)
    target = tmp_path / EFFECTS_FILE
    # a draft of this very report and a half-written one, left by a run that was killed: not this process's
    draft = draft_path(target, report_digest(report))
    draft.write_bytes(b"not a picture")
    partial = tmp_path / f".{draft.name}.abc123.partial"
    partial.write_bytes(b"half")
    (tmp_path / "report.json").write_text("{}", encoding="utf-8")

    write_effects(report, tmp_path)

    assert in_line == [str(report.get("spike_run_id"))]
    assert target.read_bytes() == render_effects(report)
    assert files(tmp_path) == [EFFECTS_FILE, "report.json"]


def test_a_drawing_error_in_the_worker_is_retried_in_line(tmp_path: Path, in_line: list[str]) -> None:
    report = sample_report(ENABLE)
    broken = {**report, "comparison": {"per_project": [{"project": "p"}]}}  # a chart cannot be drawn from this
    target = tmp_path / EFFECTS_FILE
    draw_ahead([(broken, target)])
    assert write_effects(broken, tmp_path) is None  # drawn again here, failed again: logged, no chart
    assert len(in_line) == 1
    assert files(tmp_path) == []


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    with open_pipeline(tmp_path, monkeypatch) as opened:
        yield opened


def test_ingest_draws_the_charts_ahead(pipeline: Pipeline, in_line: list[str]) -> None:
    names = sorted(SAMPLE_DECISIONS)
    run_ids = pipeline.ingest({name: sample(name) for name in names})

    # The worker takes the first chart the moment it starts, so at least that one is its own; the committing step
    # draws only those no worker had started by then (on this machine usually none).
    assert len(in_line) < len(run_ids)
    for run_id in run_ids:
        folder = pipeline.home / "reports" / run_id
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        assert (folder / EFFECTS_FILE).read_bytes() == render_effects(report)
        assert sorted(p.name for p in folder.glob(".*")) == []
