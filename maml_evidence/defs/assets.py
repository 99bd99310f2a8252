"""The spike-run assets. Each one asks the evidence store to evaluate its partitions and record one table.

Every asset is partitioned by spike run with a single-run backfill policy, so a backfill or a sensor batch
of any size is one Dagster run.
"""

from typing import Any

import dagster as dg

from maml_evidence.defs.metadata import (
    add_partition_metadata,
    evidence_metadata,
    markdown_table,
    rounded,
    schema_metadata,
)
from maml_evidence.defs.mlflow_links import mlflow_run_metadata
from maml_evidence.defs.partitions import spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.drafts import draw_ahead
from maml_evidence.gate import render_interpretation
from maml_evidence.pictures import EFFECTS_FILE, markdown_image
from maml_evidence.store import EvidenceStore
from maml_evidence.store.evidence import Evaluation
from maml_evidence.strength import render_evidence

GROUP = "spike_evidence"
OWNERS = ["team:ml-platform"]
PARTITIONED: dict[str, Any] = {
    "partitions_def": spike_runs,
    "backfill_policy": dg.BackfillPolicy.single_run(),
    "group_name": GROUP,
    "owners": OWNERS,
}


@dg.asset(kinds={"json", "parquet"}, tags={"layer": "ingest"}, metadata=schema_metadata("spike_runs"), **PARTITIONED)
def spike_payload(context: dg.AssetExecutionContext, evidence: EvidenceStoreResource) -> dg.MaterializeResult:
    """The validated spike payload of each spike run, as accepted into the evidence store (table spike_runs)."""
    store = evidence.store()
    evaluations = evaluate(context, store)
    path = store.write_spike_runs(evaluations)
    # decision_report embeds each spike run's chart: start drawing them on an idle core while Dagster records
    draw_ahead((e.report, store.home.report_dir(e.spike_run_id) / EFFECTS_FILE) for e in evaluations)
    by_partition: dict[str, dict[str, object]] = {}
    for e in evaluations:
        by_partition[e.spike_run_id] = {
            "sha256": e.revision.sha256,
            "revision": e.revision.revision,
            "source_file": dg.MetadataValue.path(e.revision.source_file),
            "accepted_at": e.revision.accepted_at,
            "stored_payload": dg.MetadataValue.path(str(store.home.report_dir(e.spike_run_id) / "payload.json")),
            "score_scale": e.payload.score_scale,
            "baseline_projects": len(e.payload.baseline.projects),
            "candidate_projects": len(e.payload.candidate.projects),
            "common_projects": len(e.metrics.common_projects),
            "unmatched_projects": ", ".join(e.metrics.baseline_only + e.metrics.candidate_only) or "none",
            "dagster/row_count": 1,
        }
    add_partition_metadata(context, by_partition)
    return dg.MaterializeResult(metadata={"batch_file": dg.MetadataValue.path(str(path))})


@dg.asset(
    deps=[spike_payload],
    kinds={"duckdb", "parquet"},
    tags={"layer": "metrics"},
    metadata=schema_metadata("adaptation_metrics", summary_columns="adaptation_summary"),
    **PARTITIONED,
)
def adaptation_metrics(context: dg.AssetExecutionContext, evidence: EvidenceStoreResource) -> dg.MaterializeResult:
    """Steps to target per project in both arms, the reduction, and the run means and maxima."""
    store = evidence.store()
    evaluations = evaluate(context, store)
    detail, summary = store.write_adaptation(evaluations)
    by_partition: dict[str, dict[str, object]] = {}
    for e in evaluations:
        i, cand = e.metrics.inputs, e.metrics.candidate
        preview = markdown_table(
            ["project", "LoRA-only steps", "LoRA+MAML steps", "reduction"],
            [
                [r.project, r.baseline_steps_to_target, r.candidate_steps_to_target, r.step_reduction]
                for r in e.metrics.per_project
            ],
        )
        by_partition[e.spike_run_id] = {
            "dagster/row_count": len(e.metrics.per_project),
            "baseline_mean_steps": rounded(i.baseline_mean_steps),
            "baseline_max_steps": rounded(i.baseline_max_steps),
            "candidate_mean_steps": rounded(cand.mean_steps_to_target),
            "candidate_max_steps": rounded(cand.max_steps_to_target),
            "mean_step_reduction": rounded(i.mean_step_reduction),
            "relative_step_reduction": rounded(i.relative_step_reduction),
            "per_project": dg.MetadataValue.md(preview),
        }
    add_partition_metadata(context, by_partition)
    return dg.MaterializeResult(metadata={"batch_files": dg.MetadataValue.json([str(detail), str(summary)])})


@dg.asset(
    deps=[spike_payload],
    kinds={"duckdb", "parquet"},
    tags={"layer": "metrics"},
    metadata=schema_metadata("accuracy_metrics", summary_columns="accuracy_summary"),
    **PARTITIONED,
)
def accuracy_metrics(context: dg.AssetExecutionContext, evidence: EvidenceStoreResource) -> dg.MaterializeResult:
    """Target and final accuracy per project in percentage points, and the mean regression."""
    store = evidence.store()
    evaluations = evaluate(context, store)
    detail, summary = store.write_accuracy(evaluations)
    by_partition: dict[str, dict[str, object]] = {}
    for e in evaluations:
        preview = markdown_table(
            ["project", "target (pp)", "LoRA-only final", "LoRA+MAML final", "delta (pp)"],
            [
                [
                    r.project,
                    r.baseline_target_accuracy_pp,
                    r.baseline_final_accuracy_pp,
                    r.candidate_final_accuracy_pp,
                    r.final_accuracy_delta_pp,
                ]
                for r in e.metrics.per_project
            ],
        )
        by_partition[e.spike_run_id] = {
            "dagster/row_count": len(e.metrics.per_project),
            "score_scale": e.payload.score_scale,
            "baseline_mean_final_accuracy_pp": rounded(e.metrics.baseline.mean_final_accuracy_pp),
            "candidate_mean_final_accuracy_pp": rounded(e.metrics.candidate.mean_final_accuracy_pp),
            "mean_accuracy_regression_pp": rounded(e.metrics.inputs.mean_accuracy_regression_pp),
            "per_project": dg.MetadataValue.md(preview),
        }
    add_partition_metadata(context, by_partition)
    return dg.MaterializeResult(metadata={"batch_files": dg.MetadataValue.json([str(detail), str(summary)])})


@dg.asset(
    deps=[spike_payload],
    kinds={"duckdb", "parquet"},
    tags={"layer": "metrics"},
    metadata=schema_metadata("cost_metrics"),
    **PARTITIONED,
)
def cost_metrics(context: dg.AssetExecutionContext, evidence: EvidenceStoreResource) -> dg.MaterializeResult:
    """MAML's extra training minutes, overhead and GPU cost per run, with the price assumed."""
    store = evidence.store()
    evaluations = evaluate(context, store)
    path = store.write_cost(evaluations)
    by_partition: dict[str, dict[str, object]] = {}
    for e in evaluations:
        cost = e.report["cost"]
        by_partition[e.spike_run_id] = {
            "dagster/row_count": 1,
            "extra_training_minutes": rounded(e.metrics.inputs.extra_training_minutes),
            "training_overhead_pct": rounded(e.metrics.inputs.training_overhead_pct),
            "extra_gpu_cost_usd_per_run": rounded(e.verdict.extra_gpu_cost_usd_per_run),
            "gpu_hour_usd": e.verdict.gpu_hour_usd,
            "gpu_hour_usd_source": cost["assumptions"]["gpu_hour_usd_source"],  # type: ignore[index]
        }
    add_partition_metadata(context, by_partition)
    return dg.MaterializeResult(metadata={"batch_file": dg.MetadataValue.path(str(path))})


@dg.asset(
    deps=[adaptation_metrics, accuracy_metrics, cost_metrics],
    kinds={"json", "duckdb"},
    tags={"layer": "decision"},
    metadata=schema_metadata("gate_decisions", check_columns="gate_checks"),
    **PARTITIONED,
)
def decision_report(context: dg.AssetExecutionContext, evidence: EvidenceStoreResource) -> dg.MaterializeResult:
    """The gate's decision report per spike run (report.json) and its rows in gate_decisions and gate_checks."""
    store = evidence.store()
    evaluations = store.write_decisions(evaluate(context, store))
    by_partition: dict[str, dict[str, object]] = {}
    for e in evaluations:
        by_partition[e.spike_run_id] = {
            "dagster/row_count": 1,
            "decision": e.verdict.decision,
            "maml_recommended": e.verdict.maml_recommended,
            "failed_check": e.verdict.failed_check or "none",
            "policy_version": e.policy.version,
            "report_path": dg.MetadataValue.path(str(store.home.report_dir(e.spike_run_id) / "report.json")),
            # the decision's reading stays short enough to show inline; how sure it is comes beside it
            "preview": dg.MetadataValue.md(render_interpretation(e.report)),
            "evidence": dg.MetadataValue.md(render_evidence(e.report).strip()),
            # the grade, the intervals and the p-values, each its own entry (plottable across partitions)
            **evidence_metadata(e.report.get("evidence")),  # type: ignore[arg-type]
            **mlflow_run_metadata(e.report),  # links to the MLflow runs it was collected from, if it was
            # the per-project chart written beside report.json, embedded (the UI shows Markdown images)
            "effects": dg.MetadataValue.md(
                markdown_image(store.home.report_dir(e.spike_run_id) / EFFECTS_FILE, "per-project effects")
            ),
        }
    add_partition_metadata(context, by_partition)
    return dg.MaterializeResult()


@dg.asset(deps=[decision_report], kinds={"markdown"}, tags={"layer": "decision"}, **PARTITIONED)
def interpretation(context: dg.AssetExecutionContext, evidence: EvidenceStoreResource) -> dg.MaterializeResult:
    """A short plain-language reading of each decision report (interpretation.md)."""
    store = evidence.store()
    evaluations = evaluate(context, store)
    by_partition: dict[str, dict[str, object]] = {}
    for e in evaluations:
        path, text = store.write_interpretation(e.spike_run_id)
        # the full text is decision_report's "preview"; here the file and its headline
        headline = next((line.strip("* ") for line in text.splitlines() if line.startswith("**")), "")
        by_partition[e.spike_run_id] = {"path": dg.MetadataValue.path(str(path)), "headline": headline}
    add_partition_metadata(context, by_partition)
    # the last step: every other spike run of the run is recorded by now, so the failed ones fail the run
    failed = store.failures([k for k in context.partition_keys if k not in by_partition])
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} spike run(s) could not be evaluated: "
            + "; ".join(f"{run_id}: {reason}" for run_id, reason in failed.items()),
            metadata={"failed_spike_runs": dg.MetadataValue.json(failed)},
            allow_retries=False,
        )
    return dg.MaterializeResult(metadata={"spike_runs": len(by_partition)})


def evaluate(context: dg.AssetExecutionContext, store: EvidenceStore) -> list[Evaluation]:
    """The step's spike runs judged by the store; one that fails is logged with its trace and left out."""
    evaluations, failed = store.evaluate_each(context.partition_keys)
    for run_id, reason in failed.items():
        trace = store.last_traces.get(run_id, "")
        context.log.error(f"spike run {run_id} is left out of this run: {reason}" + (f"\n{trace}" if trace else ""))
    return evaluations


SPIKE_ASSETS = [spike_payload, adaptation_metrics, accuracy_metrics, cost_metrics, decision_report, interpretation]
