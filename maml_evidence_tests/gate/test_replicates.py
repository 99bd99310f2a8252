"""Payload extensions of issue 11: seed replicates per project and runs that never reached their target.

Validation names the JSON path, the value and what was expected; a project's value is its replicates' mean;
an unreached value is used as given (a lower bound); the report names targets the candidate missed; and a
payload that uses neither extension gets exactly the report it got before them.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from pathlib import Path

import pytest

from maml_evidence import PayloadValidationError, evaluate_feasibility
from maml_evidence.gate import compute_metrics, render_interpretation, validate_payload
from maml_evidence.gate.payload import ArmRun, SpikePayload
from maml_evidence.gate.report import evaluate_payload
from maml_evidence_tests.gate.conftest import FIXTURES, build_payload, load_fixture, minimal_payload, run_cli
from maml_evidence_tests.generator import generate_payloads

BP = "baseline.per_project_adaptation"
CP = "candidate.per_project_adaptation"
REPLICATE_KEYS = "seed, steps_to_target, final_accuracy, reached_target"
NOT_A_LIST = f"{CP}[0].replicates: expected a non-empty list of replicates (objects with steps_to_target), got"
DIGESTS = json.loads((FIXTURES / "spec_report_digests.json").read_text(encoding="utf-8"))


def problems(payload: dict) -> list[str]:
    """Every problem as ``path: message``, in the order validation reports them."""
    with pytest.raises(PayloadValidationError) as info:
        validate_payload(payload)
    return [str(problem) for problem in info.value.problems]


def with_replicates(payload: dict, arm: str, index: int, replicates: object) -> dict:
    """``payload`` with one entry's own steps and final accuracy replaced by ``replicates``."""
    entry = payload[arm]["per_project_adaptation"][index]
    entry.pop("steps_to_target")
    entry.pop("final_accuracy", None)
    entry["replicates"] = replicates
    return payload


def replicated(replicates: object, arm: str = "candidate", index: int = 0) -> dict:
    """A percentage-points payload (accuracy_penalty.json's scale) with replicates on one entry."""
    return with_replicates(build_payload([8.0, 7.0, 6.0], [5.0, 4.0, 4.0]), arm, index, replicates)


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicates", "expected"),
    [
        ([], f"{NOT_A_LIST} []"),
        (
            {"steps_to_target": 5},
            NOT_A_LIST + ' {"steps_to_target": 5}',
        ),
        (None, f"{NOT_A_LIST} null"),
        ([{"steps_to_target": 5}, 6], f"{CP}[0].replicates[1]: expected an object with steps_to_target, got 6"),
        ([{"seed": 1}], f"{CP}[0].replicates[0].steps_to_target: required field is missing"),
        (
            [{"steps_to_target": 5}, {"steps_to_target": "six"}],
            f'{CP}[0].replicates[1].steps_to_target: expected a number between 0 and 1e12, got "six"',
        ),
        (
            [{"steps_to_target": -1}],
            f"{CP}[0].replicates[0].steps_to_target: expected a number between 0 and 1e12, got -1",
        ),
        (
            [{"steps_to_target": True}],
            f"{CP}[0].replicates[0].steps_to_target: expected a number between 0 and 1e12, got true",
        ),
        (
            [{"steps_to_target": float("nan")}],
            f"{CP}[0].replicates[0].steps_to_target: expected a number between 0 and 1e12, got NaN",
        ),
        (
            [{"steps_to_target": 5, "final_accuracy": 100.5}],
            f"{CP}[0].replicates[0].final_accuracy: expected a number between 0 and 100, got 100.5",
        ),
        (
            [{"steps_to_target": 5, "final_accuracy": None}],
            f"{CP}[0].replicates[0].final_accuracy: expected a number between 0 and 100, got null",
        ),
        (
            [{"steps_to_target": 5, "seed": 1.0}],
            f"{CP}[0].replicates[0].seed: expected an integer between 0 and 1e12, got 1.0",
        ),
        (
            [{"steps_to_target": 5, "seed": True}],
            f"{CP}[0].replicates[0].seed: expected an integer between 0 and 1e12, got true",
        ),
        (
            [{"steps_to_target": 5, "seed": -1}],
            f"{CP}[0].replicates[0].seed: expected an integer between 0 and 1e12, got -1",
        ),
        (
            [{"steps_to_target": 5, "seed": "7"}],
            f'{CP}[0].replicates[0].seed: expected an integer between 0 and 1e12, got "7"',
        ),
        (
            [{"steps_to_target": 5, "seed": 10**13}],
            f"{CP}[0].replicates[0].seed: expected an integer between 0 and 1e12, got 10000000000000",
        ),
        (
            [{"steps_to_target": 5, "seed": 3}, {"steps_to_target": 6, "seed": 4}, {"steps_to_target": 7, "seed": 3}],
            f"{CP}[0].replicates[2].seed: duplicate seed 3 (already at replicates[0]); "
            "each seed may appear once per project",
        ),
        (
            [{"steps_to_target": 5, "steps": 6}],
            f"{CP}[0].replicates[0].steps: unknown field; a replicate may give {REPLICATE_KEYS}",
        ),
        (
            [{"steps_to_target": 5, "reached_target": "no"}],
            f"{CP}[0].replicates[0].reached_target: expected true or false (false: training stopped at "
            'steps_to_target without reaching the target), got "no"',
        ),
        (
            [{"steps_to_target": 5, "reached_target": 0}],
            f"{CP}[0].replicates[0].reached_target: expected true or false (false: training stopped at "
            "steps_to_target without reaching the target), got 0",
        ),
    ],
    ids=lambda value: None if isinstance(value, str) else json.dumps(value, allow_nan=True)[:40],
)
def test_a_bad_replicate_is_named_with_its_path_value_and_what_was_expected(replicates, expected):
    assert problems(replicated(replicates)) == [expected]


@pytest.mark.parametrize("field", ["steps_to_target", "final_accuracy"])
def test_replicates_and_own_values_together_are_refused(field):
    payload = replicated([{"steps_to_target": 5}], arm="baseline", index=2)
    payload["baseline"]["per_project_adaptation"][2][field] = 6
    assert problems(payload) == [f"{BP}[2].{field}: give either replicates or steps_to_target/final_accuracy, not both"]


def test_reached_target_beside_replicates_is_refused():
    payload = replicated([{"steps_to_target": 5}])
    payload["candidate"]["per_project_adaptation"][0]["reached_target"] = False
    assert problems(payload) == [
        f"{CP}[0].reached_target: give either replicates or steps_to_target/final_accuracy, not both "
        "(reached_target then goes on each replicate)"
    ]


@pytest.mark.parametrize(("value", "shown"), [("false", '"false"'), (0, "0"), (1, "1"), (None, "null"), ([], "[]")])
def test_reached_target_on_an_entry_must_be_a_boolean(value, shown):
    payload = minimal_payload()
    payload["baseline"]["per_project_adaptation"][1]["reached_target"] = value
    assert problems(payload) == [
        f"{BP}[1].reached_target: expected true or false (false: training stopped at steps_to_target without "
        f"reaching the target), got {shown}"
    ]


def test_an_entry_with_replicates_needs_no_steps_but_still_its_project_and_target():
    payload = replicated([{"steps_to_target": 5}])
    entry = payload["candidate"]["per_project_adaptation"][0]
    del entry["project"], entry["target_accuracy"]
    assert problems(payload) == [
        f"{CP}[0].project: required field is missing",
        f"{CP}[0].target_accuracy: required field is missing",
    ]
    plain = minimal_payload()
    del plain["candidate"]["per_project_adaptation"][0]["steps_to_target"]
    assert problems(plain) == [f"{CP}[0].steps_to_target: required field is missing"]


def test_every_problem_of_every_replicate_is_reported_at_once(tmp_path: Path):
    payload = replicated(
        [
            {"seed": 1, "steps_to_target": "five", "final_accuracy": 101},
            {"seed": 1, "steps_to_target": 6, "colour": "red"},
            {"steps_to_target": 7, "reached_target": "yes"},
        ]
    )
    with_replicates(payload, "baseline", 1, [])
    expected = [
        f"{BP}[1].replicates: expected a non-empty list of replicates (objects with steps_to_target), got []",
        f'{CP}[0].replicates[0].steps_to_target: expected a number between 0 and 1e12, got "five"',
        f"{CP}[0].replicates[0].final_accuracy: expected a number between 0 and 100, got 101",
        f"{CP}[0].replicates[1].colour: unknown field; a replicate may give {REPLICATE_KEYS}",
        f"{CP}[0].replicates[1].seed: duplicate seed 1 (already at replicates[0]); "
        "each seed may appear once per project",
        f"{CP}[0].replicates[2].reached_target: expected true or false (false: training stopped at steps_to_target "
        'without reaching the target), got "yes"',
    ]
    assert problems(payload) == expected
    # the real command says the same, naming the file
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    result = run_cli("gate", "--input", str(path))
    assert (result.returncode, result.stdout) == (2, "")
    assert f"{path}: invalid spike payload (6 problems):" in result.stderr
    for line in expected:
        assert f"  - {line}\n" in result.stderr, line


def test_replicate_accuracies_count_for_the_scale_rules():
    # ratios everywhere except one replicate: ambiguous, and the example is the replicate's path
    payload = minimal_payload()
    with_replicates(
        payload,
        "candidate",
        2,
        [{"steps_to_target": 4, "final_accuracy": 0.77}, {"steps_to_target": 5, "final_accuracy": 77.5}],
    )
    (problem,) = problems(payload)
    assert problem.startswith("score_scale: ambiguous accuracy scale")
    assert f"e.g. {CP}[2].replicates[1].final_accuracy = 77.5" in problem
    # percentage points everywhere except one replicate's ratio
    payload = load_fixture("accuracy_penalty.json")
    with_replicates(payload, "baseline", 0, [{"steps_to_target": 8, "final_accuracy": 0.81}])
    (problem,) = problems(payload)
    assert f"e.g. {BP}[0].replicates[0].final_accuracy = 0.81" in problem
    # a declared ratio scale: the replicate's percentage is refused where it is
    payload = minimal_payload()
    payload["score_scale"] = "ratio"
    with_replicates(payload, "candidate", 1, [{"steps_to_target": 4}, {"steps_to_target": 5, "final_accuracy": 78.5}])
    assert problems(payload) == [
        f'{CP}[1].replicates[1].final_accuracy: expected a ratio between 0 and 1 (the payload declares "score_scale": '
        '"ratio"), got 78.5'
    ]
    # replicate ratios with ratio entries: the payload is read as ratios (percentage points in the metrics)
    payload = minimal_payload()
    with_replicates(payload, "candidate", 0, [{"steps_to_target": 5, "final_accuracy": 0.79}])
    assert validate_payload(payload).score_scale == "ratio_to_percentage_points"
    assert compute_metrics(validate_payload(payload)).per_project[0].candidate_final_accuracy_pp == pytest.approx(79.0)


# --- the values ------------------------------------------------------------------------------------


def test_a_project_is_the_mean_of_its_replicates_with_their_spread():
    replicates = [
        {"seed": 1, "steps_to_target": 7, "final_accuracy": 0.81},
        {"seed": 2, "steps_to_target": 8, "final_accuracy": 0.80, "reached_target": True},
        {"seed": 3, "steps_to_target": 10, "final_accuracy": 0.815},
    ]
    payload = with_replicates(minimal_payload(), "baseline", 0, replicates)
    result = validate_payload(payload).baseline.projects[0]
    assert result.project == "project-a" and result.target_accuracy == 0.80
    assert result.steps_to_target == math.fsum([7, 8, 10]) / 3
    assert result.final_accuracy == math.fsum([0.81, 0.80, 0.815]) / 3
    assert (result.replicates, result.unreached, result.reached_target) == (3, 0, True)
    assert result.steps_sd == pytest.approx(statistics.stdev([7, 8, 10]), rel=1e-12)
    assert result.final_accuracy_sd == pytest.approx(statistics.stdev([0.81, 0.80, 0.815]), rel=1e-12)
    row = compute_metrics(validate_payload(payload)).per_project[0]
    assert row.baseline_steps_to_target == result.steps_to_target
    assert row.baseline_final_accuracy_pp == pytest.approx(result.final_accuracy * 100)
    assert row.baseline_final_accuracy_sd_pp == pytest.approx(result.final_accuracy_sd * 100)
    assert (row.baseline_replicates, row.candidate_replicates) == (3, 0)
    assert row.baseline_steps_sd == result.steps_sd and row.candidate_steps_sd is None
    assert row.candidate_final_accuracy_sd_pp is None


def test_replicate_defaults_and_small_counts():
    # one replicate: its values, no sd; a missing final accuracy is the entry's target
    (single,) = validate_payload(replicated([{"steps_to_target": 5}])).candidate.projects[:1]
    assert (single.steps_to_target, single.final_accuracy, single.replicates) == (5.0, 80.0, 1)
    assert single.steps_sd is None and single.final_accuracy_sd is None
    # equal replicates: exactly zero spread
    (same,) = validate_payload(replicated([{"steps_to_target": 0.1}] * 3)).candidate.projects[:1]
    assert same.steps_sd == 0.0 and same.final_accuracy_sd == 0.0
    assert same.steps_to_target == math.fsum([0.1] * 3) / 3
    # seeds are optional and may be 0; a replicate reaches its target unless it says otherwise
    (mixed,) = validate_payload(
        replicated([{"seed": 0, "steps_to_target": 4}, {"steps_to_target": 6, "reached_target": False}])
    ).candidate.projects[:1]
    assert (mixed.steps_to_target, mixed.replicates, mixed.unreached, mixed.reached_target) == (5.0, 2, 1, False)


def test_an_unreached_entry_is_a_lower_bound_used_as_given():
    payload = minimal_payload()
    payload["candidate"]["per_project_adaptation"][1]["reached_target"] = False
    payload["baseline"]["per_project_adaptation"][2]["reached_target"] = True
    parsed = validate_payload(payload)
    assert [p.unreached for p in parsed.candidate.projects] == [0, 1, 0]
    assert [p.reached_target for p in parsed.baseline.projects] == [True, True, True]
    metrics = compute_metrics(parsed)
    assert [(r.baseline_reached, r.candidate_reached) for r in metrics.per_project] == [
        (True, True),
        (True, False),
        (True, True),
    ]
    # the steps as given: the same figures as without the flag, and the unreached project counted
    plain = compute_metrics(validate_payload(minimal_payload())).inputs
    assert metrics.inputs.as_dict() == {**plain.as_dict(), "candidate_unreached_projects": 1}
    assert metrics.candidate.unreached_projects == ("project-b",)
    assert metrics.candidate.reach_rate == pytest.approx(2 / 3)
    assert (metrics.baseline.unreached_projects, metrics.baseline.reach_rate) == ((), 1.0)
    assert metrics.missed_targets == ("project-b",)


def test_reach_counts_common_projects_only_and_misses_need_a_reached_baseline():
    payload = build_payload([8.0, 7.0, 6.0, 9.0], [5.0, 4.0, 4.0, 6.0], names=["alpha", "beta", "gamma", "delta"])
    base, cand = payload["baseline"]["per_project_adaptation"], payload["candidate"]["per_project_adaptation"]
    base[1]["reached_target"] = cand[1]["reached_target"] = False  # both stopped short on beta: not a miss
    cand[3]["reached_target"] = False
    base[0]["reached_target"] = False  # the baseline stopped short, the candidate reached it
    cand.append({"project": "only-candidate", "steps_to_target": 3, "target_accuracy": 80, "reached_target": False})
    metrics = compute_metrics(validate_payload(payload))
    assert metrics.baseline.unreached_projects == ("alpha", "beta")
    assert metrics.candidate.unreached_projects == ("beta", "delta")
    assert metrics.baseline.reach_rate == metrics.candidate.reach_rate == 0.5
    assert metrics.missed_targets == ("delta",)
    # no common project: every rate is 1
    lonely = build_payload([8.0], [5.0], names=["alpha"])
    lonely["candidate"]["per_project_adaptation"][0]["project"] = "omega"
    lonely["candidate"]["per_project_adaptation"][0]["reached_target"] = False
    empty = compute_metrics(validate_payload(lonely))
    assert (empty.candidate.reach_rate, empty.candidate.unreached_projects, empty.missed_targets) == (1.0, (), ())


def test_the_metrics_quick_path_for_plain_arms_gives_what_the_general_path_gives():
    for payload in generate_payloads(30, seed=5):
        parsed = validate_payload(payload)
        assert parsed.baseline.plain and parsed.candidate.plain

        def general(arm: ArmRun) -> ArmRun:
            return ArmRun(arm.label, arm.projects, arm.train_minutes, arm.meta_train_minutes)  # plain: False

        slow = SpikePayload(
            general(parsed.baseline),
            general(parsed.candidate),
            parsed.score_scale,
            parsed.threshold_overrides,
            parsed.cost_overrides,
            parsed.extras,
        )
        assert compute_metrics(slow) == compute_metrics(parsed)
    assert not validate_payload(replicated([{"steps_to_target": 5}])).candidate.plain
    assert validate_payload(replicated([{"steps_to_target": 5}])).baseline.plain


# --- the report ------------------------------------------------------------------------------------


def test_a_missed_target_is_named_in_the_reasons_and_the_interpretation():
    payload = build_payload([8.0, 7.0, 6.0], [5.0, 4.0, 4.0], names=["alpha", "beta", "gamma"], meta=1.0)
    assert evaluate_feasibility(payload)["decision"] == "enable_maml"
    plain_reasons = evaluate_feasibility(payload)["reasons"]
    payload["candidate"]["per_project_adaptation"][1]["reached_target"] = False
    report = evaluate_feasibility(payload)
    sentence = "LoRA+MAML did not reach the target on beta, where LoRA-only did (its steps are a lower bound)."
    assert report["decision"] == "enable_maml"  # the gate decides on the values as given
    assert report["reasons"] == [*plain_reasons, sentence]
    text = render_interpretation(report)
    assert f"Every check passed.\n{sentence}\n" in text
    # failing: the sentence is not one of the failing checks
    # alpha's mean of 8.5 steps (one replicate stopped short) leaves too small a cut: effectiveness fails
    with_replicates(payload, "candidate", 0, [{"steps_to_target": 8}, {"steps_to_target": 9, "reached_target": False}])
    payload["candidate"]["meta_train_minutes"] = 100.0
    report = evaluate_feasibility(payload)
    sentence = "LoRA+MAML did not reach the target on alpha, beta, where LoRA-only did (their steps are lower bounds)."
    assert report["failed_check"] == "effectiveness_ok"
    assert report["reasons"][-1] == sentence and len(report["reasons"]) == 3  # effectiveness, cost, the targets
    text = render_interpretation(report)
    assert f"Also failing: {report['reasons'][1]}\n{sentence}\n" in text
    assert f"Also failing: {sentence}" not in text


def test_no_missed_target_when_the_baseline_did_not_reach_it_either():
    payload = build_payload([8.0, 7.0, 6.0], [5.0, 4.0, 4.0], meta=1.0)
    for arm in ("baseline", "candidate"):
        payload[arm]["per_project_adaptation"][0]["reached_target"] = False
    report = evaluate_feasibility(payload)
    assert not any("did not reach" in reason for reason in report["reasons"])


def spec_payloads() -> list[tuple[str, str, dict]]:
    """(group, name, payload) for the fixtures and the generated payloads the digests were made from."""
    out = [("fixtures", path.name, load_fixture(path.name)) for path in sorted(FIXTURES.glob("*.json"))]
    out = [item for item in out if item[1] in DIGESTS["fixtures"]]
    assert len(out) == len(DIGESTS["fixtures"]) == 7
    out += [("generated", p["spike_run_id"], p) for p in generate_payloads(120, seed=141)]
    return out


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def as_before_margins(report: dict) -> dict:
    """The report less what issue 12 added on purpose to every report (each condition's margin, the closest call)."""
    kept = {key: value for key, value in report.items() if key != "closest_call"}
    kept["check_details"] = {
        name: {**detail, "conditions": [{k: v for k, v in c.items() if k != "margin"} for c in detail["conditions"]]}
        for name, detail in report["check_details"].items()
    }
    return kept


@pytest.mark.parametrize(("group", "name", "payload"), spec_payloads(), ids=lambda v: v if isinstance(v, str) else None)
def test_spec_payloads_get_byte_identical_reports(group, name, payload):
    """Reports and interpretations as the gate made them before the extensions (digests from commit 80e59f8)."""
    report = evaluate_feasibility(payload)
    expected = DIGESTS[group][name]
    assert digest(json.dumps(as_before_margins(report), indent=2, ensure_ascii=False) + "\n") == expected["report"]
    assert digest(render_interpretation(report)) == expected["interpretation"]
    # the extensions' defaults written out change nothing: a reached target, one replicate per project
    explicit = json.loads(json.dumps(payload))
    for arm in ("baseline", "candidate"):
        for index, entry in enumerate(explicit[arm]["per_project_adaptation"]):
            if index % 2:
                entry["reached_target"] = True
            else:
                replicate = {"steps_to_target": entry.pop("steps_to_target"), "reached_target": True}
                if "final_accuracy" in entry:
                    replicate["final_accuracy"] = entry.pop("final_accuracy")
                entry["replicates"] = [replicate]
    again = evaluate_payload(validate_payload(explicit))[2]
    assert json.dumps(again, indent=2) == json.dumps(report, indent=2)


@pytest.mark.parametrize("name", sorted(DIGESTS["fixtures"]))
def test_maml_feasibility_gate_prints_the_same_bytes_for_the_fixtures(name):
    result = run_cli("--input", str(FIXTURES / name), script="maml-feasibility-gate")
    assert result.returncode in (0, 1), result.stderr
    printed = as_before_margins(json.loads(result.stdout))
    assert digest(json.dumps(printed, indent=2, ensure_ascii=False) + "\n") == DIGESTS["fixtures"][name]["report"]
