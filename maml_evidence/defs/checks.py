"""The gate as partitioned asset checks, each on the asset it judges.

A check reports one result per spike run, also inside a run over many partitions: it yields one
``AssetCheckEvaluation`` per partition, pointed at that partition's latest materialization so the UI shows
its status (see ``latest_materializations``). A deferral is a WARN carrying the decision and the failed
check, not a crash.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from maml_evidence.defs.assets import accuracy_metrics, adaptation_metrics, cost_metrics, decision_report
from maml_evidence.defs.partitions import spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.gate import Verdict


def latest_materializations(
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


class GateCheck(NamedTuple):
    """A Dagster check name, the asset it judges, and the core check it reports (None: the decision)."""

    name: str
    asset: dg.AssetsDefinition
    core_check: str | None
    description: str


GATE_CHECK_SPECS = (
    GateCheck(
        "enough_projects", adaptation_metrics, "enough_projects", "At least min_projects projects are in both arms."
    ),
    GateCheck(
        "adaptation_triggered",
        adaptation_metrics,
        "adaptation_triggered",
        "LoRA-only adaptation is slow enough (mean or max steps at or above the trigger) to need MAML.",
    ),
    GateCheck(
        "effectiveness",
        adaptation_metrics,
        "effectiveness_ok",
        "MAML cuts mean steps to target by enough, absolutely and relatively.",
    ),
    GateCheck(
        "accuracy_guard", accuracy_metrics, "accuracy_ok", "MAML's mean final-accuracy regression is within the limit."
    ),
    GateCheck("cost_guard", cost_metrics, "cost_ok", "MAML's extra training overhead and GPU cost are within budget."),
    GateCheck("maml_gate", decision_report, None, "Passes only when the gate's decision is enable_maml."),
)


def check_evaluation(
    spec: GateCheck,
    spike_run_id: str,
    verdict: Verdict,
    policy_version: str,
    target: AssetCheckEvaluationTargetMaterializationData | None,
) -> dg.AssetCheckEvaluation:
    """One check's result for one spike run: observed values and thresholds as metadata, WARN when failing."""
    metadata: dict[str, object] = {"decision": verdict.decision, "policy_version": policy_version}
    if spec.core_check is None:
        # the decision: observed values and thresholds of the check that settled it (all checks when enabled)
        passed = verdict.maml_recommended
        metadata["failed_check"] = verdict.failed_check or "none"
        metadata["reasons"] = "\n".join(verdict.reasons)
        shown = [c for c in verdict.checks if c.name == verdict.failed_check] or list(verdict.checks)
    else:
        result = next(c for c in verdict.checks if c.name == spec.core_check)
        passed = result.passed
        metadata["reason"] = result.reason
        shown = [result]
    for check in shown:
        for c in check.conditions:
            metadata[f"observed_{c.metric}"] = float(c.observed)
            metadata[f"threshold_{c.threshold_key}"] = float(c.threshold)
    return dg.AssetCheckEvaluation(
        asset_key=spec.asset.key,
        check_name=spec.name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        partition=spike_run_id,
        target_materialization_data=target,
    )


def _gate_check(spec: GateCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        name=spec.name, asset=spec.asset, partitions_def=spike_runs, description=spec.description, blocking=False
    )
    def _check(context: dg.AssetCheckExecutionContext, evidence: EvidenceStoreResource) -> Iterator[object]:
        store = evidence.store()
        keys = list(context.op_execution_context.partition_keys)
        targets = latest_materializations(context.instance, spec.asset.key, keys)
        for e in store.evaluate_each(keys)[0]:
            yield check_evaluation(spec, e.spike_run_id, e.verdict, e.policy.version, targets.get(e.spike_run_id))
        yield dg.Output(None)

    return _check


def record_check_results(instance: dg.DagsterInstance, verdicts: Mapping[str, Verdict], policy_version: str) -> int:
    """Re-record every gate check of these spike runs outside a run (after a re-evaluation changed them)."""
    count = 0
    for spec in GATE_CHECK_SPECS:
        targets = latest_materializations(instance, spec.asset.key, list(verdicts))
        for run_id, verdict in verdicts.items():
            instance.report_runless_asset_event(
                check_evaluation(spec, run_id, verdict, policy_version, targets.get(run_id))
            )
            count += 1
    return count


GATE_CHECKS = [_gate_check(spec) for spec in GATE_CHECK_SPECS]
