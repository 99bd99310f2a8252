"""The gate: a table of checks over observed values, and a decision by precedence (first failing check wins).

``CHECK_TABLE`` is the one statement of the gate's rules: each check's conditions (observed metric,
operator, threshold key), how they combine, the decision it makes when it is the first to fail, and the
sentence that explains its outcome. ``judge`` runs the table over one spike run; ``observed_values`` gives
the metric values the table names, so another evaluator (SQL over the evidence tables) can apply the same
table column by column without restating a rule. A new check is one entry.

A check may be optional (``enabled_by``): it runs only where the setting it names is on (a number, or true),
and a verdict, a report and the stored check rows hold only the checks that ran, so a spike run judged under
the spec's thresholds gets the spec's checks and nothing else.
"""

from __future__ import annotations

from functools import lru_cache

from maml_evidence.gate.metrics import GateInputs, extra_gpu_cost_usd, saturated
from maml_evidence.gate.record import TYPE_CHECKING, Record
from maml_evidence.gate.thresholds import THRESHOLD_KEYS, Thresholds

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    # A check's sentence: (passed, shown values, comparisons) -> text; see CheckSpec.
    Explain = Callable[[bool, Mapping[str, str], Mapping[str, str]], str]

ENABLE = "enable_maml"
ALL, ANY = "all", "any"
# The comparison shown in a sentence for each operator: (when the condition holds, when it does not).
GLYPHS = {">=": (">=", "<"), "<=": ("<=", ">"), "<": ("<", ">=")}
# The direction that passes, per operator: a condition's margin is sign * (observed - threshold), in the threshold's
# unit (positive: passed with that much room; negative: failed by that much).
MARGIN_SIGN = {">=": 1.0, "<=": -1.0, "<": -1.0}
# Values shown as percentages in sentences (fractions: 0.25 reads "25%").
FRACTIONS = frozenset({"relative_step_reduction", "min_relative_step_reduction"})
# Observed values that are names, shown as given ("none" when there is none).
LABELS = ("worst_accuracy_project",)
# How a sentence shows a value that is not there: a statistic not measured, or undefined for this run.
UNDEFINED = "undefined"
# Limits that are not settings: fixed by the definition of strong evidence (issue 11), shown like thresholds.
FIXED_LIMITS: dict[str, float] = {"significance_level": 0.05, "unreached_projects_allowed": 0.0}


class ConditionSpec(Record):
    """One comparison of a check: ``observed_values()[metric] <operator> thresholds.<threshold_key>``.

    ``threshold_key`` names a threshold or one of ``FIXED_LIMITS``. An observed value that is not there
    (None: a statistic not measured or undefined) fails the comparison.
    """

    metric: str
    operator: str  # ">=", "<=" or "<"
    threshold_key: str


class CheckSpec(Record):
    """One gate check: its conditions, how they combine, its decision when first to fail, its sentence.

    ``combine`` is ``"all"`` (every condition must hold) or ``"any"`` (one is enough). ``explain`` writes the
    sentence for an outcome: ``explain(passed, shown, cmp)``, where ``shown`` holds every observed value,
    threshold and ``gpu_hour_usd`` as text (``show_number``) and ``cmp`` each condition's comparison as it
    came out, by metric (``>=`` or ``<`` for a ``>=`` condition, ``<=`` or ``>`` for a ``<=`` one).
    ``enabled_by``, when set, names the setting that switches the check on (see the module's docstring).
    """

    name: str
    conditions: tuple[ConditionSpec, ...]
    combine: str
    on_fail: str
    explain: Explain
    enabled_by: str | None = None


def _enough_projects(passed: bool, v: Mapping[str, str], cmp: Mapping[str, str]) -> str:
    if passed:
        return f"{v['common_project_count']} common projects meet the minimum of {v['min_projects']}."
    return f"Only {v['common_project_count']} common projects; the gate needs at least {v['min_projects']}."


def _adaptation_triggered(passed: bool, v: Mapping[str, str], cmp: Mapping[str, str]) -> str:
    observed = (
        f"mean {v['baseline_mean_steps']} steps {cmp['baseline_mean_steps']} trigger {v['trigger_mean_steps']}, "
        f"max {v['baseline_max_steps']} steps {cmp['baseline_max_steps']} trigger {v['trigger_max_steps']}"
    )
    if passed:
        return f"LoRA-only adaptation is slow enough to need help ({observed})."
    return f"LoRA-only adaptation is already fast enough ({observed})."


def _effectiveness_ok(passed: bool, v: Mapping[str, str], cmp: Mapping[str, str]) -> str:
    observed = (
        f"mean reduction {v['mean_step_reduction']} steps {cmp['mean_step_reduction']} "
        f"{v['min_mean_step_reduction']}, relative {v['relative_step_reduction']} "
        f"{cmp['relative_step_reduction']} {v['min_relative_step_reduction']}"
    )
    if passed:
        return f"MAML reduces adaptation steps enough ({observed})."
    return f"MAML does not reduce adaptation steps enough ({observed})."


def _accuracy_ok(passed: bool, v: Mapping[str, str], cmp: Mapping[str, str]) -> str:
    regression, allowed = v["mean_accuracy_regression_pp"], v["max_mean_accuracy_regression_pp"]
    if passed:
        return f"Mean final-accuracy regression {regression} pp is within the allowed {allowed} pp."
    return f"MAML lowers mean final accuracy by {regression} pp, more than the allowed {allowed} pp."


def _cost_ok(passed: bool, v: Mapping[str, str], cmp: Mapping[str, str]) -> str:
    observed = (
        f"+{v['extra_training_minutes']} training minutes: overhead {v['training_overhead_pct']}% "
        f"{cmp['training_overhead_pct']} {v['max_training_overhead_pct']}%, "
        f"${v['extra_gpu_cost_usd_per_run']} per run at ${v['gpu_hour_usd']}/GPU-hour "
        f"{cmp['extra_gpu_cost_usd_per_run']} ${v['max_extra_gpu_cost_usd_per_run']}"
    )
    if passed:
        return f"MAML's extra training cost is within budget ({observed})."
    return f"MAML's extra training cost exceeds the budget ({observed})."


def _project_accuracy_ok(passed: bool, v: Mapping[str, str], cmp: Mapping[str, str]) -> str:
    project, regression = v["worst_accuracy_project"], v["worst_project_accuracy_regression_pp"]
    allowed = v["max_project_accuracy_regression_pp"]
    if passed:
        return (
            f"The worst project, {project}, loses {regression} pp of final accuracy, "
            f"within the {allowed} pp allowed per project."
        )
    return (
        f"MAML lowers final accuracy on {project} by {regression} pp, "
        f"more than the {allowed} pp allowed for any one project."
    )


def _evidence_strength(passed: bool, v: Mapping[str, str], cmp: Mapping[str, str]) -> str:
    p_value, alpha, bound = v["step_reduction_p_value"], v["significance_level"], v["upper95_regression_pp"]
    allowed, unreached = v["max_mean_accuracy_regression_pp"], v["candidate_unreached_projects"]
    if passed:
        return (
            f"The evidence is strong: step-reduction p = {p_value} < {alpha}, accuracy upper 95% bound "
            f"{bound} pp <= {allowed} pp, and the candidate reached every target."
        )
    return (
        "The policy requires strong evidence before enabling MAML, and this run's is not strong: "
        f"step-reduction p = {p_value} (the larger of the t-test's and the sign-flip test's; needs < {alpha}), "
        f"upper 95% bound of the accuracy regression = {bound} (needs <= {allowed} pp), "
        f"{unreached} candidate project(s) short of target (needs {v['unreached_projects_allowed']})."
    )


CHECK_TABLE: tuple[CheckSpec, ...] = (
    CheckSpec(
        "enough_projects",
        (ConditionSpec("common_project_count", ">=", "min_projects"),),
        ALL,
        "collect_more_evidence",
        _enough_projects,
    ),
    CheckSpec(
        "adaptation_triggered",
        (
            ConditionSpec("baseline_mean_steps", ">=", "trigger_mean_steps"),
            ConditionSpec("baseline_max_steps", ">=", "trigger_max_steps"),
        ),
        ANY,
        "defer_maml_fast_enough",
        _adaptation_triggered,
    ),
    CheckSpec(
        "effectiveness_ok",
        (
            ConditionSpec("mean_step_reduction", ">=", "min_mean_step_reduction"),
            ConditionSpec("relative_step_reduction", ">=", "min_relative_step_reduction"),
        ),
        ALL,
        "defer_maml_low_effect",
        _effectiveness_ok,
    ),
    CheckSpec(
        "accuracy_ok",
        (ConditionSpec("mean_accuracy_regression_pp", "<=", "max_mean_accuracy_regression_pp"),),
        ALL,
        "defer_maml_accuracy_penalty",
        _accuracy_ok,
    ),
    CheckSpec(
        "project_accuracy_ok",
        (ConditionSpec("worst_project_accuracy_regression_pp", "<=", "max_project_accuracy_regression_pp"),),
        ALL,
        "defer_maml_accuracy_penalty",
        _project_accuracy_ok,
        enabled_by="max_project_accuracy_regression_pp",
    ),
    CheckSpec(
        "cost_ok",
        (
            ConditionSpec("training_overhead_pct", "<=", "max_training_overhead_pct"),
            ConditionSpec("extra_gpu_cost_usd_per_run", "<=", "max_extra_gpu_cost_usd_per_run"),
        ),
        ALL,
        "defer_maml_cost_too_high",
        _cost_ok,
    ),
    # Last: it only ever turns an enable_maml into collect_more_evidence. Its conditions are what "strong
    # evidence" means; maml_evidence.strength grades by the same conditions (``strong_evidence``).
    CheckSpec(
        "evidence_strength",
        (
            ConditionSpec("step_reduction_p_value", "<", "significance_level"),
            ConditionSpec("upper95_regression_pp", "<=", "max_mean_accuracy_regression_pp"),
            ConditionSpec("candidate_unreached_projects", "<=", "unreached_projects_allowed"),
        ),
        ALL,
        "collect_more_evidence",
        _evidence_strength,
        enabled_by="require_strong_evidence",
    ),
)
EVIDENCE_CHECK = CHECK_TABLE[-1]
_COMBINE = {spec.name: spec.combine for spec in CHECK_TABLE}
# Checks in precedence order, with the decision each one produces when it is the first to fail.
CHECKS: tuple[tuple[str, str], ...] = tuple((spec.name, spec.on_fail) for spec in CHECK_TABLE)
CHECK_NAMES: tuple[str, ...] = tuple(name for name, _ in CHECKS)
# The spec's checks: the ones that always run (the others are optional guards, see ``CheckSpec.enabled_by``).
SPEC_CHECK_NAMES: tuple[str, ...] = tuple(spec.name for spec in CHECK_TABLE if spec.enabled_by is None)
DECISIONS: tuple[str, ...] = tuple(dict.fromkeys((ENABLE, *(decision for _, decision in CHECKS))))


class Condition(Record):
    """One comparison inside a check: observed metric, operator, threshold."""

    check: str
    metric: str
    observed: float | None  # None: a statistic not measured or undefined (the condition fails)
    operator: str
    threshold: float
    threshold_key: str
    passed: bool
    margin: float | None  # MARGIN_SIGN[operator] * (observed - threshold); None where observed is not there

    @property
    def relative_margin(self) -> float | None:
        """The margin as a share of the threshold (the margin itself against a threshold of 0)."""
        if self.margin is None:
            return None
        return saturated(self.margin / abs(self.threshold)) if self.threshold else self.margin


class CheckResult(Record):
    """A check's outcome, its conditions, and a sentence stating observed numbers against thresholds."""

    name: str
    passed: bool
    conditions: tuple[Condition, ...]
    reason: str

    @property
    def closest(self) -> Condition | None:
        """The condition that says how close the check came to the other outcome: the smallest relative margin of an
        "all" check, the largest of an "any" one (None when a condition it needs is not there)."""
        found = _closest(self)
        return None if found is None else found[0]

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

    def closest_call(self) -> Condition | None:
        """Of the checks that ran, the condition closest to the other outcome, relative to its threshold."""
        best, best_size = None, 0.0
        for check in self.checks:
            found = _closest(check)
            if found is not None and (best is None or abs(found[1]) < best_size):
                best, best_size = found[0], abs(found[1])
        return best

    def flags(self) -> dict[str, bool]:
        return {check.name: check.passed for check in self.checks}

    @property
    def reasons(self) -> list[str]:
        """Failing checks in precedence order (the decisive one first); all checks when MAML is enabled."""
        failing = [check.reason for check in self.checks if not check.passed]
        return failing or [check.reason for check in self.checks]


def _closest(check: CheckResult) -> tuple[Condition, float] | None:
    """``CheckResult.closest`` and its relative margin, in one pass (every report asks it of every check)."""
    either = _COMBINE.get(check.name) == ANY
    best: Condition | None = None
    best_relative = 0.0
    for c in check.conditions:
        margin = c.margin
        if margin is None:
            if either:
                continue
            return None  # an "all" check whose condition is not there has no margin
        threshold = c.threshold
        relative = saturated(margin / abs(threshold)) if threshold else margin
        if best is None or (relative > best_relative if either else relative < best_relative):
            best, best_relative = c, relative
    return None if best is None else (best, best_relative)


def flip_cause(old_failed: str | None, new_failed: str | None) -> str | None:
    """The check that made a decision change: whichever of the old and new deciding checks comes first.

    A check that newly fails (new_failed earlier) or newly passes (old_failed earlier) is what moved it.
    """
    if old_failed == new_failed:
        return None
    order = {name: index for index, name in enumerate(CHECK_NAMES)}
    candidates = [c for c in (old_failed, new_failed) if c is not None]
    return min(candidates, key=order.__getitem__)


def values_shown(check: CheckSpec) -> tuple[str, ...]:
    """Every value the check's sentences show (either outcome), found by calling ``explain`` with a recorder."""

    class _Recorder(dict[str, str]):
        def __missing__(self, name: str) -> str:
            if name not in names:
                names.append(name)
            return ""

    names: list[str] = []
    for passed in (True, False):
        check.explain(passed, _Recorder(), _Recorder())
    return tuple(names)


def fmt(value: float) -> str:
    """A number for people: at most four decimals, no trailing zeros."""
    return trimmed(f"{value:.4f}")


def trimmed(fixed: str) -> str:
    """``fmt`` of a number already written with four decimals (``f"{value:.4f}"``)."""
    text = fixed.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def pct(fraction: float) -> str:
    return f"{fmt(fraction * 100)}%"


def show_number(name: str, value: float | None, fixed: str | None = None) -> str:
    """How a sentence shows a value: fractions as percentages, everything else as a plain number.

    ``fixed``, when the caller has it already, is ``f"{value:.4f}"``. A value that is not there shows
    ``UNDEFINED``; a switch (``require_strong_evidence``) shows true or false.
    """
    if value is None:
        return UNDEFINED
    if value is True or value is False:
        return "true" if value else "false"
    if name in FRACTIONS:
        return pct(value)
    return trimmed(f"{value:.4f}" if fixed is None else fixed)


@lru_cache(maxsize=64)
def _shown_settings(values: tuple[float, ...]) -> dict[str, str]:
    """The thresholds (in ``THRESHOLD_KEYS`` order), ``FIXED_LIMITS`` and then the GPU price, as sentences show them.

    Cached: every spike run judged under one policy shows the same settings, and formatting them is a
    fair part of judging one. The caller must not change the returned dict.
    """
    keys = (*THRESHOLD_KEYS, *FIXED_LIMITS)
    shown = {key: show_number(key, value) for key, value in zip(keys, values[:-1], strict=True)}
    shown["gpu_hour_usd"] = fmt(values[-1])
    return shown


class _Plan(Record):
    """What judging under one set of thresholds needs: the checks that run, the observed values and labels
    their sentences show, and the limits their conditions compare with (thresholds and ``FIXED_LIMITS``;
    callers must not change the dict)."""

    checks: tuple[CheckSpec, ...]
    shown: tuple[str, ...]
    labels: tuple[str, ...]
    limits: dict[str, Any]


@lru_cache(maxsize=64)
def plan(thresholds: Thresholds) -> _Plan:
    """The checks that run under these thresholds (see ``CheckSpec.enabled_by``) and the values they show.

    Cached: every spike run judged under one policy runs the same checks.
    """
    limits: dict[str, Any] = {**thresholds.as_dict(), **FIXED_LIMITS}
    checks = tuple(c for c in CHECK_TABLE if c.enabled_by is None or _switched_on(limits[c.enabled_by]))
    shown: list[str] = []
    for check in checks:
        for name in (*(c.metric for c in check.conditions), *values_shown(check)):
            if name not in shown and (name in _OBSERVED or name in LABELS):
                shown.append(name)
    labels = tuple(name for name in shown if name in LABELS)
    return _Plan(checks, tuple(name for name in shown if name not in LABELS), labels, limits)


def _switched_on(setting: object) -> bool:
    """Whether a setting switches its optional check on: a number (0 too) or true; not null or false."""
    return setting is not None and setting is not False


def fixed_texts(observed: Mapping[str, float | None], names: tuple[str, ...]) -> dict[str, str | None]:
    """Each named observed value written with four decimals (``f"{value:.4f}"``); None where it is not there.

    The one conversion a judged run's numbers go through: sentences trim this text, the report reads its
    rounding back from it.
    """
    return {name: None if (value := observed[name]) is None else f"{value:.4f}" for name in names}


def observed_values(inputs: GateInputs, gpu_hour_usd: float) -> dict[str, float | None]:
    """Every value a check may name: the gate inputs and the run's extra GPU cost at this price.

    Labels (``LABELS``) are text: a sentence shows them as given; no condition compares them.
    """
    observed: dict[str, Any] = inputs.as_dict()
    observed["extra_gpu_cost_usd_per_run"] = extra_gpu_cost_usd(inputs.extra_training_minutes, gpu_hour_usd)
    return observed


def _run_check(
    spec: CheckSpec, observed: Mapping[str, float | None], limits: Mapping[str, Any], shown: Mapping[str, str]
) -> CheckResult:
    """One check over one spike run: every condition, combined, and the sentence for the outcome."""
    every = spec.combine == ALL
    passed = every
    conditions: list[Condition] = []
    cmp: dict[str, str] = {}
    for condition in spec.conditions:
        metric, operator, key = condition.metric, condition.operator, condition.threshold_key
        value, threshold = observed[metric], limits[key]
        if value is None:
            holds = False
        elif operator == ">=":
            holds = value >= threshold
        else:
            holds = value <= threshold if operator == "<=" else value < threshold
        passed = (passed and holds) if every else (passed or holds)
        cmp[metric] = GLYPHS[operator][0 if holds else 1]
        margin = None if value is None else MARGIN_SIGN[operator] * (value - threshold)
        conditions.append(Condition._make((spec.name, metric, value, operator, float(threshold), key, holds, margin)))
    return CheckResult._make((spec.name, passed, tuple(conditions), spec.explain(passed, shown, cmp)))


def judge(inputs: GateInputs, thresholds: Thresholds, gpu_hour_usd: float) -> Verdict:
    """Run every check of ``CHECK_TABLE`` (each is always computed) and pick the decision by precedence."""
    return judge_observed(observed_values(inputs, gpu_hour_usd), thresholds, gpu_hour_usd)


def judge_observed(
    observed: Mapping[str, float | None],
    thresholds: Thresholds,
    gpu_hour_usd: float,
    fixed: Mapping[str, str | None] | None = None,
) -> Verdict:
    """``judge`` over values already taken by ``observed_values`` (the report shows the same values).

    ``fixed``, when given, is ``fixed_texts`` of the observed values this run's sentences show (``plan``'s
    ``shown``): the report rounds from the same text, so each value is converted once.
    """
    run = plan(thresholds)
    shown = _shown(observed, run, gpu_hour_usd, fixed or fixed_texts(observed, run.shown))
    limits = run.limits
    checks = tuple([_run_check(spec, observed, limits, shown) for spec in run.checks])
    decision, failed = ENABLE, None
    for spec, check in zip(run.checks, checks, strict=True):
        if not check.passed:
            decision, failed = spec.on_fail, spec.name
            break
    return Verdict(decision, failed, checks, observed["extra_gpu_cost_usd_per_run"], gpu_hour_usd)  # type: ignore[arg-type]


def evidence_check(inputs: GateInputs, thresholds: Thresholds) -> CheckResult:
    """The ``evidence_strength`` check's outcome whether or not the policy requires it: whether evidence is strong.

    Strong evidence is this check's conditions, one statement for the gate, the evidence grade and the Dagster
    check that shows it.
    """
    observed = observed_values(inputs, 0.0)  # the price plays no part in it
    required = Thresholds(**{**thresholds.as_dict(), str(EVIDENCE_CHECK.enabled_by): True})
    run = plan(required)
    shown = _shown(observed, run, 0.0, fixed_texts(observed, run.shown))
    return _run_check(EVIDENCE_CHECK, observed, run.limits, shown)


def _shown(
    observed: Mapping[str, Any], run: _Plan, gpu_hour_usd: float, fixed: Mapping[str, str | None]
) -> dict[str, str]:
    """Every value a run's sentences show, as text: observed values, labels, thresholds and the price."""
    shown = {name: show_number(name, observed[name], text) for name, text in fixed.items()}
    shown.update(_shown_settings((*run.limits.values(), gpu_hour_usd)))
    for label in run.labels:
        shown[label] = str(observed.get(label) or "none")
    return shown


# Observed values a condition or sentence may name (labels are shown as given, not formatted as numbers).
_OBSERVED = frozenset(name for name in (*GateInputs._fields, "extra_gpu_cost_usd_per_run") if name not in LABELS)
