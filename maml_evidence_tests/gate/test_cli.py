"""The ``maml-evidence gate`` and ``maml-feasibility-gate`` command lines, run for real in subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maml_evidence import evaluate_feasibility, render_interpretation
from maml_evidence.gate import Thresholds, effective_settings, validate_payload
from maml_evidence.gate.economics import economics
from maml_evidence.gate.report import evaluate_payload
from maml_evidence.strength import evidence_section, interpretation_with_evidence
from maml_evidence_tests.gate.conftest import (
    BIN,
    DECISION_FIXTURES,
    FIXTURES,
    REPO_ROOT,
    load_fixture,
    minimal_payload,
    run_cli,
)

MINIMAL = str(FIXTURES / "minimal.json")
HEAVY = ("dagster", "pandas", "duckdb", "pyarrow", "pydantic", "numpy")


def with_evidence(payload: dict) -> dict:
    """What ``maml-evidence gate`` reports: the spec's report plus the evidence and break-even sections."""
    metrics, verdict, report = evaluate_payload(validate_payload(payload))
    settings = effective_settings(
        None, report_overrides(payload, "thresholds"), report_overrides(payload, "cost_profile")
    )
    found = economics(metrics.inputs.mean_step_reduction, verdict.extra_gpu_cost_usd_per_run, settings)
    return {
        **report,
        "economics": {k: round(v, 4) if isinstance(v, float) else v for k, v in found.items()},
        "evidence": evidence_section(metrics, verdict, Thresholds(**report["thresholds"])),
    }


def report_overrides(payload: dict, key: str) -> dict:
    return (
        validate_payload(payload).threshold_overrides
        if key == "thresholds"
        else validate_payload(payload).cost_overrides
    )


def strict_loads(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-JSON number {token} in output")

    return json.loads(text, parse_constant=refuse)


def gate(*args: str):
    return run_cli("gate", *args, script="maml-evidence")


def spec_gate(*args: str):
    return run_cli(*args, script="maml-feasibility-gate")


def assert_usage_error(result) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr


def test_console_scripts_are_installed():
    for name in ("maml-evidence", "maml-feasibility-gate"):
        assert (BIN / name).exists(), name


def test_gate_prints_the_json_report_and_exits_0():
    result = gate("--input", MINIMAL)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = strict_loads(result.stdout)
    assert report == with_evidence(minimal_payload())
    extended = ("evidence", "economics")
    assert {key: value for key, value in report.items() if key not in extended} == evaluate_feasibility(
        minimal_payload()
    )
    assert report["evidence"]["projects"] == 3 and report["evidence"]["grade"] in ("suggestive", "insufficient")
    assert report["decision"] == "enable_maml"
    assert report["cost"]["extra_training_minutes"] == 18.0


def test_explicit_json_format_is_the_default():
    assert gate("--input", MINIMAL, "--format", "json").stdout == gate("--input", MINIMAL).stdout


def test_module_entry_point_matches_console_script():
    assert run_cli("gate", "--input", MINIMAL).stdout == gate("--input", MINIMAL).stdout


@pytest.mark.parametrize("name", sorted(DECISION_FIXTURES), ids=lambda n: n.removesuffix(".json"))
@pytest.mark.parametrize("command", ["maml-evidence", "maml-feasibility-gate"])
def test_enforce_enable_exit_codes(name, command):
    path = str(FIXTURES / name)
    run = gate if command == "maml-evidence" else spec_gate
    expected = DECISION_FIXTURES[name]
    plain = run("--input", path)
    assert plain.returncode == 0, plain.stderr
    enforced = run("--input", path, "--enforce-enable")
    assert enforced.returncode == (0 if expected == "enable_maml" else 1), enforced.stderr
    # the report is still printed when the gate blocks
    assert strict_loads(enforced.stdout)["decision"] == expected
    assert enforced.stdout == plain.stdout
    assert "Traceback" not in enforced.stderr


def test_enforce_enable_on_invalid_input_is_2_not_1(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text('{"baseline": {}}', encoding="utf-8")
    assert_usage_error(gate("--input", str(path), "--enforce-enable"))
    assert_usage_error(spec_gate("--input", str(path), "--enforce-enable"))


@pytest.mark.parametrize("command", ["maml-evidence", "maml-feasibility-gate"])
def test_output_creates_parent_folders_and_matches_stdout(tmp_path: Path, command):
    target = tmp_path / "reports" / "2024" / "run-1" / "report.json"
    run = gate if command == "maml-evidence" else spec_gate
    result = run("--input", MINIMAL, "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8") == result.stdout
    assert strict_loads(target.read_text(encoding="utf-8"))["decision"] == "enable_maml"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # no temporary files left


def test_output_overwrites_an_existing_report(tmp_path: Path):
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    result = gate("--input", str(FIXTURES / "cost_too_high.json"), "--output", str(target))
    assert result.returncode == 0
    assert strict_loads(target.read_text(encoding="utf-8"))["decision"] == "defer_maml_cost_too_high"


def test_output_is_json_even_when_stdout_is_markdown(tmp_path: Path):
    target = tmp_path / "out" / "report.json"
    result = gate("--input", MINIMAL, "--output", str(target), "--format", "markdown")
    assert result.returncode == 0
    report = strict_loads(target.read_text(encoding="utf-8"))
    assert result.stdout == interpretation_with_evidence(report)
    assert target.read_text(encoding="utf-8") == gate("--input", MINIMAL).stdout


def test_invalid_input_writes_no_output(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    target = tmp_path / "out" / "report.json"
    assert_usage_error(gate("--input", str(bad), "--output", str(target)))
    assert not target.exists()


def test_unwritable_output_is_a_clean_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = gate("--input", MINIMAL, "--output", str(blocker / "report.json"))
    assert_usage_error(result)
    assert "--output" in result.stderr


def test_output_onto_a_directory_is_a_clean_error_and_leaves_no_temporary_file(tmp_path: Path):
    (tmp_path / "report.json").mkdir()
    result = gate("--input", MINIMAL, "--output", str(tmp_path / "report.json"))
    assert_usage_error(result)
    assert "--output" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("name", ["minimal.json", "cost_too_high.json", "collect_more_evidence.json"])
def test_markdown_format_prints_the_interpretation(name):
    result = gate("--input", str(FIXTURES / name), "--format", "markdown")
    assert result.returncode == 0, result.stderr
    report = with_evidence(load_fixture(name))
    assert result.stdout == interpretation_with_evidence(report)
    # the plain reading first, then the break-even sentence (its inputs are not given here), then how sure it is
    plain = render_interpretation(evaluate_feasibility(load_fixture(name)))
    assert result.stdout.startswith(plain.split("Judged over")[0])
    assert "Break-even needs `adaptations_per_month` and `minutes_per_adaptation_step`" in result.stdout
    assert f"**How sure is this: {report['evidence']['grade']}.**" in result.stdout
    assert result.stdout.startswith(f"# MAML feasibility: `{report['decision']}`")
    if report["failed_check"]:
        assert f"`{report['failed_check']}`" in result.stdout


def test_markdown_with_enforce_enable_still_exits_1_for_a_deferral():
    result = gate("--input", str(FIXTURES / "low_effect.json"), "--format", "markdown", "--enforce-enable")
    assert result.returncode == 1
    assert "`effectiveness_ok`" in result.stdout


def test_spec_command_line_works_with_the_script_name_changed(tmp_path: Path):
    target = tmp_path / "maml_report.json"
    result = spec_gate("--input", MINIMAL, "--output", str(target), "--enforce-enable")
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8") == result.stdout
    # maml-evidence gate prints the same report plus its evidence and break-even sections
    evidence_report = strict_loads(gate("--input", MINIMAL).stdout)
    extended = ("evidence", "economics")
    assert not set(extended) & set(strict_loads(result.stdout))
    assert strict_loads(result.stdout) == {k: v for k, v in evidence_report.items() if k not in extended}


def test_spec_gate_accepts_exactly_the_spec_flags():
    result = spec_gate("--help")
    assert result.returncode == 0
    assert set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", result.stdout)) == {
        "--help",
        "--input",
        "--output",
        "--enforce-enable",
    }


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_spec_gate_rejects_format(fmt):
    result = spec_gate("--input", MINIMAL, "--format", fmt)
    assert_usage_error(result)
    assert "unrecognized arguments" in result.stderr and "--format" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-command"),
        pytest.param(["nonsense"], id="unknown-command"),
        pytest.param(["gate"], id="gate-without-input"),
        pytest.param(["gate", "--input"], id="input-without-value"),
        pytest.param(["gate", "--input", MINIMAL, "--format", "xml"], id="bad-format"),
        pytest.param(["gate", "--input", MINIMAL, "--bogus"], id="unknown-flag"),
        pytest.param(["gate", "--input", MINIMAL, "--output"], id="output-without-value"),
        pytest.param(["gate", "--input", MINIMAL, "extra"], id="stray-positional"),
    ],
)
def test_maml_evidence_usage_errors(args):
    result = run_cli(*args, script="maml-evidence")
    assert_usage_error(result)
    assert "usage:" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-input"),
        pytest.param(["gate", "--input", MINIMAL], id="subcommand-style"),
        pytest.param(["--input", MINIMAL, "--enforce-enable=yes"], id="flag-with-value"),
    ],
)
def test_spec_gate_usage_errors(args):
    result = spec_gate(*args)
    assert_usage_error(result)
    assert "usage: maml-feasibility-gate" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["gate", "--help"]])
def test_help_exits_0(args):
    result = run_cli(*args, script="maml-evidence")
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_non_ascii_project_names_are_written_as_utf8(tmp_path: Path):
    payload = minimal_payload()
    for arm in ("baseline", "candidate"):
        payload[arm]["per_project_adaptation"][0]["project"] = "项目-ü"
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    result = gate("--input", str(path))
    assert result.returncode == 0, result.stderr
    assert strict_loads(result.stdout)["project_alignment"]["common_projects"][0] == "项目-ü"


def test_spike_run_id_is_carried_into_the_report(tmp_path: Path):
    payload = minimal_payload()
    payload["spike_run_id"] = "afr-141-run-7"
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    assert strict_loads(gate("--input", str(path)).stdout)["spike_run_id"] == "afr-141-run-7"
    assert "`afr-141-run-7`" in gate("--input", str(path), "--format", "markdown").stdout


IMPORT_PROBE = """
import contextlib, io, json, sys
import maml_evidence.cli as cli
watched = set(sys.argv[3].split(","))
def loaded():
    return sorted({name.split(".")[0] for name in sys.modules} & watched)
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    # maml-feasibility-gate: the plain command line, an abbreviation (parsed by argparse), a bad payload
    spec_codes = [
        cli.gate_main(["--input", sys.argv[1]]),
        cli.gate_main(["--inp", sys.argv[1]]),
        cli.gate_main(["--input", sys.argv[2]]),
    ]
    spec_loaded = loaded()
    # maml-evidence gate, afterwards: it adds the evidence section (scipy, imported lazily)
    codes = [
        cli.main(["gate", "--input", sys.argv[1], "--format", "markdown"]),
        cli.main(["gate", "--input", sys.argv[2]]),
    ]
print(json.dumps({"spec_codes": spec_codes, "spec_loaded": spec_loaded, "codes": codes, "loaded": loaded(),
                  "printed": len(out.getvalue()), "errors": err.getvalue()}))
"""


def _probe(first: str, second: str, watched: tuple[str, ...], *, full_names: bool = False) -> dict:
    probe = IMPORT_PROBE
    if full_names:
        probe = probe.replace('name.split(".")[0] for name in sys.modules', "name for name in sys.modules")
    result = subprocess.run(
        [sys.executable, "-c", probe, first, second, ",".join(watched)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gate_command_does_not_import_heavy_dependencies(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"baseline": 1}', encoding="utf-8")
    # argparse is a positive control: it is loaded, so the probe does see imports
    probe = _probe(MINIMAL, str(bad), ("argparse", "scipy", *HEAVY))
    assert probe["spec_codes"] == [0, 0, 2] and probe["codes"] == [0, 2]
    assert probe["printed"] > 0 and "baseline" in probe["errors"]
    assert probe["spec_loaded"] == ["argparse"], f"maml-feasibility-gate imported {probe['spec_loaded']}"
    # maml-evidence gate loads scipy (and numpy) for its evidence section, and nothing else that is heavy
    assert probe["loaded"] == ["argparse", "numpy", "scipy"], f"maml-evidence gate imported {probe['loaded']}"


def test_importing_the_package_does_not_import_heavy_dependencies():
    code = "import sys, maml_evidence, maml_evidence.strength; print(sorted({m.split('.')[0] for m in sys.modules}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.replace("'", '"')))
    assert loaded.isdisjoint({"scipy", *HEAVY}), sorted(loaded & {"scipy", *HEAVY})


# Modules whose import costs the gate command a measurable share of its start-up (FACTS.md): typing-only
# imports stay under TYPE_CHECKING, records are not dataclasses, and the payload's BOM is not a codec lookup.
SLOW_TO_IMPORT = ("typing", "dataclasses", "inspect", "encodings.utf_8_sig")


def test_gate_command_does_not_import_slow_standard_modules(tmp_path: Path):
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "minimal.json").read_bytes())
    outcome = _probe(str(bom), MINIMAL, ("argparse", *SLOW_TO_IMPORT), full_names=True)
    assert outcome["spec_codes"] == [0, 0, 0], outcome
    assert outcome["spec_loaded"] == ["argparse"], f"maml-feasibility-gate imported {outcome['spec_loaded']}"


def test_duplicate_keys_are_all_reported_with_their_paths(tmp_path: Path):
    text = (FIXTURES / "minimal.json").read_text(encoding="utf-8")
    # a repeated arm whose first value (the one a last-wins reader would drop) repeats a key itself
    text = text.replace('"baseline": {', '"baseline": {"train_minutes": 1, "train_minutes": 2}, "baseline": {', 1)
    text = text.replace('"train_minutes": 55.0', '"train_minutes": 55.0, "train_minutes": 50.0', 1)
    path = tmp_path / "payload.json"
    path.write_text(text, encoding="utf-8")
    result = spec_gate("--input", str(path))
    assert_usage_error(result)
    assert "(3 problems)" in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("- ")]
    assert [line.split(":")[0] for line in lines] == [
        "- baseline",
        "- baseline.train_minutes",
        "- candidate.train_minutes",
    ]
    assert all("duplicate key" in line for line in lines)
    assert 'duplicate key "train_minutes" (2 times in one object)' in result.stderr
