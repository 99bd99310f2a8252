"""The Dagster code location: everything maml-evidence defines, assembled."""

import dagster as dg

from maml_evidence.defs.assets import SPIKE_ASSETS
from maml_evidence.defs.checks import GATE_CHECKS
from maml_evidence.defs.jobs import evaluate_spike_runs
from maml_evidence.defs.mlflow_sensor import mlflow_spike_sensor
from maml_evidence.defs.overview import evidence_overview
from maml_evidence.defs.reevaluation import decision_reevaluation, policy_change_schedule, reevaluate_history
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.defs.sensors import spike_inbox_sensor

defs = dg.Definitions(
    assets=[*SPIKE_ASSETS, decision_reevaluation, evidence_overview],
    asset_checks=GATE_CHECKS,
    jobs=[evaluate_spike_runs, reevaluate_history],
    sensors=[spike_inbox_sensor, mlflow_spike_sensor],
    schedules=[policy_change_schedule],
    resources={"evidence": EvidenceStoreResource()},
    # Per-op subprocesses would cost seconds of imports per step; the work per step is small and the store
    # takes concurrent runs, so one process per run is both faster and safe.
    executor=dg.in_process_executor,
)
