"""All six sample payloads materialized in one run against a real Dagster instance and evidence home."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import dagster as dg
import pytest

from maml_evidence.definitions import defs
from maml_evidence_tests.pipeline.conftest import ENABLE_SAMPLE, SAMPLE_DECISIONS, Pipeline, open_pipeline
from maml_evidence_tests.samples import SPIKE_ASSET_NAMES

ASSETS = SPIKE_ASSET_NAMES
TABLE_ASSETS = ["spike_payload", "adaptation_metrics", "accuracy_metrics", "cost_metrics"]
# Dagster check -> (asset it judges, gate_decisions column it reports; None: the decision itself)
CHECKS = {
    "enough_projects": ("adaptation_metrics", "enough_projects"),
    "adaptation_triggered": ("adaptation_metrics", "adaptation_triggered"),
    "effectiveness_ok": ("adaptation_metrics", "effectiveness_ok"),
    "accuracy_ok": ("accuracy_metrics", "accuracy_ok"),
    "cost_ok": ("cost_metrics", "cost_ok"),
    # the optional guards: off under the samples' (default) policy, so no gate_decisions value to compare
    "project_accuracy_ok": ("accuracy_metrics", None),
    "evidence_strength": ("decision_report", None),
    "maml_gate": ("decision_report", None),
}
IDS = list(SAMPLE_DECISIONS)


class Materialized:
    def __init__(self, pipeline: Pipeline, result: dg.ExecuteInProcessResult) -> None:
        self.pipeline = pipeline
        self.result = result
        self.materializations = {
            (e.asset_key.to_user_string(), e.materialization.partition): e.materialization
            for e in result.get_asset_materialization_events()
        }
        self.evaluations = result.get_asset_check_evaluations()


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Materialized]:
    with pytest.MonkeyPatch.context() as mp, open_pipeline(tmp_path_factory.mktemp("six"), mp) as pipeline:
        pipeline.drop_samples()
        accepted = [r.spike_run_id for r in pipeline.intake() if r.needs_run]
        assert accepted == IDS  # added in this order, so IDS[0]...IDS[-1] is exactly these six
        result = pipeline.run(IDS)
        yield Materialized(pipeline, result)


def test_one_run_materializes_every_asset_of_every_partition(materialized: Materialized) -> None:
    assert materialized.result.success
    runs = materialized.pipeline.instance.get_runs()
    assert len(runs) == 1
    # every spike-run asset per partition, and the unpartitioned overview pictures once
    expected = [(a, i) for a in ASSETS for i in IDS] + [("evidence_overview", None)]
    assert sorted(materialized.materializations, key=str) == sorted(expected, key=str)
    assert len(materialized.result.get_asset_materialization_events()) == len(ASSETS) * len(IDS) + 1


def test_all_six_decisions_are_in_the_store(materialized: Materialized) -> None:
    decisions = {run_id: row["decision"] for run_id, row in materialized.pipeline.store.decisions().items()}
    assert decisions == SAMPLE_DECISIONS


def test_each_spike_run_has_its_report_interpretation_and_payload(materialized: Materialized) -> None:
    reports = materialized.pipeline.home / "reports"
    for run_id, decision in SAMPLE_DECISIONS.items():
        folder = reports / run_id
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        assert report["decision"] == decision
        assert report["provenance"]["spike_run_id"] == run_id
        assert {"sha256", "revision", "policy_version", "evaluated_at", "trigger"} <= set(report["provenance"])
        # the evidence section: how sure the decision is, and its paragraph in interpretation.md
        evidence = report["evidence"]
        assert evidence["projects"] == report["project_alignment"]["common_project_count"]
        assert evidence["grade"] in ("strong", "suggestive", "insufficient")
        interpretation = (folder / "interpretation.md").read_text(encoding="utf-8")
        assert decision in interpretation
        assert f"**How sure is this: {evidence['grade']}.**" in interpretation
        assert evidence["grade_reason"] in interpretation
        stored = json.loads((folder / "payload.json").read_text(encoding="utf-8"))
        assert stored["spike_run_id"] == run_id


def test_decision_report_metadata_says_why(materialized: Materialized) -> None:
    for run_id, decision in SAMPLE_DECISIONS.items():
        metadata = materialized.materializations[("decision_report", run_id)].metadata
        assert metadata["decision"].value == decision
        assert metadata["maml_recommended"].value is (decision == "enable_maml")
        preview = metadata["preview"]
        assert isinstance(preview, dg.MarkdownMetadataValue)
        assert decision in preview.value
        grade = metadata["evidence_grade"].value
        assert grade in ("strong", "suggestive", "insufficient")
        assert metadata["evidence"].value.startswith(f"**How sure is this: {grade}.**")


def test_table_assets_carry_row_counts_and_column_schema(materialized: Materialized) -> None:
    pipeline = materialized.pipeline
    for asset in TABLE_ASSETS:
        view = "spike_runs" if asset == "spike_payload" else asset
        stored = dict(pipeline.sql(f"SELECT spike_run_id, count(*) FROM {view} GROUP BY ALL"))
        for run_id in IDS:
            metadata = materialized.materializations[(asset, run_id)].metadata
            assert metadata["dagster/row_count"].value == stored[run_id], (asset, run_id)
            # the schema is the asset's (definition metadata, the UI's Columns), not repeated per partition
            assert "dagster/column_schema" not in metadata
        schema = defs.resolve_assets_def(asset).specs_by_key[dg.AssetKey(asset)].metadata["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema)
        assert [c.name for c in schema.columns] == [row[0] for row in pipeline.sql(f"DESCRIBE {view}")]
    checks = defs.resolve_assets_def("decision_report").specs_by_key[dg.AssetKey("decision_report")].metadata
    assert [c.name for c in checks["check_columns"].columns] == [row[0] for row in pipeline.sql("DESCRIBE gate_checks")]
    adaptation = materialized.materializations[("adaptation_metrics", ENABLE_SAMPLE)].metadata
    assert isinstance(adaptation["per_project"], dg.MarkdownMetadataValue)
    interpretation = materialized.materializations[("interpretation", ENABLE_SAMPLE)].metadata
    assert interpretation["headline"].value == "MAML is recommended now: enable it on top of LoRA."
    assert interpretation["path"].value.endswith(f"reports/{ENABLE_SAMPLE}/interpretation.md")


def test_exactly_one_evaluation_per_partition_per_check(materialized: Materialized) -> None:
    counts = Counter((e.check_name, e.partition) for e in materialized.evaluations)
    assert counts == Counter({(check, run_id): 1 for check in CHECKS for run_id in IDS})
    for evaluation in materialized.evaluations:
        assert evaluation.asset_key == dg.AssetKey(CHECKS[evaluation.check_name][0])


def test_maml_gate_passes_only_for_enable_and_deferrals_warn(materialized: Materialized) -> None:
    gate = {e.partition: e for e in materialized.evaluations if e.check_name == "maml_gate"}
    assert {run_id for run_id, e in gate.items() if e.passed} == {ENABLE_SAMPLE}
    decisions = materialized.pipeline.store.decisions()
    for run_id, evaluation in gate.items():
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["decision"].value == SAMPLE_DECISIONS[run_id]
        failed = decisions[run_id]["failed_check"]
        assert evaluation.metadata["failed_check"].value == (failed or "none")
        if run_id != ENABLE_SAMPLE:
            assert failed, run_id


def test_optional_guards_left_off_pass_with_a_note_and_evidence_strength_warns_unless_strong(
    materialized: Materialized,
) -> None:
    grades = dict(materialized.pipeline.sql("SELECT spike_run_id, grade FROM evidence_strength"))
    assert set(grades) == set(IDS)
    for evaluation in materialized.evaluations:
        metadata = {key: value.value for key, value in evaluation.metadata.items()}
        if evaluation.check_name == "project_accuracy_ok":
            assert evaluation.passed is True
            assert metadata["note"] == "not checked: max_project_accuracy_regression_pp is not set (policy or payload)"
        elif evaluation.check_name == "evidence_strength":
            assert evaluation.severity == dg.AssetCheckSeverity.WARN
            assert evaluation.passed is (grades[evaluation.partition] == "strong"), evaluation.partition
            assert metadata["evidence_grade"] == grades[evaluation.partition]
            assert metadata["note"] == "not required (require_strong_evidence is off)"
            assert metadata["evidence_grade_reason"].split(":")[0].lower() == grades[evaluation.partition]
    report = materialized.materializations[("decision_report", ENABLE_SAMPLE)].metadata
    evidence = materialized.pipeline.store.read_report(ENABLE_SAMPLE)["evidence"]
    assert report["evidence_grade"].value == evidence["grade"]
    assert report["evidence_step_reduction_ci95_low"].value == evidence["step_reduction"]["ci95_low"]
    assert report["evidence_step_reduction_ci95_high"].value == evidence["step_reduction"]["ci95_high"]
    assert report["evidence_accuracy_verdict"].value == evidence["accuracy"]["verdict"]


def test_core_checks_agree_with_the_store_and_carry_observed_and_threshold(materialized: Materialized) -> None:
    decisions = materialized.pipeline.store.decisions()
    for evaluation in materialized.evaluations:
        column = CHECKS[evaluation.check_name][1]
        if column is None:  # the decision itself, or an optional guard the policy leaves off
            continue
        assert evaluation.passed is decisions[evaluation.partition][column], (
            evaluation.check_name,
            evaluation.partition,
        )
        keys = list(evaluation.metadata)
        assert any(k.startswith("observed") for k in keys), keys
        assert any(k.startswith("threshold") for k in keys), keys
        assert evaluation.metadata["decision"].value == SAMPLE_DECISIONS[evaluation.partition]


def test_instance_records_a_resolved_status_per_partition(materialized: Materialized) -> None:
    """Guards the Dagster-internal path behind the UI's per-partition check status (see FACTS.md)."""
    instance = materialized.pipeline.instance
    for check, (asset, _column) in CHECKS.items():
        key = dg.AssetCheckKey(dg.AssetKey(asset), check)
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
        by_partition = Counter(r.partition for r in records)
        assert by_partition == Counter(IDS), (check, by_partition)
        latest = {
            r.partition_key: r.storage_id
            for r in instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=IDS), limit=100
            ).records
        }
        for record in records:
            assert record.status.value in ("SUCCEEDED", "FAILED")
            assert record.evaluation is not None
            target = record.evaluation.target_materialization_data
            assert target is not None, (check, record.partition)
            assert target.storage_id == latest[record.partition]
            if check == "maml_gate":
                expected = record.partition == ENABLE_SAMPLE
                assert (record.status.value == "SUCCEEDED") is expected
