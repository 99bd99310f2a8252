"""Re-judging history when the threshold policy changes: an asset, its job, and a schedule that watches."""

from typing import Any

import dagster as dg

from maml_evidence.defs.assets import OWNERS, decision_report
from maml_evidence.defs.checks import Judged, record_check_results
from maml_evidence.defs.metadata import markdown_table
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.defs.runs import fail_dead_runs
from maml_evidence.store.reevaluation import reevaluate, stale_policy_versions

REEVALUATE_JOB = "reevaluate_history"
# Re-recording check results in Dagster costs ~10 ms per check and run; past this many changed spike runs
# the UI shows the new decisions through this asset's metadata and the store, not per-partition checks.
MAX_CHECK_RERECORDS = 2_000


class ReevaluationConfig(dg.Config):
    force: bool = False
    """Re-judge every spike run even when its decision already uses the policy in force."""


@dg.asset(
    deps=[decision_report],
    group_name="policy",
    owners=OWNERS,
    kinds={"duckdb", "parquet"},
    tags={"layer": "decision"},
)
def decision_reevaluation(
    context: dg.AssetExecutionContext, config: ReevaluationConfig, evidence: EvidenceStoreResource
) -> dg.MaterializeResult:
    """Every stored spike run re-judged in bulk under the threshold policy in force (thresholds.toml)."""
    store = evidence.store()
    result = reevaluate(store, force=config.force)
    policy = result.policy
    metadata: dict[str, Any] = {
        "policy_version": policy.version,
        "policy_source": policy.source,
        "effective_policy": dg.MetadataValue.json(policy.effective),
        "previous_policy_versions": ", ".join(result.previous_versions) or "none",
        "spike_runs_evaluated": result.evaluated,
        "decisions_changed": len(result.changes),
        "decision_mix": dg.MetadataValue.json(result.decision_mix),
        "timings_seconds": dg.MetadataValue.json({k: round(v, 3) for k, v in result.timings.items()}),
    }
    if result.damaged:
        metadata["damaged_files_skipped"] = dg.MetadataValue.md("\n".join(f"- {d}" for d in result.damaged))
        for damage in result.damaged:
            context.log.warning(f"skipped {damage}; run `maml-evidence doctor --repair`")
    if result.report_errors:
        metadata["reports_not_refreshed"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in result.report_errors[:50]))
    if result.recovered:
        metadata["recovered"] = dg.MetadataValue.md("\n".join(f"- {line}" for line in result.recovered))
    if result.skipped_reason:
        metadata["skipped"] = result.skipped_reason
    if result.changes:
        shown = result.changes[:50]
        metadata["changes"] = dg.MetadataValue.md(
            markdown_table(
                ["spike run", "from", "to", "cause"],
                [[c.spike_run_id, c.from_decision, c.to_decision, c.cause_check or ""] for c in shown],
            )
            + (
                f"\n\n...and {len(result.changes) - len(shown)} more (see decision_changes)"
                if len(result.changes) > 50
                else ""
            )
        )
        if len(result.changes) <= MAX_CHECK_RERECORDS:
            judged = {
                run_id: Judged(verdict, inputs, settings.thresholds)
                for run_id, (verdict, inputs, settings) in result.changed_judgements().items()
            }
            metadata["check_results_rerecorded"] = record_check_results(context.instance, judged, policy.version)
        else:
            context.log.warning(
                f"{len(result.changes)} decisions changed; per-partition check results are not re-recorded "
                f"above {MAX_CHECK_RERECORDS} (gate_decisions and gate_checks hold the current results)"
            )
    return dg.MaterializeResult(metadata=metadata)


reevaluate_history = dg.define_asset_job(
    REEVALUATE_JOB,
    # and what is drawn from it (evidence_overview): a re-evaluation refreshes the pictures of history
    selection=dg.AssetSelection.assets(decision_reevaluation).downstream(),
    description="Re-judge every stored spike run under the threshold policy in force.",
)


@dg.schedule(
    cron_schedule="*/5 * * * *",
    job=reevaluate_history,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes: if thresholds.toml changed the policy, re-judge history (one run); else skip.",
)
def policy_change_schedule(context: dg.ScheduleEvaluationContext, evidence: EvidenceStoreResource):
    """Requests one re-evaluation run per new policy version; a broken policy file fails the tick loudly."""
    store = evidence.store()
    policy = store.policy()  # raises with every problem named: a broken policy never falls back to defaults
    unfinished = fail_dead_runs(context.instance, REEVALUATE_JOB)  # a killed CLI re-evaluation must not block it
    if unfinished:
        return dg.SkipReason(f"re-evaluation run {unfinished[0].run_id} is still in progress")
    stale = stale_policy_versions(store, policy)
    if not stale:
        return dg.SkipReason(f"policy {policy.version} unchanged: every stored decision already uses it")
    return dg.RunRequest(run_key=f"policy-{policy.version}", tags={"maml_evidence/policy_version": policy.version})
