"""The pictures the pipeline keeps: effects.png per spike run and evidence_overview, through ingest and re-evaluation.

Reads the session's ingested template home (the policy suite's sixteen spike runs, ingested once through the
real ``maml-evidence ingest`` path); the re-evaluation test works on its own copy.
"""

from __future__ import annotations

import json

import dagster as dg

from maml_evidence.headless import run_reevaluation
from maml_evidence.pictures import (
    DECISION_MIX_FILE,
    EFFECT_SIZES_FILE,
    EFFECTS_FILE,
    OVERVIEW_DIR,
    OVERVIEW_SIZE,
    effects_size,
)
from maml_evidence_tests.pictures.conftest import assert_picture, embedded_png
from maml_evidence_tests.policy.conftest import PAYLOADS, POLICY_B, Home
from maml_evidence_tests.policy.conftest import home as home  # noqa: F401 - the fixture: a private copy of the template

LINK = f"![Per-project effects]({EFFECTS_FILE})"


def latest(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> list[dg.AssetMaterialization]:
    """The asset's materializations (of one partition), newest first."""
    key = dg.AssetKey(asset)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]) if partition else key, limit=10
    ).records
    return [r.asset_materialization for r in records if r.asset_materialization is not None]


def test_every_ingested_spike_run_has_its_chart_linked_from_its_interpretation(template: Home) -> None:
    for run_id in PAYLOADS:
        folder = template.evidence / "reports" / run_id
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        assert_picture(folder / EFFECTS_FILE, effects_size(report))
        assert LINK in (folder / "interpretation.md").read_text(encoding="utf-8")


def test_decision_report_shows_the_chart_in_each_partitions_metadata(template: Home) -> None:
    with template.instance() as instance:
        for run_id in PAYLOADS:
            [materialization, *_] = latest(instance, "decision_report", run_id)
            shown = embedded_png(materialization.metadata["effects"].value)  # type: ignore[arg-type]
            assert shown == (template.evidence / "reports" / run_id / EFFECTS_FILE).read_bytes()


def test_ingest_materializes_the_overview_with_its_pictures(template: Home) -> None:
    folder = template.evidence / OVERVIEW_DIR
    for name in (DECISION_MIX_FILE, EFFECT_SIZES_FILE):
        assert_picture(folder / name, OVERVIEW_SIZE)
    with template.instance() as instance:
        [materialization, *_] = latest(instance, "evidence_overview")
    metadata = materialization.metadata
    assert metadata["spike_runs"].value == len(PAYLOADS)
    assert sum(metadata["decision_mix_now"].value.values()) == len(PAYLOADS)  # type: ignore[union-attr]
    for name in (DECISION_MIX_FILE, EFFECT_SIZES_FILE):
        key = name.removesuffix(".png")
        assert embedded_png(metadata[key].value) == (folder / name).read_bytes()  # type: ignore[arg-type]
        assert metadata[f"{key}_path"].value == str(folder / name)


def test_reevaluation_refreshes_the_overview_and_the_charts_of_flipped_runs(home: Home) -> None:
    reports = home.evidence / "reports"
    charts = {run_id: (reports / run_id / EFFECTS_FILE).stat().st_mtime_ns for run_id in PAYLOADS}
    mix = (home.evidence / OVERVIEW_DIR / DECISION_MIX_FILE).read_bytes()
    with home.instance() as instance:
        before = len(latest(instance, "evidence_overview"))

    home.write_policy(POLICY_B)
    outcome = run_reevaluation(home.store)
    assert outcome.success, outcome.error
    changed = {c.spike_run_id for c in outcome.changes}
    assert changed, "the scenario should flip some decisions"

    with home.instance() as instance:
        overview = latest(instance, "evidence_overview")
    assert len(overview) == before + 1  # the re-evaluation run materialized it
    assert (home.evidence / OVERVIEW_DIR / DECISION_MIX_FILE).read_bytes() != mix  # the mix moved
    assert overview[0].metadata["decision_mix_now"].value == outcome.metadata["decision_mix"]
    for run_id in changed:  # rewritten with its new report (and its new thresholds)
        assert (reports / run_id / EFFECTS_FILE).stat().st_mtime_ns > charts[run_id]
        report = json.loads((reports / run_id / "report.json").read_text(encoding="utf-8"))
        assert_picture(reports / run_id / EFFECTS_FILE, effects_size(report))
        assert LINK in (reports / run_id / "interpretation.md").read_text(encoding="utf-8")
