"""`maml-evidence collect` end to end: a real server, the real command, the real ingest, decisions written back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from maml_evidence_tests.mlflow.conftest import Experiment, free_port
from maml_evidence_tests.samples import BIN, SAMPLE_DECISIONS, SAMPLE_INBOX

SPIKES = ["2026-10-06-support-bots-enable", "2026-10-20-code-review-low-effect"]


def command(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MAML_EVIDENCE_HOME": str(home), **(env or {})}
    environment.pop("DAGSTER_HOME", None)  # the evidence home's own instance
    return subprocess.run(
        [str(BIN / "maml-evidence"), *args], env=environment, capture_output=True, text=True, timeout=300
    )


def lines(output: str) -> dict[str, str]:
    """spike run id -> its line, for the lines that name one."""
    out = {}
    for line in output.splitlines():
        for spike in [*SAMPLE_DECISIONS, "broken-spike"]:
            if f" {spike}  (" in line:
                out[spike] = line
    return out


def test_collect_then_ingest_then_write_back(tracking_uri: str, experiment: Experiment, tmp_path: Path) -> None:
    home = tmp_path / "evidence"
    parents = {}
    for spike in SPIKES:
        parents[spike] = experiment.log_payload(spike, json.loads((SAMPLE_INBOX / f"{spike}.json").read_text()))
    broken = experiment.parent("broken-spike")  # ready, but no arm has any run
    uri = ["--tracking-uri", tracking_uri, "--experiment", experiment.name]

    collected = command("collect", *uri, "--to-inbox", home=home)

    assert collected.returncode == 1, collected.stderr  # one spike could not be assembled
    shown = lines(collected.stdout)
    for spike in SPIKES:
        assert shown[spike].startswith("written ") and parents[spike] in shown[spike]
        assert (home / "inbox" / f"{spike}.json").is_file()
    assert shown["broken-spike"].startswith("error ") and broken in shown["broken-spike"]
    assert "arm baseline has no runs" in shown["broken-spike"]
    assert not (home / "inbox" / "broken-spike.json").exists()

    ingested = command("ingest", home=home)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    for spike in SPIKES:
        assert f"{SAMPLE_DECISIONS[spike]:<28} {spike}" in ingested.stdout
        report = json.loads((home / "reports" / spike / "report.json").read_text())
        links = report["provenance"]["mlflow"]
        assert links["parent_run_id"] == parents[spike]
        assert (
            links["parent_run_url"] == f"{tracking_uri}/#/experiments/{experiment.experiment_id}/runs/{parents[spike]}"
        )
        assert set(links["run_urls"]) == {i for label, i in experiment.runs.items() if label.startswith(spike)}

    again = command("collect", *uri, "--output", str(tmp_path / "out"), "--write-back", home=home)

    assert again.returncode == 1  # the broken spike is still broken
    shown = lines(again.stdout)
    for spike in SPIKES:
        report = json.loads((home / "reports" / spike / "report.json").read_text())
        tags = experiment.client.get_run(parents[spike]).data.tags
        assert tags["maml_evidence.decision"] == SAMPLE_DECISIONS[spike] == report["decision"]
        assert tags["maml_evidence.failed_check"] == (report["failed_check"] or "none")
        assert tags["maml_evidence.evidence_grade"] == report["evidence"]["grade"]
        assert tags["maml_evidence.policy_version"] == report["provenance"]["policy_version"]
        assert tags["maml_evidence.report_path"] == str((home / "reports" / spike / "report.json").resolve())
        assert "skipped (already stored)" in [line for line in again.stdout.splitlines() if spike in line][-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert "maml_evidence.decision" not in experiment.client.get_run(broken).data.tags

    # by id, a stored spike is collected again (same runs, same bytes)
    by_id = command("collect", *uri, "--spike-run-id", SPIKES[0], "--output", str(tmp_path / "out"), home=home)
    assert by_id.returncode == 0, by_id.stdout + by_id.stderr
    assert (tmp_path / "out" / f"{SPIKES[0]}.json").read_bytes() == (home / "inbox" / f"{SPIKES[0]}.json").read_bytes()


def test_an_unreachable_server_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "evidence"
    dead = f"http://127.0.0.1:{free_port()}"  # MLFLOW_TRACKING_URI is honoured without --tracking-uri

    result = command("collect", "--experiment", "spikes", home=home, env={"MLFLOW_TRACKING_URI": dead})

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"error: MLflow tracking server {dead} is unreachable" in result.stderr
    assert not home.exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    env = {key: "" for key in ("MLFLOW_TRACKING_URI",)}
    result = command("collect", "--experiment", "spikes", home=tmp_path / "evidence", env=env)
    assert result.returncode == 2 and "give --tracking-uri URI or set MLFLOW_TRACKING_URI" in result.stderr
    both = command("collect", "--experiment", "x", "--to-inbox", "--output", "d", home=tmp_path / "evidence")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_without_mlflow_installed_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['mlflow'] = None\n"  # import mlflow raises ImportError, as when not installed
        "from maml_evidence.cli import main\n"
        "sys.exit(main(['collect', '--tracking-uri', 'sqlite:///x.db', '--experiment', 'e']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert 'pip install -e ".[mlflow]"' in result.stderr


def test_neither_the_gate_nor_the_definitions_import_mlflow() -> None:
    code = (
        "import sys\n"
        "import maml_evidence.cli, maml_evidence.definitions, maml_evidence.sources.mlflow\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_spike_with_a_project_in_one_arm_needs_the_flag(
    tracking_uri: str, experiment: Experiment, tmp_path: Path
) -> None:
    spike = "2026-11-10-search-ranking-more-evidence"  # a project in one arm only
    experiment.log_payload(spike, json.loads((SAMPLE_INBOX / f"{spike}.json").read_text()))
    uri = ["--tracking-uri", tracking_uri, "--experiment", experiment.name, "--output", str(tmp_path / "out")]

    refused = command("collect", *uri, home=tmp_path / "evidence")
    assert refused.returncode == 1 and "--allow-unmatched-projects" in lines(refused.stdout)[spike]
    assert not (tmp_path / "out" / f"{spike}.json").exists()

    allowed = command("collect", *uri, "--allow-unmatched-projects", home=tmp_path / "evidence")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "note: project" in lines(allowed.stdout)[spike]
    assert json.loads((tmp_path / "out" / f"{spike}.json").read_text())["spike_run_id"] == spike
