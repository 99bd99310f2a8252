"""The evidence tables: one declaration per table (columns, kind, description) used for files, views and docs."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from maml_evidence.gate import CHECK_NAMES, THRESHOLD_KEYS

TS = pa.timestamp("us", tz="UTC")
BATCH_COLUMN = "_batch"
# False on the placeholder row that records "this spike run now has no rows" in a per-project table.
PRESENT_COLUMN = "_present"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str


@dataclass(frozen=True)
class TableDef:
    """A table of the store.

    ``current`` tables hold the latest rows per ``key`` (a re-materialization replaces a spike run's rows);
    ``history`` tables only ever grow.
    """

    name: str
    kind: str
    doc: str
    columns: tuple[Column, ...]
    key: str = "spike_run_id"
    # Rows count only once their batch is recorded in ``decision_commits`` (the decision commit protocol).
    committed: bool = False

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.type) for c in self.columns]
            + [pa.field(BATCH_COLUMN, pa.string()), pa.field(PRESENT_COLUMN, pa.bool_())]
        )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: pa.DataType, doc: str) -> Column:
    return Column(name, type_, doc)


RUN = _c("spike_run_id", pa.string(), "the spike run (one Dagster partition)")
PROJECT = _c("project", pa.string(), "project name, present in both arms")
F = pa.float64()

# A threshold's column type: a count, a switch, or a number (null: an optional guard not checked).
THRESHOLD_TYPES = {key: F for key in THRESHOLD_KEYS} | {
    "min_projects": pa.int64(),
    "require_strong_evidence": pa.bool_(),
}
_THRESHOLD_COLUMNS = tuple(_c(key, THRESHOLD_TYPES[key], f"effective threshold `{key}`") for key in THRESHOLD_KEYS)
_CHECK_COLUMNS = tuple(
    _c(name, pa.bool_(), f"check `{name}` passed (null: an optional check that did not run)") for name in CHECK_NAMES
)

TABLES: dict[str, TableDef] = {
    t.name: t
    for t in (
        TableDef(
            "spike_runs",
            "current",
            "One row per spike run: the stored payload revision and how its arms align.",
            (
                RUN,
                _c("revision", pa.int64(), "payload revision, 1 for the first ingest, +1 per --replace"),
                _c("sha256", pa.string(), "sha256 of the stored payload bytes"),
                _c("source_file", pa.string(), "the file the payload was ingested from"),
                _c("accepted_at", TS, "when the payload revision was accepted into the store"),
                _c("ingested_at", TS, "when the spike_payload asset materialized it"),
                _c("baseline_label", pa.string(), "baseline arm label"),
                _c("candidate_label", pa.string(), "candidate arm label"),
                _c("score_scale", pa.string(), "ratio_to_percentage_points or percentage_points"),
                _c("baseline_project_count", pa.int64(), "projects in the baseline run"),
                _c("candidate_project_count", pa.int64(), "projects in the candidate run"),
                _c("common_project_count", pa.int64(), "projects in both runs (the ones judged)"),
                _c("baseline_only_projects", pa.list_(pa.string()), "projects only in the baseline run"),
                _c("candidate_only_projects", pa.list_(pa.string()), "projects only in the candidate run"),
                _c("payload_thresholds", pa.string(), "the payload's own threshold overrides (JSON)"),
                _c("payload_cost_profile", pa.string(), "the payload's own cost_profile (JSON)"),
                _c("payload_extras", pa.string(), "other top-level payload keys, kept as given (JSON)"),
                _c("payload_path", pa.string(), "absolute path of the stored payload"),
            ),
        ),
        TableDef(
            "adaptation_metrics",
            "current",
            "Per spike run and common project: steps to target in both arms and the reduction.",
            (
                RUN,
                PROJECT,
                _c("baseline_steps_to_target", F, "LoRA-only steps to reach the target accuracy"),
                _c("candidate_steps_to_target", F, "LoRA+MAML steps to reach the target accuracy"),
                _c("step_reduction", F, "baseline minus candidate steps"),
            ),
        ),
        TableDef(
            "adaptation_summary",
            "current",
            "Per spike run: adaptation means and maxima over the common projects.",
            (
                RUN,
                _c("common_project_count", pa.int64(), "projects judged"),
                _c("baseline_mean_steps", F, "mean baseline steps to target"),
                _c("baseline_max_steps", F, "max baseline steps to target"),
                _c("candidate_mean_steps", F, "mean candidate steps to target"),
                _c("candidate_max_steps", F, "max candidate steps to target"),
                _c("mean_step_reduction", F, "mean per-project step reduction"),
                _c("relative_step_reduction", F, "mean reduction / baseline mean (fraction)"),
                _c("candidate_unreached_projects", pa.int64(), "common projects the candidate never reached target on"),
            ),
        ),
        TableDef(
            "accuracy_metrics",
            "current",
            "Per spike run and common project: target and final accuracy in percentage points.",
            (
                RUN,
                PROJECT,
                _c("baseline_target_accuracy_pp", F, "baseline target accuracy (pp)"),
                _c("candidate_target_accuracy_pp", F, "candidate target accuracy (pp)"),
                _c("baseline_final_accuracy_pp", F, "baseline final accuracy (pp)"),
                _c("candidate_final_accuracy_pp", F, "candidate final accuracy (pp)"),
                _c("final_accuracy_delta_pp", F, "candidate minus baseline final accuracy (pp)"),
                _c("accuracy_regression_pp", F, "max(0, baseline - candidate final accuracy) (pp)"),
            ),
        ),
        TableDef(
            "accuracy_summary",
            "current",
            "Per spike run: mean final accuracies and the mean regression the accuracy guard judges.",
            (
                RUN,
                _c("score_scale", pa.string(), "how the payload's accuracies were read"),
                _c("baseline_mean_final_accuracy_pp", F, "mean baseline final accuracy (pp)"),
                _c("candidate_mean_final_accuracy_pp", F, "mean candidate final accuracy (pp)"),
                _c("mean_accuracy_regression_pp", F, "max(0, baseline mean - candidate mean) (pp)"),
                _c("worst_accuracy_project", pa.string(), "the project with the largest regression (first of equals)"),
                _c(
                    "worst_project_accuracy_regression_pp", F, "its regression: max(0, baseline - candidate final) (pp)"
                ),
            ),
        ),
        TableDef(
            "cost_metrics",
            "current",
            "Per spike run: training minutes of both arms and MAML's extra cost at the price in force.",
            (
                RUN,
                _c("baseline_train_minutes", F, "LoRA-only training minutes"),
                _c("baseline_meta_train_minutes", F, "baseline meta-training minutes (normally 0)"),
                _c("candidate_train_minutes", F, "LoRA+MAML training minutes"),
                _c("candidate_meta_train_minutes", F, "MAML meta-training minutes"),
                _c("extra_training_minutes", F, "max(0, candidate train + meta - baseline train)"),
                _c("training_overhead_pct", F, "extra minutes / baseline minutes * 100"),
                _c("gpu_hour_usd", F, "GPU price assumed (USD per hour)"),
                _c("gpu_hour_usd_source", pa.string(), "default, policy or payload"),
                _c("extra_gpu_cost_usd_per_run", F, "extra minutes / 60 * gpu_hour_usd"),
            ),
        ),
        TableDef(
            "cost_breakeven",
            "current",
            "Per spike run: when MAML's extra training pays for itself, at the price and break-even inputs in force.",
            (
                RUN,
                _c(
                    "saving_per_adaptation_usd",
                    F,
                    "mean step reduction * minutes_per_adaptation_step / 60 * gpu_hour_usd",
                ),
                _c(
                    "breakeven_adaptations_per_run",
                    F,
                    "ceil(extra GPU cost per run / saving): a whole number; null: never",
                ),
                _c("monthly_net_usd", F, "adaptations_per_month * saving - training_runs_per_month * extra cost"),
                _c("extra_gpu_cost_usd_per_run", F, "the spec's extra GPU cost per training run at that price"),
                _c("gpu_hour_usd", F, "GPU price (USD per hour)"),
                _c("minutes_per_adaptation_step", F, "GPU minutes one adaptation step costs (null: not given)"),
                _c("adaptations_per_month", F, "new project adaptations a month (null: not given)"),
                _c("training_runs_per_month", F, "how often the priced training repeats a month (default 1)"),
                _c("sources", pa.string(), "per input: default, policy or payload (JSON)"),
                _c("missing", pa.list_(pa.string()), "the cost_profile keys that would answer the null figures"),
                _c("policy_version", pa.string(), "the policy the inputs were taken under"),
            ),
        ),
        TableDef(
            "project_effects",
            "current",
            "Per spike run and common project: MAML's effect, the replicates, whether each arm reached target.",
            (
                RUN,
                PROJECT,
                _c("step_reduction", F, "baseline minus candidate steps to target (d_i)"),
                _c("relative_step_reduction", F, "d_i / baseline steps (fraction; null when the baseline took 0)"),
                _c("accuracy_regression_pp", F, "baseline minus candidate final accuracy (pp; negative: a gain)"),
                _c("baseline_replicates", pa.int64(), "seed replicates behind the baseline value (0: one value)"),
                _c("candidate_replicates", pa.int64(), "seed replicates behind the candidate value (0: one value)"),
                _c("baseline_steps_sd", F, "within-project sd of the baseline replicates' steps (null under 2)"),
                _c("candidate_steps_sd", F, "within-project sd of the candidate replicates' steps (null under 2)"),
                _c("baseline_reached", pa.bool_(), "the baseline reached target (false: its steps are a lower bound)"),
                _c(
                    "candidate_reached", pa.bool_(), "the candidate reached target (false: its steps are a lower bound)"
                ),
            ),
        ),
        TableDef(
            "evidence_strength",
            "current",
            "One row per spike run: how sure its decision is (paired tests, intervals, power) and the grade.",
            (
                RUN,
                _c("projects", pa.int64(), "common projects n"),
                _c("mean_step_reduction", F, "mean of d_i"),
                _c("step_reduction_sd", F, "between-project sample sd of d_i (ddof 1; null under 2 projects)"),
                _c("ci95_low", F, "two-sided 95% t-interval of mean(d), low end"),
                _c("ci95_high", F, "two-sided 95% t-interval of mean(d), high end"),
                _c("relative_ci95_low", F, "ci95_low / baseline mean steps"),
                _c("relative_ci95_high", F, "ci95_high / baseline mean steps"),
                _c("t_p_value", F, "one-sided paired t-test p (candidate needs fewer steps)"),
                _c("sign_flip_p_value", F, "one-sided sign-flip permutation p"),
                _c("sign_flip_exact", pa.bool_(), "exact over all 2^n sign assignments (else seeded Monte Carlo)"),
                _c("min_attainable_p_value", F, "1 / 2^n: the smallest sign-flip p any result can reach"),
                _c("step_reduction_p_value", F, "the larger of the two p-values (what strong evidence needs < 0.05)"),
                _c("projects_for_80pct_power", pa.int64(), "projects needed to detect the policy's reduction"),
                _c("mean_regression_pp", F, "mean paired accuracy regression (pp)"),
                _c("upper95_regression_pp", F, "one-sided 95% upper bound of the mean regression (pp)"),
                _c("lower95_regression_pp", F, "one-sided 95% lower bound of the mean regression (pp)"),
                _c("accuracy_verdict", pa.string(), "non_inferior, inconclusive or inferior against the policy"),
                _c("worst_project", pa.string(), "the project with the largest accuracy regression"),
                _c("worst_project_regression_pp", F, "its regression (pp)"),
                _c("smallest_gain_project", pa.string(), "the project with the smallest step reduction"),
                _c("baseline_reach_rate", F, "common projects the baseline reached target on (fraction)"),
                _c("candidate_reach_rate", F, "common projects the candidate reached target on (fraction)"),
                _c("candidate_unreached_projects", pa.int64(), "common projects the candidate never reached"),
                _c("grade", pa.string(), "strong, suggestive or insufficient"),
                _c("grade_reason", pa.string(), "one sentence with the numbers"),
                _c("policy_version", pa.string(), "the policy the grade was judged under"),
                _c("evaluated_at", TS, "when"),
            ),
            committed=True,
        ),
        TableDef(
            "gate_decisions",
            "current",
            "One row per spike run: the current gate decision, its checks and the thresholds it used.",
            (
                RUN,
                _c("decision", pa.string(), "enable_maml or a defer_*/collect_more_evidence decision"),
                _c("maml_recommended", pa.bool_(), "decision == enable_maml"),
                _c("failed_check", pa.string(), "first failing check in precedence order (null when enabled)"),
                *_CHECK_COLUMNS,
                *_THRESHOLD_COLUMNS,
                _c("gpu_hour_usd", F, "GPU price used (USD per hour)"),
                _c("extra_gpu_cost_usd_per_run", F, "extra GPU cost at that price"),
                _c("threshold_sources", pa.string(), "per key: default, policy or payload (JSON)"),
                _c("policy_version", pa.string(), "hash of the effective threshold policy"),
                _c("trigger", pa.string(), "ingest, replace or re-evaluation"),
                _c("evaluated_at", TS, "when the decision was made"),
            ),
            committed=True,
        ),
        TableDef(
            "gate_checks",
            "current",
            "One row per spike run and check: passed, the decisive observed value and its threshold.",
            (
                RUN,
                _c("check_name", pa.string(), "enough_projects, adaptation_triggered, effectiveness_ok, ..."),
                _c("passed", pa.bool_(), "the check passed"),
                _c("metric", pa.string(), "the metric of the decisive condition"),
                _c("observed", F, "its observed value"),
                _c("operator", pa.string(), ">= or <="),
                _c("threshold", F, "the threshold it was compared with"),
                _c("threshold_key", pa.string(), "the threshold's key"),
                _c("margin", F, "how far observed is from threshold in the passing direction (negative: failed by)"),
                _c("reason", pa.string(), "the check's sentence with every observed number"),
                _c("evaluated_at", TS, "when the check ran"),
            ),
            committed=True,
        ),
        TableDef(
            "decision_history",
            "history",
            "Every evaluation ever made: ingest, replace and each re-evaluation under a new policy.",
            (
                RUN,
                _c("revision", pa.int64(), "payload revision that was judged"),
                _c("policy_version", pa.string(), "policy version it was judged under"),
                _c("decision", pa.string(), "the decision"),
                _c("maml_recommended", pa.bool_(), "decision == enable_maml"),
                _c("failed_check", pa.string(), "first failing check (null when enabled)"),
                *_CHECK_COLUMNS,
                _c("trigger", pa.string(), "ingest, replace or re-evaluation"),
                _c("evaluated_at", TS, "when"),
            ),
            committed=True,
        ),
        TableDef(
            "threshold_policies",
            "history",
            "Every threshold policy version seen, with its effective content and first-seen time.",
            (
                _c("policy_version", pa.string(), "hash of the effective policy"),
                _c("effective_policy", pa.string(), "every threshold key and gpu_hour_usd in force (JSON)"),
                _c("policy_keys_set", pa.string(), "the keys the policy file itself sets (JSON)"),
                _c("source", pa.string(), "the policy file, or the spec's defaults when there is none"),
                _c("first_seen_at", TS, "when this version was first used"),
            ),
            key="policy_version",
        ),
        TableDef(
            "decision_changes",
            "history",
            "Spike runs whose decision flipped when the policy changed, with the check that caused it.",
            (
                RUN,
                _c("from_policy_version", pa.string(), "policy version of the earlier decision"),
                _c("to_policy_version", pa.string(), "policy version of the new decision"),
                _c("from_decision", pa.string(), "decision before"),
                _c("to_decision", pa.string(), "decision after"),
                _c("cause_check", pa.string(), "the check whose outcome changed and settled the new decision"),
                _c("cause_detail", pa.string(), "that check's sentence under the new policy"),
                _c("changed_at", TS, "when the re-evaluation ran"),
            ),
            committed=True,
        ),
        TableDef(
            "decision_commits",
            "history",
            "Every committed batch of decisions: its rows in the decision tables and evidence_strength became visible "
            "together.",
            (
                _c("batch", pa.string(), "the batch id its rows carry (sortable: nanosecond clock first)"),
                _c("kind", pa.string(), "ingest (one Dagster step over many spike runs), re-evaluation or legacy"),
                _c("policy_versions", pa.list_(pa.string()), "policy versions its decisions were judged under"),
                _c("spike_run_count", pa.int64(), "spike runs it decided"),
                _c("committed_at", TS, "when it was committed"),
            ),
            key="batch",
        ),
    )
}
COMMITS = "decision_commits"
