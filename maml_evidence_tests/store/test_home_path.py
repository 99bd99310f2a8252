"""An evidence home whose path DuckDB would read as a file pattern is refused up front, with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maml_evidence_tests.samples import SAMPLE_DECISIONS, SAMPLE_INBOX, ingest_decisions


@pytest.mark.parametrize("name", ["it's [evidence]", "star*home", "what?", "{a,b}"])
def test_a_home_path_with_glob_characters_is_refused_clearly(tmp_path: Path, name: str) -> None:
    home = tmp_path / name
    command = [sys.executable, "-m", "maml_evidence.cli", "sql", "SELECT 1", "--home", str(home)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "DuckDB reads as a file pattern" in result.stderr and name in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not home.exists()  # nothing was created there


def test_a_quote_in_the_home_path_is_fine(tmp_path: Path) -> None:
    home = tmp_path / "team's evidence"
    command = [sys.executable, "-m", "maml_evidence.cli", "sql", "SELECT count(*) AS n FROM gate_decisions", "--home"]
    result = subprocess.run([*command, str(home), "--format", "csv"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["n", "0"]


def test_the_inbox_can_live_outside_the_home(tmp_path: Path) -> None:
    """``$MAML_EVIDENCE_INBOX`` moves the inbox (a bucket home needs it on the machine; a local one may use it)."""
    home, inbox = tmp_path / "home", tmp_path / "drop box"
    inbox.mkdir()
    [sample] = [p for p in SAMPLE_INBOX.glob("*.json") if p.stem.endswith("support-bots-enable")]
    shutil.copy(sample, inbox / sample.name)
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MAML_EVIDENCE_HOME")}
    command = [sys.executable, "-m", "maml_evidence.cli", "ingest", "--home", str(home)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**env, "MAML_EVIDENCE_INBOX": str(inbox)}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ingest_decisions(result.stdout) == {sample.stem: SAMPLE_DECISIONS[sample.stem]}
    assert not (home / "inbox").exists() or not any((home / "inbox").iterdir())
    assert (home / "reports" / sample.stem / "report.json").is_file()
