"""The evidence section (how sure a decision is) against scipy and brute force, and its edge cases."""

from __future__ import annotations

import itertools
import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from maml_evidence.gate import Thresholds, validate_payload
from maml_evidence.gate.report import _r, evaluate_payload
from maml_evidence.strength import (
    evidence_section,
    evidence_strength,
    interpretation_with_evidence,
    projects_for_power,
    render_evidence,
    sign_flip_p_value,
)
from maml_evidence_tests.gate.conftest import build_payload, minimal_payload
from maml_evidence_tests.generator import generate_payload

TIGHT = {"rel": 1e-9, "abs": 1e-9}


def strength_of(payload: dict) -> tuple[dict, dict]:
    """(unrounded evidence, report) of a payload."""
    metrics, verdict, report = evaluate_payload(validate_payload(payload))
    return evidence_strength(metrics, verdict, Thresholds(**report["thresholds"])), report


def brute_force_sign_flip(d: list[float]) -> float:
    """Every sign assignment enumerated, sums in exact arithmetic over the floats' values."""
    exact = [Fraction(v) for v in d]
    observed = sum(exact)
    hits = total = 0
    for signs in itertools.product((1, -1), repeat=len(d)):
        total += 1
        hits += sum(s * v for s, v in zip(signs, exact, strict=True)) >= observed
    return hits / total


def brute_force_projects(effect: float, sd: float) -> int | None:
    ks = np.arange(2, 10_001)
    power = 1 - stats.nct.cdf(stats.t.ppf(0.95, ks - 1), ks - 1, effect * np.sqrt(ks) / sd)
    reached = np.flatnonzero(power >= 0.8)
    return int(ks[reached[0]]) if len(reached) else None


def generated(count: int, seed: int = 11) -> list[dict]:
    rng = random.Random(seed)
    return [generate_payload(rng, f"strength-{i}") for i in range(count)]


@pytest.mark.parametrize("payload", generated(60), ids=lambda p: f"{p['spike_run_id']}-{p['intended_decision']}")
def test_figures_match_scipy_and_brute_force_on_generated_payloads(payload: dict):
    evidence, report = strength_of(payload)
    rows = report["comparison"]["per_project"]
    # the report's per-project rows are rounded; the statistics are checked on the exact inputs
    metrics, _, _ = evaluate_payload(validate_payload(payload))
    b = [row.baseline_steps_to_target for row in metrics.per_project]
    c = [row.candidate_steps_to_target for row in metrics.per_project]
    d = [x - y for x, y in zip(b, c, strict=True)]
    r = [row.baseline_final_accuracy_pp - row.candidate_final_accuracy_pp for row in metrics.per_project]
    n = len(d)
    assert evidence["projects"] == n == len(rows)
    step, acc = evidence["step_reduction"], evidence["accuracy"]
    assert step["per_project"] == dict(zip([row["project"] for row in rows], d, strict=True))
    assert step["sign_flip_exact"] is True
    if n == 0:
        assert step["mean"] is None and step["sign_flip_p_value"] is None and evidence["grade"] == "insufficient"
        return
    assert step["mean"] == pytest.approx(np.mean(d), **TIGHT)
    assert step["sign_flip_p_value"] == pytest.approx(brute_force_sign_flip(d), **TIGHT)
    assert step["min_attainable_p_value"] == 2.0**-n
    assert acc["mean_regression_pp"] == pytest.approx(np.mean(r), **TIGHT)
    assert acc["worst_project"] == rows[int(np.argmax(r))]["project"]
    assert evidence["smallest_gain_project"] == rows[int(np.argmin(d))]["project"]
    if n < 2 or len(set(d)) == 1:
        assert step["t_p_value"] is None and step["ci95_low"] is None and step["projects_for_80pct_power"] is None
    else:
        assert step["sd"] == pytest.approx(np.std(d, ddof=1), **TIGHT)
        interval = stats.ttest_rel(b, c).confidence_interval()
        assert step["ci95_low"] == pytest.approx(interval.low, **TIGHT)
        assert step["ci95_high"] == pytest.approx(interval.high, **TIGHT)
        assert step["relative_ci95_low"] == pytest.approx(interval.low / np.mean(b), **TIGHT)
        assert step["relative_ci95_high"] == pytest.approx(interval.high / np.mean(b), **TIGHT)
        assert step["t_p_value"] == pytest.approx(stats.ttest_rel(b, c, alternative="greater").pvalue, **TIGHT)
        effect = report["thresholds"]["min_relative_step_reduction"] * np.mean(b)
        assert step["projects_for_80pct_power"] == brute_force_projects(effect, float(np.std(d, ddof=1)))
    if n >= 2 and len(set(r)) > 1:
        upper = stats.ttest_1samp(r, 0.0, alternative="less").confidence_interval().high
        lower = stats.ttest_1samp(r, 0.0, alternative="greater").confidence_interval().low
        assert acc["upper95_regression_pp"] == pytest.approx(upper, **TIGHT)
        assert acc["lower95_regression_pp"] == pytest.approx(lower, **TIGHT)
        limit = report["thresholds"]["max_mean_accuracy_regression_pp"]
        expected = "non_inferior" if upper <= limit else "inferior" if lower > limit else "inconclusive"
        assert acc["verdict"] == expected
    strong = (
        step["t_p_value"] is not None
        and step["t_p_value"] < 0.05
        and step["sign_flip_p_value"] < 0.05
        and acc["verdict"] == "non_inferior"
    )
    point = report["checks"]["effectiveness_ok"] and report["checks"]["accuracy_ok"]
    assert evidence["grade"] == ("strong" if strong else "suggestive" if point else "insufficient")
    assert evidence["grade_reason"].startswith(evidence["grade"].capitalize() + ":")


def test_generated_payloads_reach_every_grade():
    grades = {strength_of(p)[0]["grade"] for p in generated(60)}
    assert grades == {"strong", "suggestive", "insufficient"}


def test_rounded_section_is_the_unrounded_one_rounded_and_strict_json():
    payload = generate_payload(random.Random(3), "round", "enable_maml")
    metrics, verdict, report = evaluate_payload(validate_payload(payload))
    raw = evidence_strength(metrics, verdict, Thresholds(**report["thresholds"]))
    shown = evidence_section(metrics, verdict, Thresholds(**report["thresholds"]))
    for part in ("step_reduction", "accuracy", "reach"):
        assert shown[part] == rounded(raw[part]), part
    json.dumps(shown, allow_nan=False)


def rounded(value: object) -> object:
    """Every float in nested dicts and lists rounded as the report rounds; the rest as it is."""
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return _r(value) if isinstance(value, float) else value


def test_no_common_project():
    payload = build_payload([8.0], [4.0], names=["only-here"])
    payload["candidate"]["per_project_adaptation"][0]["project"] = "elsewhere"
    evidence, _ = strength_of(payload)
    assert evidence["projects"] == 0
    assert evidence["step_reduction"]["mean"] is None
    assert evidence["step_reduction"]["min_attainable_p_value"] is None
    assert evidence["accuracy"]["verdict"] == "inconclusive"
    assert evidence["smallest_gain_project"] is None and evidence["accuracy"]["worst_project"] is None
    assert evidence["grade"] == "insufficient" and "no project" in evidence["grade_reason"]


def test_one_project_has_no_spread():
    evidence, _ = strength_of(build_payload([10.0], [4.0]))
    step = evidence["step_reduction"]
    assert step["mean"] == 6.0 and step["sd"] is None and step["t_p_value"] is None
    assert step["sign_flip_p_value"] == 0.5 and step["min_attainable_p_value"] == 0.5
    assert evidence["accuracy"]["upper95_regression_pp"] is None
    assert evidence["grade"] != "strong"
    assert "1 project leaves no spread" in evidence["grade_reason"]


def test_two_projects():
    evidence, _ = strength_of(build_payload([10.0, 12.0], [4.0, 5.0], candidate_final=[79.5, 79.9]))
    step = evidence["step_reduction"]
    assert step["sign_flip_p_value"] == 0.25 and step["t_p_value"] is not None
    assert step["ci95_low"] == pytest.approx(stats.ttest_rel([10, 12], [4, 5]).confidence_interval().low, **TIGHT)
    assert evidence["grade"] == "suggestive"  # the checks pass on their point estimates; 2 projects prove nothing


def test_equal_reductions_make_the_t_figures_undefined():
    evidence, _ = strength_of(build_payload([10.0, 11.0, 12.0, 13.0], [6.0, 7.0, 8.0, 9.0]))
    step = evidence["step_reduction"]
    assert step["sd"] == 0.0
    for key in ("ci95_low", "ci95_high", "relative_ci95_low", "relative_ci95_high", "t_p_value"):
        assert step[key] is None, key
    assert step["projects_for_80pct_power"] is None
    assert step["sign_flip_p_value"] == 1 / 16
    assert "step reduction is the same" in evidence["grade_reason"]
    # every accuracy the same too: its bounds are undefined, so non-inferiority is not shown
    assert evidence["accuracy"]["verdict"] == "inconclusive"
    assert "accuracy regression is the same" in evidence["grade_reason"]


def test_no_effect_at_all():
    evidence, _ = strength_of(build_payload([8.0, 8.0, 8.0], [8.0, 8.0, 8.0]))
    assert evidence["step_reduction"]["sign_flip_p_value"] == 1.0
    assert evidence["grade"] == "insufficient" and "effectiveness_ok" in evidence["grade_reason"]


def test_negative_effects_are_not_significant():
    evidence, _ = strength_of(build_payload([5.0, 6.0, 7.0, 5.0, 6.0, 8.0], [9.0, 10.0, 9.0, 12.0, 11.0, 10.0]))
    step = evidence["step_reduction"]
    assert step["mean"] < 0 and step["ci95_high"] < 0
    assert step["t_p_value"] > 0.99 and step["sign_flip_p_value"] == 1.0
    assert evidence["grade"] == "insufficient"


def test_sign_flip_counts_floating_ties_as_ties():
    # 0.1 + 0.2 - 0.3 is 5.55e-17 in floating point: flipping every sign gives -5.55e-17, a tie in exact terms
    d = [1.1 - 1.0, 1.2 - 1.0, 0.7 - 1.0]
    decimal = [Fraction(1, 10), Fraction(2, 10), Fraction(-3, 10)]
    observed = sum(decimal)
    expected = (
        sum(
            sum(s * v for s, v in zip(signs, decimal, strict=True)) >= observed
            for signs in itertools.product((1, -1), repeat=3)
        )
        / 8
    )
    assert sign_flip_p_value(d) == (expected, True)
    assert expected == 0.625  # without the tolerance, (-,-,-) at -5.55e-17 would be missed: 0.5


def test_more_than_twenty_projects_use_seeded_monte_carlo():
    rng = random.Random(21)
    base = [float(rng.randint(6, 16)) for _ in range(21)]
    cand = [b - rng.choice((-2.0, -1.0, 0.0, 1.0, 2.0, 3.0)) for b in base]
    evidence, _ = strength_of(build_payload(base, cand))
    again, _ = strength_of(build_payload(base, cand))
    step = evidence["step_reduction"]
    assert step["sign_flip_exact"] is False
    assert step["sign_flip_p_value"] == again["step_reduction"]["sign_flip_p_value"]  # reproducible
    d = np.array([b - c for b, c in zip(base, cand, strict=True)])
    sums = np.zeros(1)
    for value in d:
        sums = np.concatenate((sums + value, sums - value))
    exact = np.count_nonzero(sums >= d.sum() - 1e-9) / len(sums)
    assert step["sign_flip_p_value"] == pytest.approx(exact, abs=0.01)  # 100,000 draws: sd below 0.0016
    assert step["min_attainable_p_value"] == 2.0**-21
    assert sign_flip_p_value(list(d), seed=1) != sign_flip_p_value(list(d), seed=2) or exact in (0.0, 1.0)


def test_projects_for_power_scans_in_order():
    for effect, sd in [(1.0, 1.0), (0.3, 2.0), (2.5, 0.5), (0.05, 3.0), (0.001, 10.0)]:
        assert projects_for_power(effect, sd) == brute_force_projects(effect, sd), (effect, sd)
    assert projects_for_power(0.0, 1.0) is None
    assert projects_for_power(-1.0, 1.0) is None
    assert projects_for_power(1.0, 0.0) is None


def test_interpretation_says_how_many_projects_are_needed():
    payload = build_payload(
        [9.0, 8.0, 7.0, 10.0], [8.0, 5.0, 6.0, 9.0], candidate_final=[79.8, 79.6, 80.0, 79.9], meta=1.0
    )
    metrics, verdict, report = evaluate_payload(validate_payload(payload))
    report["evidence"] = evidence_section(metrics, verdict, Thresholds(**report["thresholds"]))
    text = render_evidence(report)
    assert "With 4 projects no effect can reach p < 0.05 (the smallest possible p is 0.0625)." in text
    needed = report["evidence"]["step_reduction"]["projects_for_80pct_power"]
    assert needed is not None and needed >= 2
    assert f"About {needed} projects are needed to detect the 25% reduction the policy asks for" in text
    assert text.strip().endswith(report["evidence"]["grade_reason"])
    assert interpretation_with_evidence(report).endswith(text)


def test_interpretation_without_statistics_is_unchanged():
    metrics, verdict, report = evaluate_payload(validate_payload(minimal_payload()))
    assert render_evidence(report) == ""
    assert render_evidence({**report, "evidence": {"spike_run_id": "old provenance block"}}) == ""


def test_gate_decisions_are_untouched():
    payload = minimal_payload()
    before = evaluate_payload(validate_payload(payload))[2]
    metrics, verdict, report = evaluate_payload(validate_payload(payload))
    evidence_section(metrics, verdict, Thresholds(**report["thresholds"]))
    assert report == before and "evidence" not in report
    assert math.isfinite(
        evidence_strength(metrics, verdict, Thresholds(**report["thresholds"]))["step_reduction"]["mean"]
    )
