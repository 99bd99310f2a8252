"""thresholds.toml: strict validation, policy versions, and a broken file stopping every path that judges."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from maml_evidence import PayloadValidationError
from maml_evidence.definitions import defs
from maml_evidence.defs.partitions import spike_runs
from maml_evidence.policy import load_policy, parse_policy
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence_tests.policy.conftest import PAYLOADS, POLICY_B, Home, decision_snapshot, toml_text
from maml_evidence_tests.samples import REPO_ROOT

VALID_KEYS = (
    "min_projects",
    "trigger_mean_steps",
    "trigger_max_steps",
    "min_mean_step_reduction",
    "min_relative_step_reduction",
    "max_mean_accuracy_regression_pp",
    "max_training_overhead_pct",
    "max_extra_gpu_cost_usd_per_run",
    "gpu_hour_usd",
)
# Two problems at once: both must be named (never only the first, never a fallback to defaults).
BROKEN = "max_training_overhead = 30\ngpu_hour_usd = -1\n"


def problems(text: str) -> str:
    with pytest.raises(PayloadValidationError) as caught:
        parse_policy(text, "thresholds.toml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("max_training_overhead = 30", "max_training_overhead", "unknown key"),
        ('max_training_overhead_pct = "30"', "max_training_overhead_pct", "expected a number"),
        ("trigger_mean_steps = true", "trigger_mean_steps", "expected a number"),
        ("min_projects = false", "min_projects", "expected a whole number"),
        ("min_mean_step_reduction = -0.5", "min_mean_step_reduction", "between 0 and 1e12, got -0.5"),
        ("gpu_hour_usd = -1", "gpu_hour_usd", "between 0 and 1e12, got -1"),
        ("min_relative_step_reduction = 1.5", "min_relative_step_reduction", "between 0 and 1"),
        ("min_projects = 2.5", "min_projects", "whole number"),
        ("max_extra_gpu_cost_usd_per_run = inf", "max_extra_gpu_cost_usd_per_run", "expected a number"),
        ("max_mean_accuracy_regression_pp = nan", "max_mean_accuracy_regression_pp", "expected a number"),
        ("gpu_hour_usd = [2.5]", "gpu_hour_usd", "expected a number"),
        # whatever validation accepts must fit the store (min_projects is an int64 column) and keep metrics finite
        (
            "min_projects = 9223372036854775808",
            "min_projects",
            "expected a whole number between 0 and 1000000, got 9223372036854775808",
        ),
        ("min_projects = 1000001", "min_projects", "whole number between 0 and 1000000, got 1000001"),
        ("max_training_overhead_pct = 1e13", "max_training_overhead_pct", "between 0 and 1e12, got 10000000000000.0"),
        ("gpu_hour_usd = 1e300", "gpu_hour_usd", "between 0 and 1e12"),
        ("[thresholds]\nmin_projects = 3", "thresholds", "tables are not allowed"),
        ("min_projects = 3\n[cost_profile]\ngpu_hour_usd = 2.0", "cost_profile", "tables are not allowed"),
    ],
)
def test_invalid_policy_names_the_key(text: str, key: str, expected: str) -> None:
    message = problems(text)
    assert "thresholds.toml" in message
    assert re.search(rf"(^|\s){re.escape(key)}:", message, re.MULTILINE), message
    assert expected in message


def test_unknown_key_lists_every_valid_key() -> None:
    message = problems("max_training_overhead = 30")
    listed = message.split("valid keys are:", 1)[1]
    assert all(key in listed for key in VALID_KEYS), message


def test_every_problem_is_named_at_once() -> None:
    message = problems(BROKEN)
    assert "max_training_overhead:" in message and "gpu_hour_usd:" in message, message


@pytest.mark.parametrize("text", ["min_projects = ", "min_projects = 3\nmin_projects = 4", "gpu_hour_usd = 2.5 2.6"])
def test_toml_syntax_error(text: str) -> None:
    assert "invalid TOML" in problems(text)


def test_version_is_the_effective_content() -> None:
    none = parse_policy("", "empty").version
    assert parse_policy("# only comments\n", "a").version == none
    assert parse_policy("min_projects = 3", "a").version == none  # a default spelled out
    assert parse_policy("min_projects = 3.0\ngpu_hour_usd = 2.5", "a").version == none
    one = parse_policy("max_training_overhead_pct = 40\ngpu_hour_usd = 3", "a").version
    reformatted = parse_policy("# cost\ngpu_hour_usd   =   3.0\n\n  max_training_overhead_pct = 40.0  # tighter\n", "b")
    assert reformatted.version == one
    assert parse_policy("max_training_overhead_pct = 40\ngpu_hour_usd = 3.5", "a").version != one
    assert parse_policy("max_training_overhead_pct = 41\ngpu_hour_usd = 3", "a").version != one
    assert len({parse_policy(f"{key} = 0.125", "a").version for key in VALID_KEYS if key != "min_projects"}) == 8


def test_no_file_means_the_spec_defaults(tmp_path: Path) -> None:
    policy = load_policy(tmp_path / "thresholds.toml")
    assert policy.values == {}
    assert policy.version == parse_policy("", "x").version


def test_shipped_default_policy_is_commented_and_equals_the_spec(tmp_path: Path) -> None:
    shipped = REPO_ROOT / "data" / "thresholds.toml"
    text = shipped.read_text(encoding="utf-8")
    assert load_policy(shipped).version == load_policy(tmp_path / "none.toml").version
    for key in VALID_KEYS:
        assert re.search(rf"^# {key} = ", text, re.MULTILINE), f"{key} is not documented in {shipped}"
    # uncommenting every key as shipped is still the spec's policy
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.MULTILINE)
    assert parse_policy(uncommented, "uncommented").version == load_policy(tmp_path / "none.toml").version


def assert_clean_usage_error(result, *keys: str) -> None:  # noqa: ANN001 - CompletedProcess
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "thresholds.toml" in result.stderr
    for key in keys:
        assert f"{key}:" in result.stderr, result.stderr
    assert result.stdout == ""


def test_reevaluate_command_refuses_a_broken_policy(home: Home) -> None:
    home.write_policy(POLICY_B)
    assert reevaluate(home.store).changes  # history now under POLICY_B
    before = decision_snapshot(home)
    home.write_policy(BROKEN)
    result = home.cli("reevaluate")
    assert_clean_usage_error(result, "max_training_overhead", "gpu_hour_usd")
    assert decision_snapshot(home) == before  # no fallback to the defaults (which would flip decisions back)
    with pytest.raises(PayloadValidationError):
        reevaluate(home.store)
    assert decision_snapshot(home) == before


def test_ingest_command_refuses_a_broken_policy(home: Home, tmp_path: Path) -> None:
    before = decision_snapshot(home)
    home.write_policy(BROKEN)
    given = tmp_path / "new-run.json"
    given.write_text(json.dumps({**PAYLOADS["gen-00"], "spike_run_id": "new-run"}), encoding="utf-8")
    inbox_file = home.evidence / "inbox" / "inbox-run.json"
    inbox_file.write_text(json.dumps({**PAYLOADS["gen-01"], "spike_run_id": "inbox-run"}), encoding="utf-8")

    assert_clean_usage_error(home.cli("ingest", str(given)), "max_training_overhead", "gpu_hour_usd")
    assert_clean_usage_error(home.cli("ingest"), "max_training_overhead", "gpu_hour_usd")

    assert decision_snapshot(home) == before
    assert given.exists() and inbox_file.exists()  # not taken in, not quarantined
    assert list((home.evidence / "quarantine").iterdir()) == []
    assert not (home.evidence / "payloads" / "new-run").exists()
    assert not (home.evidence / "payloads" / "inbox-run").exists()
    instance = home.instance()
    try:
        assert not {"new-run", "inbox-run"} & set(instance.get_dynamic_partitions(spike_runs.name))
    finally:
        instance.dispose()


def test_schedule_and_sensor_ticks_fail_on_a_broken_policy(home: Home, instance: dg.DagsterInstance) -> None:
    home.write_policy(BROKEN)
    (home.evidence / "inbox" / "inbox-run.json").write_text(
        json.dumps({**PAYLOADS["gen-01"], "spike_run_id": "inbox-run"}), encoding="utf-8"
    )
    schedule = defs.resolve_schedule_def("policy_change_schedule")
    with pytest.raises(Exception) as caught:
        schedule.evaluate_tick(dg.build_schedule_context(instance=instance, resources=home.resources))
    assert "max_training_overhead" in _chain(caught.value) and "gpu_hour_usd" in _chain(caught.value)

    sensor = defs.resolve_sensor_def("spike_inbox_sensor")
    with pytest.raises(Exception) as caught:
        sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=home.resources))
    assert "max_training_overhead" in _chain(caught.value)
    assert (home.evidence / "inbox" / "inbox-run.json").exists()
    assert "inbox-run" not in instance.get_dynamic_partitions(spike_runs.name)


def _chain(exc: BaseException) -> str:
    """The text of an exception and everything it wraps (Dagster wraps user-code errors)."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def test_bounds_are_inclusive() -> None:
    policy = parse_policy("min_projects = 1000000\nmax_training_overhead_pct = 1e12\ngpu_hour_usd = 0", "edge")
    assert policy.values == {"min_projects": 1_000_000, "max_training_overhead_pct": 1e12, "gpu_hour_usd": 0.0}


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    text = "# written by a Windows editor\nmax_training_overhead_pct = 40\ngpu_hour_usd = 3\n"
    plain = parse_policy(text, "plain")
    assert (
        parse_policy("\ufeff" + text, "bom").values
        == plain.values
        == {
            "max_training_overhead_pct": 40.0,
            "gpu_hour_usd": 3.0,
        }
    )
    path = tmp_path / "thresholds.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_policy(path).version == plain.version


def test_a_policy_with_a_byte_order_mark_is_in_force_through_the_command_line(home: Home) -> None:
    home.policy_file.write_bytes(b"\xef\xbb\xbf" + toml_text(POLICY_B).encode("utf-8"))
    result = home.cli("reevaluate")
    assert result.returncode == 0, result.stderr
    assert f"policy {parse_policy(toml_text(POLICY_B), 'b').version}" in result.stdout


def test_reevaluate_command_names_a_min_projects_beyond_the_store(home: Home) -> None:
    before = decision_snapshot(home)
    home.write_policy("min_projects = 9223372036854775808\n")
    result = home.cli("reevaluate")
    assert_clean_usage_error(result, "min_projects")
    assert "expected a whole number between 0 and 1000000, got 9223372036854775808" in result.stderr
    assert decision_snapshot(home) == before


def test_policy_keys_in_toml_text_round_trip() -> None:
    assert parse_policy(toml_text(POLICY_B), "b").values == POLICY_B
