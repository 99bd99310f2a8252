"""The job that evaluates spike runs: every spike-run asset and its checks, in one process per run."""

import dagster as dg

from maml_evidence.defs.assets import GROUP

EVALUATE_JOB = "evaluate_spike_runs"

evaluate_spike_runs = dg.define_asset_job(
    EVALUATE_JOB,
    selection=dg.AssetSelection.groups(GROUP),
    description="Ingest, measure, gate and report a set of spike runs (one run for any number of partitions).",
)
