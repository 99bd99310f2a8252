"""An evidence home whose path DuckDB would read as a file pattern is refused up front, with the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


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
