"""A picture that cannot be drawn is logged and left out: the decision, its report and the run stand."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import pytest

import maml_evidence.pictures as pictures
from maml_evidence import drafts
from maml_evidence.pictures import DECISION_MIX_FILE, EFFECT_SIZES_FILE, EFFECTS_FILE, OVERVIEW_DIR, OVERVIEW_SIZE
from maml_evidence_tests.pictures.conftest import assert_picture
from maml_evidence_tests.pipeline.conftest import ENABLE_SAMPLE, Pipeline, open_pipeline, sample


def broken(*_: object) -> bytes:
    raise RuntimeError("the plotting library is having a bad day")


def no_worker() -> None:
    raise OSError("no worker process today")


@pytest.fixture
def pipeline(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:  # noqa: ANN001 - pytest's tmp_path
    with open_pipeline(tmp_path, monkeypatch) as opened:
        yield opened


def test_failed_pictures_leave_the_decision_and_report_intact(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = pipeline.home / "reports" / ENABLE_SAMPLE
    folder.mkdir(parents=True)
    (folder / EFFECTS_FILE).write_bytes(b"a chart of an earlier decision")
    monkeypatch.setattr(pictures, "render_effects", broken)
    monkeypatch.setattr(pictures, "render_decision_mix", broken)
    # no chart worker either: it would draw with the real library
    drafts._close_workers()  # noqa: SLF001
    monkeypatch.setattr(drafts, "_Worker", no_worker)

    with caplog.at_level("WARNING", logger="maml_evidence"):
        [run_id] = pipeline.ingest({ENABLE_SAMPLE: sample()})  # raises if the run failed

    assert pipeline.store.decisions()[run_id]["decision"] == "enable_maml"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert report["decision"] == "enable_maml"
    assert pipeline.store.incomplete([run_id]) == []  # complete: nothing for the next ingest to redo
    assert not (folder / EFFECTS_FILE).exists()  # no stale chart beside the new report
    assert EFFECTS_FILE not in (folder / "interpretation.md").read_text(encoding="utf-8")  # nor a link to none
    assert "effects chart of" in caplog.text and "bad day" in caplog.text

    instance = pipeline.instance
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("decision_report"), asset_partitions=[run_id]), limit=1
    ).records
    [overview] = instance.fetch_materializations(dg.AssetKey("evidence_overview"), limit=1).records
    assert "not drawn" in record.asset_materialization.metadata["effects"].value  # type: ignore[union-attr,operator]
    # one overview picture failed, the other was drawn
    metadata = overview.asset_materialization.metadata  # type: ignore[union-attr]
    assert "bad day" in metadata["decision_mix_error"].value
    assert not (pipeline.home / OVERVIEW_DIR / DECISION_MIX_FILE).exists()
    assert_picture(pipeline.home / OVERVIEW_DIR / EFFECT_SIZES_FILE, OVERVIEW_SIZE, min_ink=0.01)  # one run


def test_an_unreadable_store_does_not_fail_the_overview(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    from maml_evidence.defs.overview import evidence_overview

    monkeypatch.setattr("maml_evidence.defs.overview.write_overview", broken)
    result = dg.materialize([evidence_overview], instance=pipeline.instance, resources=pipeline.resources)
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert "bad day" in event.materialization.metadata["not_drawn"].value  # type: ignore[operator]
