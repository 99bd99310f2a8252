"""How sure is each decision: the statistics of a judged spike run (issue 11).

The gate decides on point estimates; this module measures how far those estimates can be trusted: a paired
t-interval and two one-sided tests of the step reduction, the number of projects a test would need, and one-sided
bounds of the accuracy regression against the policy's limit. It reads the gate's ``GateMetrics`` and ``Verdict``.
It changes no decision by itself: ``evaluate_with_evidence`` measures first and hands the gate the two figures its
optional ``evidence_strength`` check judges (a policy that sets ``require_strong_evidence``), and the grade's
``strong`` is that same check.

scipy (and numpy, which it brings) is imported inside the functions, never at module level: the gate core and
``maml-feasibility-gate`` stay standard-library only, and importing this module costs nothing until a figure is
computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from maml_evidence.gate import GateInputs, GateMetrics, Verdict, compute_metrics, effective_settings
from maml_evidence.gate.decision import FIXED_LIMITS, evidence_check, fmt
from maml_evidence.gate.payload import sample_sd
from maml_evidence.gate.report import _r, judge_metrics, render_interpretation
from maml_evidence.pictures import EFFECTS_FILE

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from maml_evidence.gate import SpikePayload, Thresholds
    from maml_evidence.gate.metrics import ArmSummary, ProjectComparison

ALPHA = FIXED_LIMITS["significance_level"]  # one-sided tests and the two-sided interval's complement
POWER_TARGET = 0.8
POWER_MAX_PROJECTS = 10_000
EXACT_MAX_PROJECTS = 20  # 2**20 sign assignments, about 8 MB of sums
MONTE_CARLO_DRAWS = 100_000
MONTE_CARLO_SEED = 141
STRONG, SUGGESTIVE, INSUFFICIENT = "strong", "suggestive", "insufficient"
# Not strong, but these checks pass on their point estimates: suggestive.
SUGGESTIVE_CHECKS = ("effectiveness_ok", "accuracy_ok")
NON_INFERIOR, INCONCLUSIVE, INFERIOR = "non_inferior", "inconclusive", "inferior"


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def sign_flip_p_value(
    differences: Sequence[float], *, seed: int = MONTE_CARLO_SEED, draws: int = MONTE_CARLO_DRAWS
) -> tuple[float, bool]:
    """One-sided sign-flip permutation p of mean(d) > 0, and whether it is exact.

    Exact (n <= 20): the fraction of all 2^n sign assignments whose mean is >= the observed one, the observed
    assignment included. Ties are judged with a tolerance of 1e-9 of sum(|d|), as sums taken in different orders
    differ in their last bits. Above 20 projects: ``draws`` seeded random assignments, p = (hits + 1) / (draws + 1)
    (the observed assignment counted once), so the same payload always gets the same p.
    """
    import numpy as np

    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n == 0:
        return 1.0, True
    observed = math.fsum(differences)
    tolerance = 1e-9 * math.fsum(abs(v) for v in differences)
    if n <= EXACT_MAX_PROJECTS:
        sums = np.zeros(1)
        for value in d:  # every signed sum, doubling once per project
            sums = np.concatenate((sums + value, sums - value))
        hits = int(np.count_nonzero(sums >= observed - tolerance))
        return hits / len(sums), True
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)  # bounded memory whatever the project count
    hits, done = 0, 0
    while done < draws:
        size = min(chunk, draws - done)
        signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(signs @ d >= observed - tolerance))
        done += size
    return (hits + 1) / (draws + 1), False


def _power(ks: object, effect: float, sd: float) -> object:
    import numpy as np
    from scipy import stats

    ks = np.asarray(ks, dtype=float)
    return 1.0 - stats.nct.cdf(stats.t.ppf(1 - ALPHA, ks - 1), ks - 1, effect * np.sqrt(ks) / sd)


def projects_for_power(effect: float, sd: float, target: float = POWER_TARGET) -> int | None:
    """Smallest k in 2..10,000 whose one-sided paired t-test at 5% detects ``effect`` with ``target`` power.

    power(k) = 1 - nct.cdf(t.ppf(0.95, k - 1), k - 1, effect * sqrt(k) / sd). Blocks of k are scanned in order
    (2-16, then growing fourfold), so the first k found is the smallest by definition and a small answer costs a
    few evaluations, not ten thousand. None when no such k exists in range, the effect is not positive, or sd is 0.
    """
    import numpy as np

    if not (effect > 0 and sd > 0 and math.isfinite(effect / sd)):
        return None
    low, size = 2, 15
    while low <= POWER_MAX_PROJECTS:
        ks = np.arange(low, min(low + size, POWER_MAX_PROJECTS + 1))
        reached = np.flatnonzero(np.asarray(_power(ks, effect, sd)) >= target)
        if len(reached):
            return int(ks[reached[0]])
        low, size = low + size, size * 4
    return None


@dataclass(frozen=True)
class Figures:
    """The policy-independent statistics of one spike run: what ``measure`` computes once per payload revision."""

    names: list[str]
    b: list[float]  # baseline steps to target per common project
    d: list[float]  # step reductions d_i = b_i - c_i
    r: list[float]  # final-accuracy regressions (pp), baseline minus candidate, unclipped
    mean_d: float | None
    sd_d: float | None
    mean_b: float | None
    ci_low: float | None
    ci_high: float | None
    t_p: float | None
    flip_p: float | None
    exact: bool
    mean_r: float | None
    upper: float | None
    lower: float | None
    why: tuple[str, ...]  # what is undefined, and why (for grade_reason)

    @property
    def step_reduction_p_value(self) -> float | None:
        """What strong evidence asks to be below 0.05: the larger of the two one-sided p-values."""
        return None if self.t_p is None or self.flip_p is None else max(self.t_p, self.flip_p)


def regressions(rows: Sequence[ProjectComparison]) -> list[float]:
    """Each common project's final-accuracy regression (pp): baseline minus candidate, unclipped."""
    return [row.baseline_final_accuracy_pp - row.candidate_final_accuracy_pp for row in rows]


def measure(metrics: GateMetrics) -> Figures:
    """The paired tests, interval and accuracy bounds of a spike run (scipy); no threshold plays a part."""
    import warnings

    from scipy import stats

    rows = metrics.per_project
    n = len(rows)
    b = [row.baseline_steps_to_target for row in rows]
    c = [row.candidate_steps_to_target for row in rows]
    d = [row.step_reduction for row in rows]
    r = regressions(rows)
    why: list[str] = []
    sd_d = sample_sd(d) if n >= 2 else None
    ci_low = ci_high = t_p = None
    if n >= 2 and sd_d:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            interval = stats.ttest_rel(b, c).confidence_interval(1 - ALPHA)
            ci_low, ci_high = _finite(interval.low), _finite(interval.high)
            t_p = _finite(stats.ttest_rel(b, c, alternative="greater").pvalue)
    elif n < 2:
        why.append(f"{n} project{'' if n == 1 else 's'} leave{'s' if n == 1 else ''} no spread to measure")
    else:
        why.append("every project's step reduction is the same, so the t-based figures are undefined")
    flip_p, exact = sign_flip_p_value(d) if n else (None, True)
    mean_r = _mean(r) if n else None
    sd_r = sample_sd(r) if n >= 2 else None
    upper = lower = None
    if n >= 2 and sd_r and mean_r is not None:
        half = float(stats.t.ppf(1 - ALPHA, n - 1)) * sd_r / math.sqrt(n)
        upper, lower = mean_r + half, mean_r - half
    elif n >= 2:
        why.append("every project's accuracy regression is the same, so its bounds are undefined")
    return Figures(
        [row.project for row in rows],
        b,
        d,
        r,
        _mean(d) if n else None,
        sd_d,
        _mean(b) if n else None,
        ci_low,
        ci_high,
        t_p,
        flip_p,
        exact,
        mean_r,
        upper,
        lower,
        tuple(why),
    )


def with_statistics(metrics: GateMetrics, figures: Figures) -> GateMetrics:
    """``metrics`` whose gate inputs carry the figures the ``evidence_strength`` check judges."""
    return GateMetrics(**{**metrics.as_dict(), "inputs": measured_inputs(metrics.inputs, figures)})


def measured_inputs(inputs: GateInputs, figures: Figures) -> GateInputs:
    """The gate inputs with the two figures the ``evidence_strength`` check judges."""
    values = inputs.as_dict()
    values["step_reduction_p_value"] = figures.step_reduction_p_value
    values["upper95_regression_pp"] = figures.upper
    return GateInputs(**values)


class Judged(NamedTuple):
    """A payload judged with its statistics: metrics (inputs measured), verdict, report (with its rounded
    ``evidence`` section) and the unrounded section."""

    metrics: GateMetrics
    verdict: Verdict
    report: dict[str, object]
    evidence: dict[str, object]


def evaluate_with_evidence(payload: SpikePayload, policy: Mapping[str, float | int | None] | None = None) -> Judged:
    """The gate's decision with the statistics measured first, so a policy that requires strong evidence can
    judge it, and the report's ``evidence`` section (what ``maml-evidence gate`` and the pipeline write)."""
    plain = compute_metrics(payload)
    figures = measure(plain)
    metrics = with_statistics(plain, figures)
    verdict, report = judge_metrics(payload, metrics, policy, with_economics=True)
    settings = effective_settings(policy, payload.threshold_overrides, payload.cost_overrides)
    evidence = evidence_strength(metrics, verdict, settings.thresholds, figures)
    report["evidence"] = _rounded(evidence)
    return Judged(metrics, verdict, report, evidence)


def evidence_strength(
    metrics: GateMetrics, verdict: Verdict, thresholds: Thresholds, figures: Figures | None = None
) -> dict[str, object]:
    """The unrounded ``evidence`` section of a judged spike run (see the README, "How sure is each decision").

    ``figures``: ``measure(metrics)`` when the caller has it already. The grade's ``strong`` is the gate's
    ``evidence_strength`` check (``evidence_check``), whether or not the policy requires it.
    """
    f = figures if figures is not None else measure(metrics)
    rows = metrics.per_project
    n = len(rows)
    names, d, r = f.names, f.d, f.r
    min_relative = float(thresholds.min_relative_step_reduction)
    projects_needed = None
    if f.t_p is not None and f.sd_d:
        projects_needed = projects_for_power(min_relative * (f.mean_b or 0.0), f.sd_d)

    def relative(value: float | None) -> float | None:
        return value / f.mean_b if value is not None and f.mean_b else None

    strong = evidence_check(measured_inputs(metrics.inputs, f), thresholds)
    within_limit = next(c for c in strong.conditions if c.metric == "upper95_regression_pp").passed
    if within_limit:  # the upper bound is within the policy's limit: the check's own condition
        accuracy_verdict = NON_INFERIOR
    elif f.lower is not None and f.lower > float(thresholds.max_mean_accuracy_regression_pp):
        accuracy_verdict = INFERIOR
    else:
        accuracy_verdict = INCONCLUSIVE
    worst = max(range(n), key=lambda i: r[i], default=None)  # first of equals, in baseline order
    smallest = min(range(n), key=lambda i: d[i], default=None)

    evidence: dict[str, object] = {
        "projects": n,
        "step_reduction": {
            "per_project": dict(zip(names, d, strict=True)),
            "mean": f.mean_d,
            "sd": f.sd_d,
            "ci95_low": f.ci_low,
            "ci95_high": f.ci_high,
            "relative_ci95_low": relative(f.ci_low),
            "relative_ci95_high": relative(f.ci_high),
            "t_p_value": f.t_p,
            "sign_flip_p_value": f.flip_p,
            "sign_flip_exact": f.exact,
            "min_attainable_p_value": 2.0**-n if n else None,
            "projects_for_80pct_power": projects_needed,
            # beside the between-project sd above: each project's own spread over its seed replicates
            "within_project_sd": {
                "baseline": {row.project: row.baseline_steps_sd for row in rows if row.baseline_replicates >= 2},
                "candidate": {row.project: row.candidate_steps_sd for row in rows if row.candidate_replicates >= 2},
            },
        },
        "accuracy": {
            "per_project_regression_pp": dict(zip(names, r, strict=True)),
            "mean_regression_pp": f.mean_r,
            "upper95_regression_pp": f.upper,
            "lower95_regression_pp": f.lower,
            "verdict": accuracy_verdict,
            "worst_project": names[worst] if worst is not None else None,
            "worst_project_regression_pp": r[worst] if worst is not None else None,
        },
        "reach": {
            "baseline": _reach(metrics.baseline),
            "candidate": _reach(metrics.candidate),
            "missed_targets": list(metrics.missed_targets),
        },
        "smallest_gain_project": names[smallest] if smallest is not None else None,
    }
    max_regression = float(thresholds.max_mean_accuracy_regression_pp)
    evidence["grade"], evidence["grade_reason"] = _grade(
        evidence, strong.passed, verdict.flags(), max_regression, list(f.why)
    )
    return evidence


def project_effects(metrics: GateMetrics) -> list[dict[str, object]]:
    """Per common project: the step reduction, relative to the baseline's steps, and the accuracy regression."""
    return [
        {
            "project": row.project,
            "step_reduction": row.step_reduction,
            "relative_step_reduction": (
                row.step_reduction / row.baseline_steps_to_target if row.baseline_steps_to_target else None
            ),
            "accuracy_regression_pp": regression,
        }
        for row, regression in zip(metrics.per_project, regressions(metrics.per_project), strict=True)
    ]


def _reach(summary: ArmSummary) -> dict[str, object]:
    return {"unreached_projects": list(summary.unreached_projects), "reach_rate": summary.reach_rate}


def _grade(
    evidence: Mapping[str, object], strong: bool, flags: Mapping[str, bool], max_regression: float, why: list[str]
) -> tuple[str, str]:
    """The grade and its sentence; ``strong`` is the outcome of the gate's ``evidence_strength`` conditions."""
    step: Mapping[str, object] = evidence["step_reduction"]  # type: ignore[assignment]
    acc: Mapping[str, object] = evidence["accuracy"]  # type: ignore[assignment]
    n = int(evidence["projects"])  # type: ignore[call-overload]
    if n == 0:
        return INSUFFICIENT, "Insufficient: no project is in both runs, so there is nothing to measure."
    t_p, flip_p = step["t_p_value"], step["sign_flip_p_value"]
    p_text = f"t-test p = {_p(t_p)}, sign-flip p = {_p(flip_p)}"
    acc_text = f"accuracy {str(acc['verdict']).replace('_', '-')}" + (
        f" (upper 95% bound {fmt(float(acc['upper95_regression_pp']))} pp vs {fmt(max_regression)} pp allowed)"  # type: ignore[arg-type]
        if acc["upper95_regression_pp"] is not None
        else ""
    )
    both_significant = isinstance(t_p, float) and t_p < ALPHA and isinstance(flip_p, float) and flip_p < ALPHA
    unreached: list[str] = evidence["reach"]["candidate"]["unreached_projects"]  # type: ignore[index]
    if strong:
        return STRONG, f"Strong: over {n} projects {p_text}, both below 0.05, and {acc_text}."
    point_ok = all(flags.get(name, False) for name in SUGGESTIVE_CHECKS)
    shortfalls = []
    if not both_significant:
        shortfalls.append(f"{p_text}, not both below 0.05")
        if n and 2.0**-n >= ALPHA:
            shortfalls.append(f"with {n} projects the smallest possible p is {_p(2.0**-n)}")
    if acc["verdict"] != NON_INFERIOR:
        shortfalls.append(acc_text)
    if unreached:
        shortfalls.append(f"LoRA+MAML never reached the target on {_lower_bounds(unreached)}")
    shortfalls.extend(why)
    detail = "; ".join(shortfalls)
    if point_ok:
        return SUGGESTIVE, f"Suggestive: the point estimates pass the effectiveness and accuracy checks, but {detail}."
    failed = [name for name in SUGGESTIVE_CHECKS if not flags.get(name, False)]
    return INSUFFICIENT, f"Insufficient: {' and '.join(failed)} fail{'s' if len(failed) == 1 else ''}; {detail}."


def _lower_bounds(projects: Sequence[str]) -> str:
    """Projects that never reached their target, and what that makes their steps."""
    if len(projects) == 1:
        return f"{projects[0]}, so its steps are a lower bound"
    return f"{', '.join(projects)}, so their steps are lower bounds"


def _p_is(value: object) -> str:
    """The p-value as a phrase: "p = 0.0039", or "p < 0.0001" where four decimals round it to 0 (it is never 0)."""
    return "p < 0.0001" if value == 0 else f"p = {_p(value)}"


def _p(value: object) -> str:
    if not isinstance(value, float):
        return "undefined"
    return fmt(value) if value >= 0.0001 else f"{value:.2g}"


def _rounded(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return _r(value)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    raise TypeError(f"unexpected value in the evidence section: {value!r}")


def evidence_section(
    metrics: GateMetrics, verdict: Verdict, thresholds: Thresholds, figures: Figures | None = None
) -> dict[str, object]:
    """``evidence_strength`` rounded for reading as the report rounds every number (4 decimals)."""
    return _rounded(evidence_strength(metrics, verdict, thresholds, figures))  # type: ignore[return-value]


def render_evidence(report: Mapping[str, object]) -> str:
    """A plain-words Markdown paragraph on how sure the decision is; '' when the report has no statistics."""
    evidence = report.get("evidence")
    if not isinstance(evidence, dict) or "grade" not in evidence:
        return ""
    step, acc = evidence["step_reduction"], evidence["accuracy"]
    thresholds = report.get("thresholds") or {}
    assert isinstance(step, dict) and isinstance(acc, dict) and isinstance(thresholds, dict)
    n = int(evidence["projects"])
    words = [f"**How sure is this: {evidence['grade']}.**"]
    if n:
        words.append(
            f"Over {n} project{'s' if n != 1 else ''} MAML cut steps to target by {fmt(step['mean'])} on average"
            + (
                f" (95% interval {fmt(step['ci95_low'])} to {fmt(step['ci95_high'])}"
                + (
                    f", {_pct(step['relative_ci95_low'])} to {_pct(step['relative_ci95_high'])} of the baseline's mean"
                    if step["relative_ci95_low"] is not None
                    else ""
                )
                + ")"
                if step["ci95_low"] is not None
                else ""
            )
            + f"; the smallest gain was in {evidence['smallest_gain_project']}"
            f" ({fmt(step['per_project'][evidence['smallest_gain_project']])} steps)."
        )
        words.extend(_restricted_means(evidence.get("reach")))
        tests = [f"{_p_is(step['t_p_value'])} by a t-test"] if step["t_p_value"] is not None else []
        kind = "exact" if step["sign_flip_exact"] else "Monte Carlo"
        tests.append(f"{_p_is(step['sign_flip_p_value'])} by a sign-flip test ({kind})")
        words.append(f"If MAML had no effect, a cut this large would have {' and '.join(tests)}.")
    if n < 5:
        smallest = 2.0**-n
        words.append(
            f"With {n} project{'s' if n != 1 else ''} no effect can reach p < 0.05 "
            f"(the smallest possible p is {_p(smallest)})."
        )
    needed = step["projects_for_80pct_power"]
    relative = thresholds.get("min_relative_step_reduction")
    asked = f"the {_pct(float(relative))} reduction the policy asks for" if relative is not None else "the reduction"
    if needed is not None:
        words.append(f"About {needed} projects are needed to detect {asked} (80% power at the observed spread).")
    elif n >= 2:
        words.append(f"How many projects are needed to detect {asked} cannot be estimated from this run.")
    if acc["mean_regression_pp"] is not None:
        limit = thresholds.get("max_mean_accuracy_regression_pp")
        bounds = (
            f" (one-sided 95% bounds {fmt(acc['lower95_regression_pp'])} to {fmt(acc['upper95_regression_pp'])} pp)"
            if acc["upper95_regression_pp"] is not None
            else ""
        )
        verdict = {
            NON_INFERIOR: "no worse than the policy allows",
            INFERIOR: "worse than the policy allows",
            INCONCLUSIVE: "not shown to be within or beyond what the policy allows",
        }[str(acc["verdict"])]
        words.append(
            f"Final accuracy fell by {fmt(acc['mean_regression_pp'])} pp on average{bounds}"
            + (f" against {fmt(float(limit))} pp allowed" if limit is not None else "")
            + f": {verdict}; the worst project was {acc['worst_project']}"
            f" ({fmt(acc['worst_project_regression_pp'])} pp)."
        )
    words.append(str(evidence["grade_reason"]))
    return "\n" + " ".join(words) + "\n"


def _restricted_means(reach: object) -> list[str]:
    """Plain words on each arm's projects that never reached their target (nothing for reports without any)."""
    if not isinstance(reach, dict):
        return []
    short = []
    for side, label in (("baseline", "LoRA-only"), ("candidate", "LoRA+MAML")):
        arm = reach.get(side)
        if isinstance(arm, dict) and arm.get("unreached_projects"):
            projects = ", ".join(arm["unreached_projects"])
            short.append(f"for {label} on {projects} (reach rate {_pct(arm['reach_rate'])})")
    if not short:
        return []
    return [
        f"Some steps to target are lower bounds, where training stopped short of the target: {'; '.join(short)}.",
        "The means use them as given (restricted means); the true means can only be larger.",
    ]


def _pct(fraction: object) -> str:
    return f"{fmt(float(fraction) * 100)}%"  # type: ignore[arg-type]


def interpretation_with_evidence(report: Mapping[str, object], *, chart: bool = False) -> str:
    """``render_interpretation`` plus, when the report carries the statistics, the paragraph on how sure it is.

    ``chart``: the report's per-project chart (``pictures.py``) was written beside it, so it is linked here.
    """
    text = render_interpretation(report) + render_evidence(report)
    if chart:
        text += f"\n![Per-project effects]({EFFECTS_FILE})\n"
    return text
