"""Dagster's floor for the ingest benchmark: the same asset graph and checks with empty bodies.

Six partitioned assets with the same dependencies, single-run backfill policy and six per-partition checks
that record one result per partition: the bookkeeping Dagster does for our ingest, without our work.
"""

import dagster as dg

partitions = dg.DynamicPartitionsDefinition(name="spike_runs")
POLICY = {"partitions_def": partitions, "backfill_policy": dg.BackfillPolicy.single_run()}


@dg.asset(**POLICY)
def spike_payload() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(deps=[spike_payload], **POLICY)
def adaptation_metrics() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(deps=[spike_payload], **POLICY)
def accuracy_metrics() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(deps=[spike_payload], **POLICY)
def cost_metrics() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(deps=[adaptation_metrics, accuracy_metrics, cost_metrics], **POLICY)
def decision_report() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(deps=[decision_report], **POLICY)
def interpretation() -> dg.MaterializeResult:
    return dg.MaterializeResult()


def _check(name: str, asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(name=name, asset=asset, partitions_def=partitions)
    def _c(context: dg.AssetCheckExecutionContext):
        for key in context.op_execution_context.partition_keys:
            yield dg.AssetCheckEvaluation(asset_key=asset.key, check_name=name, passed=True, partition=key)
        yield dg.Output(None)

    return _c


defs = dg.Definitions(
    assets=[spike_payload, adaptation_metrics, accuracy_metrics, cost_metrics, decision_report, interpretation],
    asset_checks=[
        _check("enough_projects", adaptation_metrics),
        _check("adaptation_triggered", adaptation_metrics),
        _check("effectiveness_ok", adaptation_metrics),
        _check("accuracy_ok", accuracy_metrics),
        _check("cost_ok", cost_metrics),
        _check("maml_gate", decision_report),
    ],
    jobs=[dg.define_asset_job("floor", selection=dg.AssetSelection.all(), partitions_def=partitions)],
    executor=dg.in_process_executor,
)
