"""The gate as partitioned asset checks, each on the asset it judges.

A check reports one result per spike run, also inside a run over many partitions: it yields one
``AssetCheckEvaluation`` per partition, pointed at that partition's latest materialization so the UI shows
its status (see ``latest_materializations``). A deferral is a WARN carrying the decision and the failed
check, not a crash.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from maml_evidence.defs.assets import accuracy_metrics, adaptation_metrics, cost_metrics, decision_report
from maml_evidence.defs.metadata import evidence_metadata, rounded
from maml_evidence.defs.partitions import spike_runs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.gate import GateInputs, Thresholds, Verdict
from maml_evidence.gate.decision import ALL, CHECK_TABLE, EVIDENCE_CHECK, CheckResult, CheckSpec, evidence_check
from maml_evidence.store.schema import TABLES


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


# One run's latest materializations per asset, shared by the checks on that asset (three judge adaptation_metrics):
# a check runs after its asset in the same run, so what one check fetched is what the next one would fetch.
Targets = dict[str, AssetCheckEvaluationTargetMaterializationData]
_RUN_TARGETS: dict[tuple[str, dg.AssetKey, tuple[str, ...]], Targets] = {}


def run_targets(instance: dg.DagsterInstance, run_id: str, asset_key: dg.AssetKey, keys: Sequence[str]) -> Targets:
    """``latest_materializations`` fetched once per run and asset (only the current run's entries are kept)."""
    key = (run_id, asset_key, tuple(keys))
    if key not in _RUN_TARGETS:
        for stale in [k for k in _RUN_TARGETS if k[0] != run_id]:
            del _RUN_TARGETS[stale]
        _RUN_TARGETS[key] = latest_materializations(instance, asset_key, keys)
    return _RUN_TARGETS[key]


class GateCheck(NamedTuple):
    """A Dagster check name, the asset it judges, and the core check it reports (None: the decision)."""

    name: str
    asset: dg.AssetsDefinition
    core_check: str | None
    description: str


# The asset whose table holds a metric: a gate check is shown on the asset that measures what it judges.
_ASSET_OF_TABLE = {
    "adaptation_summary": adaptation_metrics,
    "accuracy_summary": accuracy_metrics,
    "cost_metrics": cost_metrics,
}


def _judged_asset(spec: CheckSpec) -> dg.AssetsDefinition:
    metric = spec.conditions[0].metric
    found = [asset for table, asset in _ASSET_OF_TABLE.items() if metric in TABLES[table].column_names]
    return found[0] if found else decision_report


def _describe(spec: CheckSpec) -> str:
    joiner = " and " if spec.combine == ALL else " or "
    rule = joiner.join(f"{c.metric} {c.operator} {c.threshold_key}" for c in spec.conditions)
    if spec is EVIDENCE_CHECK:
        return (
            f"Passes when the evidence is strong ({rule}); WARN otherwise. Only when the policy sets "
            f"{spec.enabled_by} does a failure decide: {spec.on_fail}."
        )
    described = f"Passes when {rule}. When it is the first check to fail, the decision is {spec.on_fail}."
    if spec.enabled_by is not None:
        described += f" Checked only where {spec.enabled_by} is set (policy or payload)."
    return described


class Judged(NamedTuple):
    """One spike run as the gate judged it: the verdict, the inputs and thresholds behind it, its evidence section."""

    verdict: Verdict
    inputs: GateInputs
    thresholds: Thresholds
    evidence: Mapping[str, Any] | None = None


def _core_result(spec: GateCheck, judged: Judged) -> tuple[CheckResult | None, str]:
    """The core check's result and a note: it ran, or (optional) it did not and why."""
    found = next((c for c in judged.verdict.checks if c.name == spec.core_check), None)
    if found is not None:
        return found, ""
    if spec.core_check == EVIDENCE_CHECK.name:  # shown whether or not the policy requires it
        return evidence_check(judged.inputs, judged.thresholds), f"not required ({EVIDENCE_CHECK.enabled_by} is off)"
    setting = next(c.enabled_by for c in CHECK_TABLE if c.name == spec.core_check)
    return None, f"not checked: {setting} is not set (policy or payload)"


# One Dagster check per row of the gate's check table (same name, on the asset that measures it), and the decision.
GATE_CHECK_SPECS = (
    *(GateCheck(spec.name, _judged_asset(spec), spec.name, _describe(spec)) for spec in CHECK_TABLE),
    GateCheck("maml_gate", decision_report, None, "Passes only when the gate's decision is enable_maml."),
)


def check_evaluation(
    spec: GateCheck,
    spike_run_id: str,
    judged: Judged,
    policy_version: str,
    target: AssetCheckEvaluationTargetMaterializationData | None,
) -> dg.AssetCheckEvaluation:
    """One check's result for one spike run: observed values and thresholds as metadata, WARN when failing.

    An optional check the settings leave off passes with a note; ``evidence_strength`` always says whether the
    evidence is strong (WARN unless it is), and carries the grade and the intervals of the evidence section.
    """
    verdict = judged.verdict
    metadata: dict[str, Any] = {"decision": verdict.decision, "policy_version": policy_version}
    if spec.core_check is None:
        # the decision: observed values and thresholds of the check that settled it (all checks when enabled)
        passed = verdict.maml_recommended
        metadata["failed_check"] = verdict.failed_check or "none"
        metadata["reasons"] = "\n".join(verdict.reasons)
        shown = [c for c in verdict.checks if c.name == verdict.failed_check] or list(verdict.checks)
    else:
        result, note = _core_result(spec, judged)
        passed = result.passed if result is not None else True
        metadata["reason"] = result.reason if result is not None else note
        if note:
            metadata["note"] = note
        shown = [result] if result is not None else []
    if spec.core_check == EVIDENCE_CHECK.name:
        metadata.update(evidence_metadata(judged.evidence))
    for check in shown:  # rounded as the report rounds them
        for c in check.conditions:
            if c.observed is not None:
                metadata[f"observed_{c.metric}"] = rounded(c.observed)
                metadata[f"margin_{c.metric}"] = rounded(c.margin)
            metadata[f"threshold_{c.threshold_key}"] = rounded(c.threshold)
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
    # The check yields one AssetCheckEvaluation per partition and then an Output (FACTS.md: the only way a range
    # run records per-partition results); Dagster's typing only knows the single AssetCheckResult form.
    @dg.asset_check(  # type: ignore[arg-type]
        name=spec.name, asset=spec.asset, partitions_def=spike_runs, description=spec.description, blocking=False
    )
    def _check(context: dg.AssetCheckExecutionContext, evidence: EvidenceStoreResource) -> Iterator[object]:
        store = evidence.store()
        keys = list(context.op_execution_context.partition_keys)
        targets = run_targets(context.instance, context.op_execution_context.run_id, spec.asset.key, keys)
        for e in store.evaluate_each(keys)[0]:
            judged = Judged(e.verdict, e.metrics.inputs, e.settings.thresholds, e.report.get("evidence"))  # type: ignore[arg-type]
            yield check_evaluation(spec, e.spike_run_id, judged, e.policy.version, targets.get(e.spike_run_id))
        yield dg.Output(None)

    return _check


def record_check_results(instance: dg.DagsterInstance, judged: Mapping[str, Judged], policy_version: str) -> int:
    """Re-record every gate check of these spike runs outside a run (after a re-evaluation changed them)."""
    count = 0
    for spec in GATE_CHECK_SPECS:
        targets = latest_materializations(instance, spec.asset.key, list(judged))
        for run_id, one in judged.items():
            instance.report_runless_asset_event(
                check_evaluation(spec, run_id, one, policy_version, targets.get(run_id))
            )
            count += 1
    return count


GATE_CHECKS = [_gate_check(spec) for spec in GATE_CHECK_SPECS]
