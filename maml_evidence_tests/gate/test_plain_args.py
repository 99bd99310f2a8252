"""The gate command reads its plain command lines without argparse, exactly as argparse would read them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from maml_evidence.cli import gate_parser, plain_gate_args

FIELDS = ("input", "output", "enforce_enable")


@pytest.mark.parametrize(
    "argv",
    [
        ["--input", "spike.json"],
        ["--input=spike.json"],
        ["--input", "spike.json", "--output", "out/report.json"],
        ["--output=r.json", "--enforce-enable", "--input", "a b.json"],
        ["--enforce-enable", "--input", "x=y.json"],
        ["--input", "café.json", "--output", "r.json", "--enforce-enable"],
    ],
)
def test_plain_command_lines_read_as_argparse_reads_them(argv: list[str]) -> None:
    plain = plain_gate_args(argv)
    assert plain is not None
    parsed = gate_parser().parse_args(argv)
    assert {f: getattr(plain, f) for f in FIELDS} == {f: getattr(parsed, f) for f in FIELDS}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["--inp", "spike.json"],  # an abbreviation: argparse's call
        ["--input"],
        ["--input", "--output", "r.json"],
        ["--input", "a.json", "--input", "b.json"],
        ["--input", "a.json", "--enforce-enable", "--enforce-enable"],
        ["--input="],
        ["--input", "-"],
        ["--input", "a.json", "extra"],
        ["--output", "r.json"],
    ],
)
def test_everything_else_goes_to_argparse(argv: list[str]) -> None:
    assert plain_gate_args(argv) is None


def test_a_plain_run_never_imports_argparse(tmp_path) -> None:  # noqa: ANN001
    payload = tmp_path / "spike.json"
    payload.write_text(
        '{"baseline": {"per_project_adaptation": [], "train_minutes": 1},'
        ' "candidate": {"per_project_adaptation": [], "train_minutes": 1}}'
    )
    code = (
        "import sys; from maml_evidence.cli import gate_main; "
        f"rc = gate_main(['--input', {str(payload)!r}]); "
        "print('argparse' in sys.modules, rc, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().splitlines()[-1] == "False 0", result.stderr
