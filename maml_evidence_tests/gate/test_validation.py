"""Bad input is rejected with every problem, its JSON path and the bad value; never a traceback.

Each case runs twice: through the real ``maml-evidence gate`` command in a subprocess (exit code 2, nothing
on stdout, the path and value on stderr) and in-process (exactly the expected problem paths, as
``PayloadValidationError.problems``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import maml_evidence
from maml_evidence import PayloadValidationError, evaluate_feasibility
from maml_evidence.gate import Problem, load_payload_file, parse_payload_text, validate_payload
from maml_evidence_tests.gate.conftest import load_fixture, minimal_payload, run_cli

BP = "baseline.per_project_adaptation"
CP = "candidate.per_project_adaptation"


class Case:
    def __init__(self, id: str, make: Callable[[], bytes], paths: tuple[str, ...], fragments: tuple[str, ...]):
        self.id, self.make, self.paths, self.fragments = id, make, paths, fragments


def dump(payload: object) -> bytes:
    return json.dumps(payload, allow_nan=True).encode("utf-8")


def mutated(mutate: Callable[[dict], None], base: str = "minimal.json") -> Callable[[], bytes]:
    def make() -> bytes:
        payload = load_fixture(base)
        mutate(payload)
        return dump(payload)

    return make


def setp(path: str, value: object) -> Callable[[dict], None]:
    """Set (or with value=DELETE, remove) the value at a dotted path like 'baseline.label'."""

    def mutate(payload: dict) -> None:
        *parents, last = path.split(".")
        node: object = payload
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
        key: object = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]  # type: ignore[index]
        else:
            node[key] = value  # type: ignore[index]

    return mutate


DELETE = object()


def case(
    id: str, mutate: Callable[[dict], None], paths: tuple[str, ...] | str, *fragments: str, base: str = "minimal.json"
) -> Case:
    return Case(id, mutated(mutate, base), (paths,) if isinstance(paths, str) else paths, fragments)


def raw(id: str, data: bytes, path: str, *fragments: str) -> Case:
    return Case(id, lambda: data, (path,), fragments)


MINIMAL_TEXT = dump(minimal_payload())
PP = "accuracy_penalty.json"  # a percentage-points payload

CASES = [
    # missing required fields
    case("missing-baseline", setp("baseline", DELETE), "baseline", "required field is missing"),
    case("missing-candidate", setp("candidate", DELETE), "candidate", "required field is missing"),
    case("missing-baseline-train_minutes", setp("baseline.train_minutes", DELETE), "baseline.train_minutes", "missing"),
    case(
        "missing-candidate-train_minutes", setp("candidate.train_minutes", DELETE), "candidate.train_minutes", "missing"
    ),
    case(
        "missing-per_project_adaptation",
        setp("candidate.per_project_adaptation", DELETE),
        "candidate.per_project_adaptation",
        "missing",
    ),
    case("missing-project", setp(f"{BP}.1.project", DELETE), f"{BP}[1].project", "missing"),
    case("missing-steps_to_target", setp(f"{CP}.2.steps_to_target", DELETE), f"{CP}[2].steps_to_target", "missing"),
    case("missing-target_accuracy", setp(f"{BP}.0.target_accuracy", DELETE), f"{BP}[0].target_accuracy", "missing"),
    # wrong types where numbers belong
    case(
        "steps-string",
        setp(f"{BP}.1.steps_to_target", "eight"),
        f"{BP}[1].steps_to_target",
        'expected a number between 0 and 1e12, got "eight"',
    ),
    case("steps-numeric-string", setp(f"{BP}.1.steps_to_target", "8"), f"{BP}[1].steps_to_target", '"8"'),
    case("steps-bool", setp(f"{CP}.0.steps_to_target", True), f"{CP}[0].steps_to_target", "got true"),
    case("steps-null", setp(f"{CP}.0.steps_to_target", None), f"{CP}[0].steps_to_target", "got null"),
    case("steps-list", setp(f"{CP}.0.steps_to_target", [8]), f"{CP}[0].steps_to_target", "got [8]"),
    case("train_minutes-string", setp("baseline.train_minutes", "45"), "baseline.train_minutes", 'got "45"'),
    case("train_minutes-null", setp("candidate.train_minutes", None), "candidate.train_minutes", "got null"),
    case(
        "meta_train_minutes-bool",
        setp("candidate.meta_train_minutes", False),
        "candidate.meta_train_minutes",
        "got false",
    ),
    case("target_accuracy-null", setp(f"{BP}.2.target_accuracy", None), f"{BP}[2].target_accuracy", "got null"),
    case("final_accuracy-string", setp(f"{CP}.2.final_accuracy", "0.8"), f"{CP}[2].final_accuracy", 'got "0.8"'),
    case(
        "gpu_hour_usd-string",
        lambda p: p.update(cost_profile={"gpu_hour_usd": "2.5"}),
        "cost_profile.gpu_hour_usd",
        'got "2.5"',
    ),
    case(
        "threshold-bool",
        lambda p: p.update(thresholds={"trigger_mean_steps": True}),
        "thresholds.trigger_mean_steps",
        "got true",
    ),
    case(
        "threshold-null", lambda p: p.update(thresholds={"min_projects": None}), "thresholds.min_projects", "got null"
    ),
    # NaN and Infinity (written as raw JSON tokens)
    case("steps-NaN", setp(f"{BP}.1.steps_to_target", float("nan")), f"{BP}[1].steps_to_target", "got NaN"),
    case(
        "train_minutes-Infinity",
        setp("candidate.train_minutes", float("inf")),
        "candidate.train_minutes",
        "got Infinity",
    ),
    case(
        "accuracy-negative-Infinity",
        setp(f"{CP}.1.final_accuracy", float("-inf")),
        f"{CP}[1].final_accuracy",
        "got -Infinity",
    ),
    case(
        "gpu_hour_usd-NaN",
        lambda p: p.update(cost_profile={"gpu_hour_usd": float("nan")}),
        "cost_profile.gpu_hour_usd",
        "NaN",
    ),
    case(
        "threshold-Infinity",
        lambda p: p.update(thresholds={"max_training_overhead_pct": float("inf")}),
        "thresholds.max_training_overhead_pct",
        "Infinity",
    ),
    case("huge-integer-steps", setp(f"{BP}.0.steps_to_target", 10**400), f"{BP}[0].steps_to_target", "1000000"),
    # negative numbers
    case(
        "steps-negative",
        setp(f"{BP}.1.steps_to_target", -1),
        f"{BP}[1].steps_to_target",
        "expected a number between 0 and 1e12, got -1",
    ),
    case("train_minutes-negative", setp("candidate.train_minutes", -5.0), "candidate.train_minutes", "-5"),
    case("meta_train_minutes-negative", setp("candidate.meta_train_minutes", -1), "candidate.meta_train_minutes", "-1"),
    case(
        "gpu_hour_usd-negative",
        lambda p: p.update(cost_profile={"gpu_hour_usd": -0.5}),
        "cost_profile.gpu_hour_usd",
        "-0.5",
    ),
    case(
        "threshold-negative",
        lambda p: p.update(thresholds={"min_mean_step_reduction": -1.5}),
        "thresholds.min_mean_step_reduction",
        "-1.5",
    ),
    case(
        "baseline-train_minutes-zero",
        setp("baseline.train_minutes", 0),
        "baseline.train_minutes",
        "a number > 0",
        "got 0",
    ),
    case("baseline-train_minutes-negative", setp("baseline.train_minutes", -45), "baseline.train_minutes", "-45"),
    # threshold shapes
    case(
        "min_projects-fraction",
        lambda p: p.update(thresholds={"min_projects": 2.5}),
        "thresholds.min_projects",
        "whole number",
        "2.5",
    ),
    case(
        "relative-threshold-as-percent",
        lambda p: p.update(thresholds={"min_relative_step_reduction": 25}),
        "thresholds.min_relative_step_reduction",
        "0.25 means 25%",
        "got 25",
    ),
    case("thresholds-not-object", lambda p: p.update(thresholds=[1, 2]), "thresholds", "an object", "[1, 2]"),
    case("cost_profile-not-object", lambda p: p.update(cost_profile=2.5), "cost_profile", "an object", "2.5"),
    # accuracy range and scale
    case(
        "accuracy-over-100",
        setp(f"{BP}.0.final_accuracy", 100.5),
        f"{BP}[0].final_accuracy",
        "between 0 and 100",
        "100.5",
        base=PP,
    ),
    case(
        "accuracy-negative",
        setp(f"{BP}.1.target_accuracy", -0.1),
        f"{BP}[1].target_accuracy",
        "between 0 and 100",
        "-0.1",
    ),
    case(
        "mixed-scales",
        setp(f"{BP}.1.final_accuracy", 79.0),
        "score_scale",
        "ambiguous",
        f"{BP}[0].target_accuracy = 0.8",
        f"{BP}[1].final_accuracy = 79",
    ),
    case(
        "declared-ratio-with-percentages",
        lambda p: p.update(score_scale="ratio"),
        tuple(
            f"{arm}[{i}].{key}" for arm in (BP, CP) for i in range(3) for key in ("target_accuracy", "final_accuracy")
        ),
        '"score_scale": "ratio"',
        "81",
        base=PP,
    ),
    case(
        "unknown-score_scale",
        lambda p: p.update(score_scale="percent"),
        "score_scale",
        '"percent"',
        '"ratio", "percentage_points"',
    ),
    case("score_scale-not-string", lambda p: p.update(score_scale=["ratio"]), "score_scale", '["ratio"]'),
    # project names
    case(
        "duplicate-project",
        setp(f"{BP}.2.project", "project-a"),
        f"{BP}[2].project",
        "duplicate",
        "project-a",
        "index 0",
    ),
    case("empty-project-name", setp(f"{CP}.1.project", ""), f"{CP}[1].project", 'got ""'),
    case("blank-project-name", setp(f"{CP}.1.project", "   "), f"{CP}[1].project", 'got "   "'),
    case("project-name-number", setp(f"{CP}.1.project", 7), f"{CP}[1].project", "got 7"),
    case("empty-label", setp("baseline.label", ""), "baseline.label", 'got ""'),
    # unknown keys where typos would be silently ignored
    case(
        "unknown-threshold-key",
        lambda p: p.update(thresholds={"max_training_overhead": 30}),
        "thresholds.max_training_overhead",
        "unknown key",
        "max_training_overhead_pct",
        "min_projects",
        "max_extra_gpu_cost_usd_per_run",
    ),
    case(
        "unknown-cost_profile-key",
        lambda p: p.update(cost_profile={"gpu_hour": 3.0}),
        "cost_profile.gpu_hour",
        "unknown key",
        "gpu_hour_usd",
    ),
    # wrong shapes
    case("project-entry-not-object", setp(f"{BP}.1", "project-b"), f"{BP}[1]", 'got "project-b"'),
    case(
        "per_project_adaptation-not-list",
        setp("candidate.per_project_adaptation", {"project": "a"}),
        "candidate.per_project_adaptation",
        "a list",
    ),
    case("baseline-not-object", setp("baseline", "lora_only"), "baseline", 'got "lora_only"'),
    raw("payload-list", dump([minimal_payload()]), "$", "a JSON object", '[{"baseline"'),
    raw("payload-string", b'"baseline"', "$", 'got "baseline"'),
    raw("payload-number", b"42", "$", "got 42"),
    raw("payload-null", b"null", "$", "got null"),
    raw("payload-empty-list", b"[]", "$", "got []"),
    case("deep-nesting-in-extras", lambda p: p.update(notes=json.loads("[" * 80 + "]" * 80)), "$", "nested too deeply"),
    # numbers beyond what the gate accepts: each would overflow a derived metric or its stored column
    case(
        "min_projects-beyond-int64",
        lambda p: p.update(thresholds={"min_projects": 2**63}),
        "thresholds.min_projects",
        "expected a whole number between 0 and 1000000, got 9223372036854775808",
    ),
    case(
        "min_projects-above-bound",
        lambda p: p.update(thresholds={"min_projects": 1_000_001}),
        "thresholds.min_projects",
        "between 0 and 1000000",
        "got 1000001",
    ),
    case(
        "steps-above-bound",
        setp(f"{BP}.0.steps_to_target", 1e13),
        f"{BP}[0].steps_to_target",
        "expected a number between 0 and 1e12, got 10000000000000.0",
    ),
    case(
        "train_minutes-above-bound",
        setp("candidate.train_minutes", 1.7e308),
        "candidate.train_minutes",
        "between 0 and 1e12",
        "1.7e+308",
    ),
    case(
        "baseline-train_minutes-above-bound",
        setp("baseline.train_minutes", 2e12),
        "baseline.train_minutes",
        "a number > 0 and at most 1e12",
        "2000000000000.0",
    ),
    case(
        "meta_train_minutes-above-bound",
        setp("candidate.meta_train_minutes", 10**13),
        "candidate.meta_train_minutes",
        "between 0 and 1e12",
        "got 10000000000000",
    ),
    case(
        "gpu_hour_usd-above-bound",
        lambda p: p.update(cost_profile={"gpu_hour_usd": 1e15}),
        "cost_profile.gpu_hour_usd",
        "between 0 and 1e12",
    ),
    case(
        "threshold-above-bound",
        lambda p: p.update(thresholds={"max_training_overhead_pct": 1e13}),
        "thresholds.max_training_overhead_pct",
        "between 0 and 1e12",
    ),
    # a key repeated in one object: JSON readers disagree on which value counts, so none is taken
    raw(
        "duplicate-top-level-key",
        MINIMAL_TEXT[:-1] + b', "baseline": {}}',
        "baseline",
        'duplicate key "baseline"',
        "2 times",
    ),
    raw(
        "duplicate-nested-key",
        MINIMAL_TEXT.replace(b'"train_minutes": 45.0', b'"train_minutes": 45.0, "train_minutes": 9'),
        "baseline.train_minutes",
        'duplicate key "train_minutes"',
    ),
    raw(
        "duplicate-key-in-a-project",
        MINIMAL_TEXT.replace(b'"project": "project-b"', b'"project": "project-b", "project": "x"', 1),
        f"{BP}[1].project",
        'duplicate key "project"',
    ),
    raw("duplicate-key-in-extras", MINIMAL_TEXT[:-1] + b', "notes": {"a": 1, "a": 2, "a": 3}}', "notes.a", "3 times"),
    # documents that are not JSON at all
    raw("invalid-json", b'{"baseline": }', "$", "invalid JSON", "line 1, column 14"),
    raw("truncated-json", MINIMAL_TEXT[: MINIMAL_TEXT.index(b'"candidate"')], "$", "truncated", "line 1"),
    raw(
        "truncated-mid-string",
        MINIMAL_TEXT[: MINIMAL_TEXT.index(b"project-b") + 4],
        "$",
        "invalid JSON",
        "Unterminated string",
    ),
    raw("non-utf8", '{"spike_run_id": "café"}'.encode("latin-1"), "$", "not valid UTF-8", "0xe9"),
    raw("utf16", json.dumps(minimal_payload()).encode("utf-16"), "$", "not valid UTF-8"),
    raw("empty-file", b"", "$", "empty"),
    raw("whitespace-file", b"  \n\t ", "$", "empty"),
    raw("pathological-nesting", b"[" * 100_000, "$", "nested too deeply"),
    raw("pathological-object-nesting", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "$", "nested too deeply"),
    raw("number-literal-too-long", b'{"baseline": ' + b"9" * 5000 + b"}", "$", "too many digits"),
    raw("unpaired-surrogate", MINIMAL_TEXT.replace(b'"project-a"', b'"\\ud800"'), "$", "surrogate"),
]

ids = [c.id for c in CASES]
assert len(ids) == len(set(ids)), "duplicate case ids"


@pytest.mark.parametrize("bad", CASES, ids=ids)
def test_cli_rejects_bad_input(bad: Case, tmp_path: Path):
    path = tmp_path / "payload.json"
    path.write_bytes(bad.make())
    result = run_cli("gate", "--input", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert str(path) in result.stderr
    for expected_path in bad.paths:
        assert f"  - {expected_path}: " in result.stderr, expected_path
    for fragment in bad.fragments:
        assert fragment in result.stderr, fragment


@pytest.mark.parametrize("bad", CASES, ids=ids)
def test_in_process_problems_are_exactly_the_expected_paths(bad: Case):
    with pytest.raises(PayloadValidationError) as info:
        evaluate_feasibility(parse_payload_text(bad.make()))
    assert sorted(p.path for p in info.value.problems) == sorted(bad.paths)
    rendered = str(info.value)
    for fragment in bad.fragments:
        assert fragment in rendered, fragment


def test_missing_file(tmp_path: Path):
    missing = tmp_path / "nope" / "payload.json"
    result = run_cli("gate", "--input", str(missing))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert str(missing) in result.stderr and "file not found" in result.stderr


def test_directory_as_input(tmp_path: Path):
    result = run_cli("gate", "--input", str(tmp_path))
    assert (result.returncode, result.stdout) == (2, "")
    assert "Traceback" not in result.stderr and "directory" in result.stderr


def test_several_problems_are_reported_at_once(tmp_path: Path):
    payload = minimal_payload()
    payload["baseline"]["per_project_adaptation"][1]["steps_to_target"] = "eight"
    payload["candidate"]["train_minutes"] = -1
    del payload["candidate"]["per_project_adaptation"][0]["project"]
    payload["thresholds"] = {"max_training_overhead": 30}
    payload["cost_profile"] = {"gpu_hour_usd": None}
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    result = run_cli("gate", "--input", str(path))
    assert (result.returncode, result.stdout) == (2, "")
    assert "5 problems" in result.stderr
    for expected in (
        f'{BP}[1].steps_to_target: expected a number between 0 and 1e12, got "eight"',
        "candidate.train_minutes: expected a number between 0 and 1e12, got -1",
        f"{CP}[0].project: required field is missing",
        "thresholds.max_training_overhead: unknown key",
        "cost_profile.gpu_hour_usd: expected a number between 0 and 1e12, got null",
    ):
        assert expected in result.stderr, expected


def test_mixed_scale_and_field_problems_are_reported_together():
    payload = minimal_payload()
    payload["baseline"]["per_project_adaptation"][0]["final_accuracy"] = 81.0
    payload["candidate"]["per_project_adaptation"][0]["steps_to_target"] = -3
    with pytest.raises(PayloadValidationError) as info:
        validate_payload(payload)
    assert {p.path for p in info.value.problems} == {"score_scale", f"{CP}[0].steps_to_target"}


# --- the in-process error type -------------------------------------------------------------------


def test_public_error_type_is_a_value_error_with_problems():
    assert maml_evidence.PayloadValidationError is PayloadValidationError
    assert issubclass(PayloadValidationError, ValueError)
    payload = minimal_payload()
    payload["baseline"]["per_project_adaptation"][1]["steps_to_target"] = "eight"
    with pytest.raises(maml_evidence.PayloadValidationError) as info:
        validate_payload(payload)
    (problem,) = info.value.problems
    assert isinstance(problem, Problem)
    assert problem.path == f"{BP}[1].steps_to_target"
    assert problem.message == 'expected a number between 0 and 1e12, got "eight"'
    assert str(problem) == f'{BP}[1].steps_to_target: expected a number between 0 and 1e12, got "eight"'
    assert str(problem) in str(info.value)


@pytest.mark.parametrize("value", [None, [], "x", 3, 2.5, True, ("baseline",)], ids=repr)
def test_evaluate_feasibility_rejects_non_objects(value):
    with pytest.raises(PayloadValidationError) as info:
        evaluate_feasibility(value)
    assert [p.path for p in info.value.problems] == ["$"]


def test_evaluate_feasibility_raises_for_python_nan():
    payload = minimal_payload()
    payload["candidate"]["meta_train_minutes"] = float("nan")
    with pytest.raises(PayloadValidationError) as info:
        evaluate_feasibility(payload)
    assert [p.path for p in info.value.problems] == ["candidate.meta_train_minutes"]
    assert "got NaN" in str(info.value)


def test_load_payload_file_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.json"
    path.write_bytes(b"{")
    with pytest.raises(PayloadValidationError) as info:
        load_payload_file(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: invalid spike payload (1 problem):")


def test_validation_error_counts_problems_in_its_message():
    with pytest.raises(PayloadValidationError) as info:
        validate_payload({})
    assert [p.path for p in info.value.problems] == ["baseline", "candidate"]
    assert "(2 problems)" in str(info.value)


def test_utf8_bom_is_accepted(tmp_path: Path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL_TEXT)
    result = run_cli("gate", "--input", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["decision"] == "enable_maml"
