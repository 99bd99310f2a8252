"""`maml-evidence whatif`: the flips a re-evaluation under the same policy would make, with nothing written anywhere."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest

from maml_evidence.gate import PayloadValidationError
from maml_evidence.policy import parse_policy
from maml_evidence.store import EvidenceStore
from maml_evidence.store.files import file_lock
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence.store.whatif import parse_scalar
from maml_evidence_tests.policy.conftest import POLICY_B, Home, oracle, toml_text
from maml_evidence_tests.samples import BIN

PINNED = ("pinned-support-bots", "pinned-everything")  # their payloads pin the keys POLICY_B sets


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every file and folder under ``root``: path, size, mtime and a hash of the content (locks included)."""
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns, digest)
    return found


def sets(values: Mapping[str, object]) -> list[str]:
    """``--set KEY=VALUE`` arguments, spelt as TOML spells the values."""
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={spell(value)}")]


def spell(value: object) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def whatif_json(home: Home, values: Mapping[str, object]) -> dict:
    done = home.cli("whatif", *sets(values), "--format", "json")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return json.loads(done.stdout)


def flips_of(found: dict) -> dict[str, tuple[str, str, str | None]]:
    return {f["spike_run_id"]: (f["from"], f["to"], f["cause_check"]) for f in found["flips"]}


def mix(home: Home) -> dict[str, int]:
    return dict(Counter(str(row["decision"]) for row in home.decisions().values()))


def reevaluated(home: Home, policy_text: str) -> tuple[dict[str, tuple[str, str, str | None]], dict[str, int]]:
    """The flips and the decision mix a real re-evaluation (the command) records under ``policy_text``."""
    home.policy_file.write_text(policy_text, encoding="utf-8")
    done = home.cli("reevaluate")
    assert done.returncode == 0, done.stderr
    version = parse_policy(policy_text, "x").version
    rows = home.rows(
        "SELECT spike_run_id, from_decision, to_decision, cause_check FROM decision_changes "
        "WHERE to_policy_version = ?",
        [version],
    )
    changes = {
        str(r["spike_run_id"]): (str(r["from_decision"]), str(r["to_decision"]), _text(r["cause_check"])) for r in rows
    }
    return changes, mix(home)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(POLICY_B, id="policy-b"),
        pytest.param({"require_strong_evidence": True}, id="require-strong-evidence"),
        pytest.param({"max_project_accuracy_regression_pp": 0.5, "gpu_hour_usd": 9.0}, id="project-guard"),
        pytest.param({"min_relative_step_reduction": 0.6, "trigger_mean_steps": 6}, id="effect"),
    ],
)
def test_flips_are_what_a_reevaluation_records(home: Home, values: Mapping[str, object]) -> None:
    before = tree(home.evidence), tree(home.dagster_home)
    stored = mix(home)
    found = whatif_json(home, values)
    assert (tree(home.evidence), tree(home.dagster_home)) == before  # nothing written, not even a lock file
    assert found["before"] == stored
    assert found["flips"], "a setting that flips nothing tests nothing"
    assert found["policy"] == {**found["policy"], **values}

    changes, after = reevaluated(home, toml_text(values))  # type: ignore[arg-type]
    assert flips_of(found) == changes
    assert found["after"] == after
    assert [f["spike_run_id"] for f in found["flips"]] == sorted(changes)


def test_agrees_with_the_gate_core_and_leaves_payload_pins(home: Home) -> None:
    """POLICY_B's keys are pinned by two payloads: their decisions stay, every other one is the core's."""
    found = whatif_json(home, POLICY_B)
    old, new = oracle(), oracle(POLICY_B)
    assert flips_of(found) == {
        run_id: (old[run_id]["decision"], new[run_id]["decision"], flips_of(found)[run_id][2])
        for run_id in old
        if old[run_id]["decision"] != new[run_id]["decision"]
    }
    assert found["after"] == dict(Counter(report["decision"] for report in new.values()))
    # a price and limits so harsh that every unpinned spike run that was enabled is no longer
    harsh = {"min_projects": 40, "max_training_overhead_pct": 0.0, "gpu_hour_usd": 1000.0}
    found = flips_of(whatif_json(home, harsh))
    enabled = {run_id for run_id, report in old.items() if report["decision"] == "enable_maml"}
    assert enabled - set(PINNED) <= set(found)
    assert not set(PINNED) & set(found)
    assert home.decisions()["pinned-support-bots"]["decision"] == "enable_maml"


def test_require_strong_evidence_sends_enables_without_strong_evidence_to_collect_more(home: Home) -> None:
    grades = {r["spike_run_id"]: r["grade"] for r in home.rows("SELECT spike_run_id, grade FROM evidence_strength")}
    decisions = home.decisions()
    expected = {
        run_id: ("enable_maml", "collect_more_evidence", "evidence_strength")
        for run_id, row in decisions.items()
        if row["decision"] == "enable_maml" and grades[run_id] != "strong"
    }
    assert expected, "the template has enabled spike runs without strong evidence"
    assert any(row["decision"] == "enable_maml" and grades[r] == "strong" for r, row in decisions.items())
    assert flips_of(whatif_json(home, {"require_strong_evidence": True})) == expected


def test_switching_a_guard_off_with_null(home: Home) -> None:
    """A guard the policy in force sets, switched off by --set ...=null: as a policy without it re-judges."""
    home.write_policy({"max_project_accuracy_regression_pp": 0.5, "min_projects": 4})
    reevaluate(home.store)
    stored = mix(home)
    for spelling in ("null", "none", "NULL"):
        done = home.cli("whatif", "--set", f"max_project_accuracy_regression_pp={spelling}", "--format", "json")
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        assert found["policy"]["max_project_accuracy_regression_pp"] is None
        assert found["policy"]["min_projects"] == 4  # the rest of the policy in force stays
        assert found["before"] == stored
        assert found["flips"]
    changes, after = reevaluated(home, toml_text({"min_projects": 4}))
    assert flips_of(found) == changes
    assert found["after"] == after


def test_table_output(home: Home) -> None:
    as_json = whatif_json(home, POLICY_B)
    done = home.cli("whatif", *sets(POLICY_B), "--show", "1")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"what-if over {home.evidence} (nothing is recorded)"
    assert lines[1] == "policy in force: defaults (no thresholds.toml)"
    text = " ".join(" ".join(line.split()) for line in lines)
    for changed in ("min_projects 3 -> 4", "max_training_overhead_pct 50 -> 25", "gpu_hour_usd 2.5 -> 6"):
        assert changed in text
    assert "max_mean_accuracy_regression_pp 1 -> 2.5" in text
    assert "note: 2 spike runs set min_projects in the payload, which wins" in text
    for decision in as_json["before"].keys() | as_json["after"].keys():
        old, new = as_json["before"].get(decision, 0), as_json["after"].get(decision, 0)
        change = f"{new - old:+d}" if new != old else "0"
        assert f"{decision} {old} {new} {change}" in text
    total = sum(as_json["before"].values())
    assert f"total {total} {total}" in text
    flips = as_json["flips"]
    assert f"{len(flips)} of {total} decisions would change" in text
    first = flips[0]
    assert f"{first['spike_run_id']}: {first['from']} -> {first['to']} (cause: {first['cause_check']})" in text
    assert flips[1]["spike_run_id"] not in text
    assert f"...and {len(flips) - 1} more" in text


def test_a_setting_as_in_force_is_said_so(home: Home) -> None:
    home.write_policy({"min_projects": 4})
    done = home.cli("whatif", "--set", "min_projects=4")
    assert done.returncode == 0, done.stderr
    assert " ".join(done.stdout.split()).count("min_projects 4 (as in force)") == 1
    assert f"policy in force: {home.policy_file}" in done.stdout


@pytest.mark.parametrize(
    ("argument", "toml"),
    [
        ("mni_projects=4", "mni_projects = 4"),
        ("min_projects=2.5", "min_projects = 2.5"),
        ("min_relative_step_reduction=25", "min_relative_step_reduction = 25"),
        ("require_strong_evidence=yes", 'require_strong_evidence = "yes"'),
        ("gpu_hour_usd=-1", "gpu_hour_usd = -1"),
        ("max_training_overhead_pct=inf", "max_training_overhead_pct = inf"),
        ("max_project_accuracy_regression_pp=[1]", "max_project_accuracy_regression_pp = [1]"),
    ],
)
def test_bad_keys_and_values_get_the_policy_files_messages(home: Home, argument: str, toml: str) -> None:
    before = tree(home.evidence)
    done = home.cli("whatif", "--set", argument, "--set", "trigger_mean_steps=5")
    with pytest.raises(PayloadValidationError) as expected:
        parse_policy(toml, "thresholds.toml")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --set: invalid threshold policy (1 problem):\n")
    assert done.stderr.splitlines()[1:] == expected.value.render().splitlines()[1:]
    assert tree(home.evidence) == before


def test_every_bad_setting_at_once_and_null_where_no_guard(home: Home) -> None:
    done = home.cli("whatif", "--set", "min_projects=null", "--set", "require_strong_evidence=none", "--set", "x=1")
    assert done.returncode == 2
    assert "(3 problems)" in done.stderr
    assert "min_projects: expected a whole number between 0 and 1000000, got null" in done.stderr
    assert "require_strong_evidence: expected true or false, got null" in done.stderr
    assert "x: unknown key 'x'; valid keys are: min_projects," in done.stderr


@pytest.mark.parametrize("argument", ["min_projects", "=4", "min_projects:4"])
def test_a_set_without_key_and_value_is_a_usage_error(home: Home, argument: str) -> None:
    done = home.cli("whatif", "--set", argument)
    assert done.returncode == 2
    assert done.stderr == f"error: --set {argument!r}: expected KEY=VALUE, e.g. --set min_projects=4\n"
    assert done.stdout == ""


def test_no_set_and_a_broken_policy_file_are_usage_errors(home: Home) -> None:
    done = home.cli("whatif")
    assert done.returncode == 2
    assert "the following arguments are required: --set" in done.stderr
    home.policy_file.write_text("min_projects = 'four'\n", encoding="utf-8")
    done = home.cli("whatif", "--set", "gpu_hour_usd=3")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {home.policy_file}: invalid threshold policy (1 problem):")
    assert "Traceback" not in done.stderr


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "empty").ensure()
    before = tree(store.home.root)
    for home in (store.home.root, tmp_path / "missing"):
        command = [str(BIN / "maml-evidence"), "whatif", "--set", "min_projects=4", "--home", str(home)]
        env = {k: v for k, v in os.environ.items() if k not in ("MAML_EVIDENCE_HOME", "DAGSTER_HOME")}
        done = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert (done.returncode, done.stderr) == (0, "")
        found = json.loads(done.stdout)
        assert (found["before"], found["after"], found["flips"]) == ({}, {}, [])
        assert found["policy"]["min_projects"] == 4
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0
        assert done.stdout.splitlines()[-1] == "no decisions stored: nothing to judge again"
    assert tree(store.home.root) == before
    assert not (tmp_path / "missing").exists()  # a what-if creates no evidence home
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nor anything in its working folder


def test_does_not_wait_for_the_decisions_lock(home: Home) -> None:
    """A committer holding the decisions lock (ingest, re-evaluation) does not hold a what-if up."""
    with file_lock(home.store.home.locks / "decisions.lock", blocking=False) as taken:
        assert taken
        done = home.cli("whatif", "--set", "min_projects=4", "--format", "json", timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["flips"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", 4),
        ("0.5", 0.5),
        ("1e1", 10.0),
        ("1_000", 1000),
        ("true", True),
        ("false", False),
        ("null", None),
        ("None", None),
        (" 3 ", 3),
        ("yes", "yes"),
        ("True", "True"),  # TOML and JSON spell it true: the policy's message then says so
    ],
)
def test_values_read_as_toml_or_json_scalars(text: str, value: object) -> None:
    parsed = parse_scalar(text)
    assert parsed == value
    assert type(parsed) is type(value)
