"""The ``maml-evidence`` and ``maml-feasibility-gate`` commands.

The gate path imports only the standard library and the pure gate core: a CI job calls it once per
payload, so its start-up must stay close to a bare ``python -c``. Every other subcommand imports its
heavy dependencies (Dagster, DuckDB) inside its handler.
"""

from __future__ import annotations

import argparse
import json
import sys

from maml_evidence.gate import PayloadValidationError, load_payload_file, render_interpretation
from maml_evidence.gate.report import evaluate_feasibility

EXIT_OK, EXIT_NOT_ENABLED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A failure the user can act on; printed without a traceback, exit code 2."""


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's default formatter imports shutil (and bz2, lzma) only to size help text: ~2 ms of start-up."""
    import os

    try:
        width = os.get_terminal_size().columns - 2
    except OSError:
        width = 78
    return argparse.HelpFormatter(prog, width=max(width, 40))


def _add_gate_arguments(parser: argparse.ArgumentParser, *, with_format: bool) -> None:
    parser.add_argument("--input", required=True, metavar="PATH", help="spike payload JSON file")
    parser.add_argument("--output", metavar="PATH", help="also write the JSON report here (parent folders are created)")
    parser.add_argument(
        "--enforce-enable", action="store_true", help="exit with code 1 unless the decision is enable_maml"
    )
    if with_format:
        parser.add_argument(
            "--format",
            choices=("json", "markdown"),
            default="json",
            help="stdout shows the JSON report (default) or its Markdown interpretation; --output is always JSON",
        )


def _write_text(path: str, text: str) -> None:
    import os
    import tempfile

    target = os.path.abspath(path)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise CommandError(f"--output {path}: cannot write the report: {exc.strerror or exc}") from None


def run_gate(args: argparse.Namespace) -> int:
    """Evaluate one payload file; print the report; exit 0, or 1 under --enforce-enable when not enabled."""
    report = evaluate_feasibility(load_payload_file(args.input))
    rendered = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        _write_text(args.output, rendered)
    if getattr(args, "format", "json") == "markdown":
        sys.stdout.write(render_interpretation(report))
    else:
        sys.stdout.write(rendered)
    if args.enforce_enable and report["decision"] != "enable_maml":
        return EXIT_NOT_ENABLED
    return EXIT_OK


def _guarded(handler, args: argparse.Namespace) -> int:  # noqa: ANN001 - a subcommand handler
    try:
        return handler(args)
    except (PayloadValidationError, CommandError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def gate_main(argv: list[str] | None = None) -> int:
    """``maml-feasibility-gate``: the spec's command line (--input, --output, --enforce-enable)."""
    parser = argparse.ArgumentParser(
        prog="maml-feasibility-gate",
        description="Evidence-gated MAML feasibility harness (AFR-141).",
        formatter_class=_formatter,
    )
    _add_gate_arguments(parser, with_format=False)
    return _guarded(run_gate, parser.parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maml-evidence",
        description="Decide from evidence whether to enable MAML on top of LoRA, and keep that evidence.",
        formatter_class=_formatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gate = commands.add_parser(
        "gate", help="evaluate one spike payload file and print its decision report", formatter_class=_formatter
    )
    _add_gate_arguments(gate, with_format=True)
    gate.set_defaults(handler=run_gate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``maml-evidence``: the gate plus the evidence-store commands."""
    args = build_parser().parse_args(argv)
    return _guarded(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
