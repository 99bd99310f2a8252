"""Dagster's floor for the ingest benchmark: the same asset graph and checks with empty bodies.

Built from the product's own definitions, so it cannot drift from them: every asset of the evaluation job
(the six partitioned spike-run assets with their dependencies and single-run backfill policy, and the
unpartitioned overview) and every gate check on the asset it judges, each check recording one result per
partition. That is the bookkeeping Dagster does for our ingest, without our work.
"""

from collections.abc import Iterator

import dagster as dg

from maml_evidence.defs.assets import SPIKE_ASSETS
from maml_evidence.defs.checks import GATE_CHECK_SPECS
from maml_evidence.defs.overview import evidence_overview
from maml_evidence.defs.partitions import spike_runs

EVALUATED = [*SPIKE_ASSETS, evidence_overview]  # what the evaluate job selects
SELECTED = {asset.key for asset in EVALUATED}


def _empty_asset(real: dg.AssetsDefinition) -> dg.AssetsDefinition:
    deps = [dep for dep in real.asset_deps[real.key] if dep in SELECTED]  # as the job runs it
    partitioned = real.partitions_def is not None
    policy = {"partitions_def": spike_runs, "backfill_policy": dg.BackfillPolicy.single_run()} if partitioned else {}

    @dg.asset(name=real.key.path[-1], deps=deps, **policy)  # type: ignore[arg-type]
    def _a() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return _a


def _empty_check(name: str, asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(name=name, asset=asset_key, partitions_def=spike_runs)  # type: ignore[arg-type]
    def _c(context: dg.AssetCheckExecutionContext) -> Iterator[object]:
        for key in context.op_execution_context.partition_keys:
            yield dg.AssetCheckEvaluation(asset_key=asset_key, check_name=name, passed=True, partition=key)
        yield dg.Output(None)

    return _c


ASSETS = [_empty_asset(asset) for asset in EVALUATED]
CHECKS = [_empty_check(spec.name, spec.asset.key) for spec in GATE_CHECK_SPECS]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[dg.define_asset_job("floor", selection=dg.AssetSelection.all())],
    executor=dg.in_process_executor,
)
