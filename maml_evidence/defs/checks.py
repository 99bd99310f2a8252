"""The gate as partitioned asset checks, each on the asset it judges.

A check reports one result per spike run, also inside a run over many partitions: it yields one
``AssetCheckEvaluation`` per partition, pointed at that partition's latest materialization so the UI shows
its status (see ``_target``). A deferral is a WARN carrying the decision and the failed check, not a crash.
"""


import warnings
from collections.abc import Iterator, Sequence

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from maml_evidence.defs.assets import accuracy_metrics, adaptation_metrics, cost_metrics, decision_report
from maml_evidence.defs.partitions import spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.store import Evaluation


def _targets(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Sequence[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialization of each partition, which the UI ties a check result to.

    Relies on a Dagster-internal class (pinned to Dagster 1.13; a test fails if this stops working).
    """
    found: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    cursor = None
    wanted = set(keys)
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(keys)), limit=1000, cursor=cursor
        )
        for record in page.records:
            partition = record.partition_key
            if partition in wanted and partition not in found:
                found[partition] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                )
        if not page.has_more or len(found) == len(wanted):
            return found
        cursor = page.cursor


def _condition_metadata(evaluation: Evaluation, check_name: str) -> dict[str, object]:
    check = next(c for c in evaluation.verdict.checks if c.name == check_name)
    metadata: dict[str, object] = {"reason": check.reason}
    for c in check.conditions:
        metadata[f"observed_{c.metric}"] = float(c.observed)
        metadata[f"threshold_{c.threshold_key}"] = float(c.threshold)
    metadata["decision"] = evaluation.verdict.decision
    return metadata


def _gate_check(name: str, asset: dg.AssetsDefinition, core_check: str | None, description: str) -> dg.AssetChecksDefinition:
    asset_key = asset.key

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.PreviewWarning)

        @dg.asset_check(
            name=name,
            asset=asset,
            partitions_def=spike_runs,
            description=description,
            blocking=False,
        )
        def _check(context: dg.AssetCheckExecutionContext, evidence: EvidenceStoreResource) -> Iterator[object]:
            store = evidence.store()
            keys = list(context.op_execution_context.partition_keys)
            targets = _targets(context.instance, asset_key, keys)
            for evaluation in store.evaluate(keys):
                if core_check is None:
                    verdict = evaluation.verdict
                    passed = verdict.maml_recommended
                    metadata: dict[str, object] = {
                        "decision": verdict.decision,
                        "failed_check": verdict.failed_check or "none",
                        "reasons": "\n".join(verdict.reasons),
                        "policy_version": evaluation.policy.version,
                    }
                else:
                    passed = evaluation.verdict.flags()[core_check]
                    metadata = _condition_metadata(evaluation, core_check)
                yield dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=name,
                    passed=passed,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata=metadata,
                    partition=evaluation.spike_run_id,
                    target_materialization_data=targets.get(evaluation.spike_run_id),
                    description=description,
                )
            yield dg.Output(None)

    return _check


GATE_CHECKS = [
    _gate_check(
        "enough_projects", adaptation_metrics, "enough_projects", "At least min_projects projects are in both arms."
    ),
    _gate_check(
        "adaptation_triggered",
        adaptation_metrics,
        "adaptation_triggered",
        "LoRA-only adaptation is slow enough (mean or max steps at or above the trigger) to need MAML.",
    ),
    _gate_check(
        "effectiveness",
        adaptation_metrics,
        "effectiveness_ok",
        "MAML cuts mean steps to target by enough, absolutely and relatively.",
    ),
    _gate_check(
        "accuracy_guard", accuracy_metrics, "accuracy_ok", "MAML's mean final-accuracy regression is within the limit."
    ),
    _gate_check("cost_guard", cost_metrics, "cost_ok", "MAML's extra training overhead and GPU cost are within budget."),
    _gate_check("maml_gate", decision_report, None, "Passes only when the gate's decision is enable_maml."),
]
