"""The job that evaluates spike runs: every spike-run asset and its checks, in one process per run."""

import dagster as dg

from maml_evidence.defs.assets import GROUP
from maml_evidence.defs.overview import evidence_overview

EVALUATE_JOB = "evaluate_spike_runs"

evaluate_spike_runs = dg.define_asset_job(
    EVALUATE_JOB,
    # the overview pictures too, so that every ingest refreshes them (one more step per run, not per spike run)
    selection=dg.AssetSelection.groups(GROUP) | dg.AssetSelection.assets(evidence_overview),
    description="Ingest, measure, gate and report a set of spike runs (one run for any number of partitions).",
)
