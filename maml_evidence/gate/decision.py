"""The gate: five checks over ``GateInputs`` and a decision by fixed precedence (first failing check wins)."""

from __future__ import annotations

from maml_evidence.gate.metrics import GateInputs, extra_gpu_cost_usd
from maml_evidence.gate.record import Record
from maml_evidence.gate.thresholds import Thresholds

ENABLE = "enable_maml"
# Checks in precedence order, with the decision each one produces when it is the first to fail.
CHECKS: tuple[tuple[str, str], ...] = (
    ("enough_projects", "collect_more_evidence"),
    ("adaptation_triggered", "defer_maml_fast_enough"),
    ("effectiveness_ok", "defer_maml_low_effect"),
    ("accuracy_ok", "defer_maml_accuracy_penalty"),
    ("cost_ok", "defer_maml_cost_too_high"),
)
CHECK_NAMES: tuple[str, ...] = tuple(name for name, _ in CHECKS)
DECISIONS: tuple[str, ...] = (ENABLE, *(decision for _, decision in CHECKS))


class Condition(Record):
    """One comparison inside a check: observed metric, operator, threshold."""

    check: str
    metric: str
    observed: float
    operator: str
    threshold: float
    threshold_key: str
    passed: bool


class CheckResult(Record):
    """A check's outcome, its conditions, and a sentence stating observed numbers against thresholds."""

    name: str
    passed: bool
    conditions: tuple[Condition, ...]
    reason: str

    @property
    def decisive(self) -> Condition:
        """The condition that settled the check (first failing for 'all', first passing for 'any')."""
        wanted = [c for c in self.conditions if c.passed == self.passed]
        return wanted[0] if wanted else self.conditions[0]


class Verdict(Record):
    """The gate's answer for one spike run under one set of thresholds and one GPU price."""

    decision: str
    failed_check: str | None
    checks: tuple[CheckResult, ...]
    extra_gpu_cost_usd_per_run: float
    gpu_hour_usd: float

    @property
    def maml_recommended(self) -> bool:
        return self.decision == ENABLE

    def flags(self) -> dict[str, bool]:
        return {check.name: check.passed for check in self.checks}

    @property
    def reasons(self) -> list[str]:
        """Failing checks in precedence order (the decisive one first); all checks when MAML is enabled."""
        failing = [check.reason for check in self.checks if not check.passed]
        return failing or [check.reason for check in self.checks]


def flip_cause(old_failed: str | None, new_failed: str | None) -> str | None:
    """The check that made a decision change: whichever of the old and new deciding checks comes first.

    A check that newly fails (new_failed earlier) or newly passes (old_failed earlier) is what moved it.
    """
    if old_failed == new_failed:
        return None
    order = {name: index for index, name in enumerate(CHECK_NAMES)}
    candidates = [c for c in (old_failed, new_failed) if c is not None]
    return min(candidates, key=order.__getitem__)


def fmt(value: float) -> str:
    """A number for people: at most four decimals, no trailing zeros."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def pct(fraction: float) -> str:
    return f"{fmt(fraction * 100)}%"


def _cond(check: str, metric: str, observed: float, op: str, t: Thresholds, key: str) -> Condition:
    threshold = getattr(t, key)
    passed = observed >= threshold if op == ">=" else observed <= threshold
    return Condition(check, metric, observed, op, float(threshold), key, passed)


def judge(inputs: GateInputs, thresholds: Thresholds, gpu_hour_usd: float) -> Verdict:
    """Run all five checks (each is always computed) and pick the decision by precedence."""
    i, t = inputs, thresholds
    usd = extra_gpu_cost_usd(i.extra_training_minutes, gpu_hour_usd)

    c = _cond("enough_projects", "common_project_count", i.common_project_count, ">=", t, "min_projects")
    enough = CheckResult(
        "enough_projects",
        c.passed,
        (c,),
        f"{i.common_project_count} common projects meet the minimum of {t.min_projects}."
        if c.passed
        else f"Only {i.common_project_count} common projects; the gate needs at least {t.min_projects}.",
    )

    mean_c = _cond("adaptation_triggered", "baseline_mean_steps", i.baseline_mean_steps, ">=", t, "trigger_mean_steps")
    max_c = _cond("adaptation_triggered", "baseline_max_steps", i.baseline_max_steps, ">=", t, "trigger_max_steps")
    triggered = mean_c.passed or max_c.passed
    observed = (
        f"mean {fmt(i.baseline_mean_steps)} steps {'>=' if mean_c.passed else '<'} "
        f"trigger {fmt(t.trigger_mean_steps)}, "
        f"max {fmt(i.baseline_max_steps)} steps {'>=' if max_c.passed else '<'} trigger {fmt(t.trigger_max_steps)}"
    )
    trigger = CheckResult(
        "adaptation_triggered",
        triggered,
        (mean_c, max_c),
        f"LoRA-only adaptation is slow enough to need help ({observed})."
        if triggered
        else f"LoRA-only adaptation is already fast enough ({observed}).",
    )

    red_c = _cond("effectiveness_ok", "mean_step_reduction", i.mean_step_reduction, ">=", t, "min_mean_step_reduction")
    rel_c = _cond(
        "effectiveness_ok", "relative_step_reduction", i.relative_step_reduction, ">=", t, "min_relative_step_reduction"
    )
    effective = red_c.passed and rel_c.passed
    observed = (
        f"mean reduction {fmt(i.mean_step_reduction)} steps {'>=' if red_c.passed else '<'} "
        f"{fmt(t.min_mean_step_reduction)}, relative {pct(i.relative_step_reduction)} "
        f"{'>=' if rel_c.passed else '<'} {pct(t.min_relative_step_reduction)}"
    )
    effect = CheckResult(
        "effectiveness_ok",
        effective,
        (red_c, rel_c),
        f"MAML reduces adaptation steps enough ({observed})."
        if effective
        else f"MAML does not reduce adaptation steps enough ({observed}).",
    )

    acc_c = _cond(
        "accuracy_ok",
        "mean_accuracy_regression_pp",
        i.mean_accuracy_regression_pp,
        "<=",
        t,
        "max_mean_accuracy_regression_pp",
    )
    accuracy = CheckResult(
        "accuracy_ok",
        acc_c.passed,
        (acc_c,),
        f"Mean final-accuracy regression {fmt(i.mean_accuracy_regression_pp)} pp is within the allowed "
        f"{fmt(t.max_mean_accuracy_regression_pp)} pp."
        if acc_c.passed
        else f"MAML lowers mean final accuracy by {fmt(i.mean_accuracy_regression_pp)} pp, more than the allowed "
        f"{fmt(t.max_mean_accuracy_regression_pp)} pp.",
    )

    over_c = _cond("cost_ok", "training_overhead_pct", i.training_overhead_pct, "<=", t, "max_training_overhead_pct")
    usd_c = _cond("cost_ok", "extra_gpu_cost_usd_per_run", usd, "<=", t, "max_extra_gpu_cost_usd_per_run")
    cheap = over_c.passed and usd_c.passed
    observed = (
        f"+{fmt(i.extra_training_minutes)} training minutes: overhead {fmt(i.training_overhead_pct)}% "
        f"{'<=' if over_c.passed else '>'} {fmt(t.max_training_overhead_pct)}%, "
        f"${fmt(usd)} per run at ${fmt(gpu_hour_usd)}/GPU-hour {'<=' if usd_c.passed else '>'} "
        f"${fmt(t.max_extra_gpu_cost_usd_per_run)}"
    )
    cost = CheckResult(
        "cost_ok",
        cheap,
        (over_c, usd_c),
        f"MAML's extra training cost is within budget ({observed})."
        if cheap
        else f"MAML's extra training cost exceeds the budget ({observed}).",
    )

    results = (enough, trigger, effect, accuracy, cost)
    decision, failed = ENABLE, None
    for result, (_, on_fail) in zip(results, CHECKS, strict=True):
        if not result.passed:
            decision, failed = on_fail, result.name
            break
    return Verdict(decision, failed, results, usd, gpu_hour_usd)
