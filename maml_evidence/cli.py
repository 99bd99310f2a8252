"""The ``maml-evidence`` and ``maml-feasibility-gate`` commands.

The gate path imports only the standard library and the pure gate core: a CI job calls it once per
payload, so its start-up must stay close to a bare ``python -c``. Every other subcommand imports its
heavy dependencies (Dagster, DuckDB) inside its handler.
"""

from __future__ import annotations

import json
import os
import sys

from maml_evidence.gate import PayloadValidationError, load_payload_file, render_interpretation, validate_payload
from maml_evidence.gate.record import TYPE_CHECKING  # False at run time, without importing typing
from maml_evidence.gate.report import evaluate_payload

if TYPE_CHECKING:
    import argparse

EXIT_OK, EXIT_USAGE = 0, 2
EXIT_NOT_ENABLED = 1  # the gate under --enforce-enable: the decision is not enable_maml
EXIT_FAILED = 1  # a store command did not get everything done (quarantined, failed, damaged, pending)


class CommandError(Exception):
    """A failure the user can act on; printed without a traceback, exit code 2."""


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's default formatter imports shutil (and bz2, lzma) only to size help text: ~2 ms of start-up."""
    import argparse
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
    from pathlib import Path

    from maml_evidence.store.files import atomic_write_text  # standard library only: the gate stays light

    try:
        atomic_write_text(Path(path).absolute(), text)
    except OSError as exc:
        raise CommandError(f"--output {path}: cannot write the report: {exc.strerror or exc}") from None


def run_gate(args: argparse.Namespace | _GateArgs, *, with_evidence: bool = False) -> int:
    """Evaluate one payload file; print the report; exit 0, or 1 under --enforce-enable when not enabled.

    ``with_evidence`` (``maml-evidence gate``) adds the ``evidence`` section, how sure the decision is, computed
    with scipy (imported only then); ``maml-feasibility-gate`` prints the spec's report with the standard library.
    """
    # validate with the file as source, so field errors name the file as reading and parsing errors do
    payload = validate_payload(load_payload_file(args.input), args.input)
    render = render_interpretation
    if with_evidence:
        from maml_evidence.strength import evaluate_with_evidence, interpretation_with_evidence

        # measured before judging, so a payload that requires strong evidence is judged on it
        report = evaluate_with_evidence(payload).report
        render = interpretation_with_evidence
    else:
        report = evaluate_payload(payload)[2]
    rendered = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        _write_text(args.output, rendered)
    if getattr(args, "format", "json") == "markdown":
        sys.stdout.write(render(report))
    else:
        sys.stdout.write(rendered)
    if args.enforce_enable and report["decision"] != "enable_maml":
        return EXIT_NOT_ENABLED
    return EXIT_OK


def run_evidence_gate(args: argparse.Namespace) -> int:
    """``maml-evidence gate``: the gate's report with the evidence section (and its paragraph in Markdown)."""
    return run_gate(args, with_evidence=True)


def _guarded(handler, args: argparse.Namespace | _GateArgs) -> int:  # noqa: ANN001 - a subcommand handler
    try:
        return handler(args)
    except (PayloadValidationError, CommandError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except ValueError as exc:  # the evidence home's Dagster instance cannot be opened (its Postgres storage)
        from maml_evidence.deploy.instance import InstanceError  # only on this path: the gate's start-up is bare

        if not isinstance(exc, InstanceError):
            raise
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


class _GateArgs:
    """The gate's arguments as argparse's Namespace would hold them (``format`` only for ``maml-evidence gate``)."""

    def __init__(self, input: str, output: str | None, enforce_enable: bool) -> None:  # noqa: A002 - the flag
        self.input, self.output, self.enforce_enable = input, output, enforce_enable


def plain_gate_args(argv: list[str]) -> _GateArgs | None:
    """The spec's flags in their plain forms, read without argparse; None for anything else.

    A CI job runs the gate once per payload, and importing and building argparse is about a third of the
    command's start-up. Only unambiguous command lines are read here (``--input P``, ``--input=P``, the same for
    ``--output``, ``--enforce-enable``, each at most once, values not starting with ``-``); everything else
    (``--help``, abbreviations, repeats, mistakes) goes to argparse, which parses or reports it as always. A test
    holds the two to the same result.
    """
    values: dict[str, str] = {}
    enforce = False
    args = iter(argv)
    for arg in args:
        if arg == "--enforce-enable" and not enforce:
            enforce = True
            continue
        name, equals, value = arg.partition("=")
        if name not in ("--input", "--output") or name in values:
            return None
        if not equals:
            value = next(args, "-")
        if not value or value.startswith("-"):
            return None
        values[name] = value
    if "--input" not in values:
        return None
    return _GateArgs(values["--input"], values.get("--output"), enforce)


def gate_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="maml-feasibility-gate",
        description="Evidence-gated MAML feasibility harness (AFR-141).",
        formatter_class=_formatter,
    )
    _add_gate_arguments(parser, with_format=False)
    return parser


def gate_main(argv: list[str] | None = None) -> int:
    """``maml-feasibility-gate``: the spec's command line (--input, --output, --enforce-enable)."""
    args = plain_gate_args(sys.argv[1:] if argv is None else argv)
    return _guarded(run_gate, args if args is not None else gate_parser().parse_args(argv))


def _store(args: argparse.Namespace):  # noqa: ANN202 - EvidenceStore, imported lazily
    from maml_evidence.store import EvidenceStore, StoreError

    try:
        return EvidenceStore(args.home).ensure()
    except (StoreError, OSError) as exc:
        where = args.home or ("$MAML_EVIDENCE_HOME" if os.environ.get("MAML_EVIDENCE_HOME") else "(default)")
        raise CommandError(f"evidence home {where}: {exc}") from None


def _note(text: str) -> None:
    sys.stderr.write(f"note: {text}\n")


def run_ingest(args: argparse.Namespace) -> int:
    """Take inbox entries (or the given paths) in, evaluate them through the Dagster job; one line per entry.

    Every entry gets exactly one line, its name escaped so that it stays one printable line: the decision of its
    spike run, or QUARANTINED / skipped with the reason. Entries an earlier ingest reported and left in place are
    counted on one line. Exit 1 if anything was quarantined, skipped, failed or is still being evaluated elsewhere.
    """
    from pathlib import Path

    from maml_evidence.headless import ingest
    from maml_evidence.store import StoreError
    from maml_evidence.store.intake import QUARANTINED, REPORTED_FILE, SKIPPED, IntakeResult, printable

    def one_line(result: IntakeResult, limit: int = 2) -> str:
        """The reason on one line, without the path the line already names."""
        message = result.message.removeprefix(f"{printable(str(result.path))}: ")
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        more = f" (+{len(lines) - limit} more, see the .reason.txt)" if len(lines) > limit else ""
        return " ".join(lines[:limit]) + more

    store = _store(args)
    store.policy()  # a broken policy file stops here with every problem named (exit 2), before any intake
    paths = [Path(p) for p in args.paths]
    try:
        report = ingest(store, paths or None, replace=args.replace, notify=_note)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    if not report.results:
        print(f"nothing to ingest: {printable(str(store.home.inbox))} is empty")
    runs_failed = [run for run in report.runs if not run.success]
    shown: set[str] = set()
    for result in report.results:
        if result.already_reported:
            continue
        if result.outcome == QUARANTINED:
            where = printable(str(result.quarantined_to or result.reason_file))
            print(f"{'QUARANTINED':<28} {result.display}  ({one_line(result)}) -> {where}")
            continue
        if result.outcome == SKIPPED:
            print(f"{'skipped':<28} {result.display}  ({one_line(result)})")
            continue
        run_id = result.spike_run_id or ""
        shown.add(run_id)
        row = report.decisions.get(run_id)
        if run_id in report.failed:
            print(f"{'failed':<28} {run_id}  ({report.failed[run_id]})")
        elif row:
            print(f"{row['decision']:<28} {run_id}  ({result.outcome}: {result.message})")
        elif run_id in report.pending:
            print(
                f"{'pending':<28} {run_id}  ({result.outcome}: {report.pending[run_id]}; its decision will show in "
                f"`maml-evidence sql \"FROM gate_decisions WHERE spike_run_id = '{run_id}'\"`)"
            )
        else:
            why = "see the run errors below" if runs_failed else "no decision stored; run `maml-evidence doctor`"
            print(f"{'not evaluated':<28} {run_id}  ({result.outcome}: {why})")
    for run_id, reason in report.failed.items():
        if run_id not in shown:
            print(f"{'failed':<28} {run_id}  ({reason})")
    earlier = [r for r in report.results if r.already_reported]
    if earlier:
        print(
            f"{'skipped (already reported)':<28} {len(earlier)} inbox entr{'y' if len(earlier) == 1 else 'ies'} "
            f"unchanged since an earlier ingest reported {'it' if len(earlier) == 1 else 'them'} (listed in "
            f"{printable(str(store.home.local_locks / REPORTED_FILE))})"
        )
    for run in runs_failed:
        sys.stderr.write(f"error: run {run.run_id} over {run.first}..{run.last} failed: {run.error}\n")
    if report.quarantined:
        sys.stderr.write(
            f"{len(report.quarantined)} entr{'y' if len(report.quarantined) == 1 else 'ies'} quarantined in "
            f"{printable(str(store.home.quarantine))} (each beside a .reason.txt)\n"
        )
    problems = runs_failed or report.quarantined or report.skipped or report.failed or report.pending
    return EXIT_FAILED if problems else EXIT_OK


def run_reevaluate(args: argparse.Namespace) -> int:
    """Re-judge stored history under the policy in force through the reevaluate_history job."""
    from maml_evidence.headless import run_reevaluation

    store = _store(args)
    policy = store.policy()  # a broken policy file stops here with every problem named (exit 2)
    outcome = run_reevaluation(store, force=args.force)
    if not outcome.success:
        sys.stderr.write(f"error: re-evaluation run {outcome.run_id} failed: {outcome.error}\n")
        return EXIT_FAILED
    meta = outcome.metadata
    print(f"policy {policy.version} ({policy.source})")
    for line in str(meta.get("recovered") or "").splitlines():
        print(f"recovered: {line.removeprefix('- ')}")
    if "skipped" in meta:
        print(f"nothing to do: {meta['skipped']}")
        return EXIT_OK
    print(
        f"re-evaluated {meta['spike_runs_evaluated']} spike runs (previous policy versions: "
        f"{meta['previous_policy_versions']}); {meta['decisions_changed']} decisions changed"
    )
    for change in outcome.changes[: args.show]:
        print(f"  {change.spike_run_id}: {change.from_decision} -> {change.to_decision} (cause: {change.cause_check})")
    if len(outcome.changes) > args.show:
        print(f'  ... {len(outcome.changes) - args.show} more: maml-evidence sql "FROM decision_changes"')
    return EXIT_OK


def run_whatif(args: argparse.Namespace) -> int:
    """Judge every stored spike run under the policy in force with the --set keys changed; record nothing."""
    from maml_evidence.store import EvidenceStore, StoreError
    from maml_evidence.store.whatif import WhatIf, check_settings, render_table, what_if, what_if_policy

    pairs = []
    for item in args.set:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise CommandError(f"--set {item!r}: expected KEY=VALUE, e.g. --set min_projects=4")
        pairs.append((key, value))
    overrides = check_settings(pairs)  # the policy file's messages for a bad key or value (exit 2)
    store = EvidenceStore(args.home)
    current = store.policy()  # a broken policy file stops here with every problem named (exit 2)
    if not store.home.tables.is_dir():  # nothing stored, and a what-if creates no evidence home
        result = WhatIf(current, what_if_policy(current, overrides), overrides)
    else:
        try:
            result = what_if(store, overrides, current)
        except StoreError as exc:
            raise CommandError(f"evidence home {store.home.root}: {exc}") from None
    if args.format == "json":
        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
        for damage in result.damaged:
            sys.stderr.write(f"warning: skipped {damage}; run `maml-evidence doctor --repair`\n")
    else:
        sys.stdout.write(render_table(result, str(store.home.root), args.show))
    return EXIT_OK


def run_sql(args: argparse.Namespace) -> int:
    """Run read-only SQL against the evidence store and print the rows."""
    from maml_evidence.formatting import render
    from maml_evidence.store import StoreError
    from maml_evidence.store.sql import run_query

    store = _store(args)
    try:
        result = run_query(store.home, args.query)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    sys.stdout.write(render(result.columns, result.rows, args.format))
    return EXIT_OK


def run_doctor(args: argparse.Namespace) -> int:
    """Report damaged or missing evidence; with --repair set damage aside and rebuild from stored payloads."""
    from maml_evidence.store.doctor import diagnose, repair_records, set_aside

    store = _store(args)
    diagnosis = diagnose(store)
    for finding in diagnosis.findings:
        print(finding)
    if not diagnosis.findings:
        print(f"ok: {store.home.root} is healthy ({len(store.registry.known_ids())} spike runs)")
        return EXIT_OK
    if not args.repair:
        print("run `maml-evidence doctor --repair` to set damaged files aside and rebuild the affected spike runs")
        return EXIT_FAILED if diagnosis.errors or diagnosis.unevaluated else EXIT_OK
    from maml_evidence.headless import rebuild

    for line in repair_records(store, diagnosis):
        print(f"repaired: {line}")
    affected = set_aside(store, diagnosis)
    if affected:
        runs = rebuild(store, affected)
        print(f"rebuilt {len(affected)} spike runs from their stored payloads in {len(runs)} run(s)")
        if not all(run.success for run in runs):
            sys.stderr.write(
                "error: some rebuild runs failed: " + "; ".join(r.error or "" for r in runs if not r.success) + "\n"
            )
            return EXIT_FAILED
    remaining = diagnose(store)
    for finding in remaining.findings:
        print(f"still: {finding}")
    return EXIT_FAILED if remaining.errors or remaining.unevaluated else EXIT_OK


def run_collect(args: argparse.Namespace) -> int:
    """Assemble spike payloads from MLflow runs, validate them with the gate, write them; one line per spike.

    With --write-back, first tag the parent run of every spike whose decision is already stored (the decision
    exists only after evaluation: run collect --write-back again after ``ingest``). Nothing is written when the
    tracking server is unreachable (exit 2).
    """
    import os
    from pathlib import Path

    from maml_evidence.store import EvidenceHome, StoreError
    from maml_evidence.store.files import atomic_write_text
    from maml_evidence.store.registry import PayloadRegistry

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise CommandError("no tracking server: give --tracking-uri URI or set MLFLOW_TRACKING_URI")
    from maml_evidence.sources.mlflow import (
        FAILED,
        WRITTEN,
        MlflowMissing,
        MlflowSource,
        SourceError,
        TrackingUnreachable,
        payload_text,
    )

    home = EvidenceHome(args.home)
    registry = PayloadRegistry(home)

    def stored(spike_run_id: str) -> bool:
        try:
            return registry.current(spike_run_id) is not None
        except StoreError:
            return True  # a damaged pointer: doctor's business, not a reason to collect the spike again

    try:
        source = MlflowSource(
            uri, args.experiment, args.accuracy_metric, allow_unmatched_projects=args.allow_unmatched_projects
        )
        written_back = source.write_back(home) if args.write_back else []
        collected = source.collect(args.spike_run_id, stored)
    except (MlflowMissing, TrackingUnreachable, SourceError) as exc:
        raise CommandError(str(exc)) from None
    folder = Path(args.output) if args.output else home.inbox
    for result in collected:  # everything was read first: a server that stops answering leaves nothing written
        if result.outcome == WRITTEN and result.payload is not None:
            try:
                atomic_write_text(folder / f"{result.spike_run_id}.json", payload_text(result.payload))
            except OSError as exc:
                raise CommandError(f"{folder}: cannot write payloads: {exc.strerror or exc}") from None
    for done in written_back:
        shown = ", ".join(f"{k}={v}" for k, v in done.tags.items() if k != "maml_evidence.report_path")
        print(
            f"{'tagged' if done.tags else 'tags up to date':<28} {done.spike_run_id}  (MLflow run "
            f"{done.parent_run_id}{': ' + shown if shown else ''})"
        )
    for result in collected:
        if result.outcome == WRITTEN:
            notes = "".join(f"; note: {note}" for note in result.notes)
            where = folder / f"{result.spike_run_id}.json"
            print(f"{WRITTEN:<28} {result.spike_run_id}  (-> {where}; MLflow run {result.parent_run_id}{notes})")
        elif result.outcome == FAILED:
            reason = " ".join(line.strip() for line in result.error.splitlines())
            print(f"{FAILED:<28} {result.spike_run_id}  ({reason})")
        else:
            detail = result.error or f"MLflow run {result.parent_run_id}"
            print(f"{result.outcome:<28} {result.spike_run_id}  ({detail})")
    if not collected:
        print(f"no spike parent runs in experiment {args.experiment!r} (tag one maml_evidence.role=spike)")
    return EXIT_FAILED if any(r.outcome == FAILED for r in collected) else EXIT_OK


def run_dev(args: argparse.Namespace) -> int:
    """Start the Dagster UI and daemon on this evidence home (instance in <home>/dagster_home)."""
    import os

    from maml_evidence.headless import dagster_home, dev_environment

    store = _store(args)
    instance_home = dagster_home(store)
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "maml_evidence.definitions",
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    sys.stderr.write(f"evidence home: {store.home.root}\ndagster home:  {instance_home}\n")
    sys.stderr.flush()
    os.execve(sys.executable, command, dev_environment(store))
    return EXIT_OK  # not reached


def run_instance(args: argparse.Namespace) -> int:
    """Show the evidence home's Dagster instance, or (--postgres-url) put it on Postgres."""
    from maml_evidence.deploy.instance import (
        InstanceError,
        check_connection,
        describe,
        normalized_url,
        write_postgres_instance,
    )
    from maml_evidence.headless import instance_folder

    store = _store(args)
    folder = instance_folder(store)
    try:
        if args.postgres_url is None:
            if args.force:
                raise CommandError("--force: expected it only with --postgres-url")
            sys.stdout.write(f"dagster home: {folder}\ninstance: {describe(folder)}\n")
            return EXIT_OK
        url, note = normalized_url(args.postgres_url)
        if note:
            _note(note)
        check_connection(url)
        config_file, changed = write_postgres_instance(folder, url, force=args.force)
    except InstanceError as exc:
        raise CommandError(str(exc)) from None

    from maml_evidence.defs.partitions import register_spike_runs
    from maml_evidence.headless import open_instance

    # Dagster creates its tables on first use; spike runs already stored become partitions of the new instance
    with open_instance(store) as instance:
        register_spike_runs(instance, store.registry.known_ids())
    sys.stdout.write(f"{'wrote' if changed else 'unchanged'} {config_file}\ninstance: {describe(folder)}\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="maml-evidence",
        description="Decide from evidence whether to enable MAML on top of LoRA, and keep that evidence.",
        formatter_class=_formatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home", metavar="DIR", default=None, help="evidence home (default: $MAML_EVIDENCE_HOME, else ./data)"
    )

    def command(name: str, handler, help: str, description: str | None = None) -> argparse.ArgumentParser:  # noqa: A002, ANN001
        sub = commands.add_parser(
            name,
            parents=[] if handler is run_evidence_gate else [home],
            formatter_class=_formatter,
            help=help,
            description=description,
        )
        sub.set_defaults(handler=handler)
        return sub

    _add_gate_arguments(
        command("gate", run_evidence_gate, "evaluate one spike payload file and print its decision report"),
        with_format=True,
    )

    ingest = command(
        "ingest",
        run_ingest,
        "evaluate inbox entries (or the given files) through the Dagster job and print each outcome",
        "Validate payload files, store new evidence, evaluate it with the evaluate_spike_runs job on the evidence "
        "home's Dagster instance, and print one line per inbox entry. Exit 1 if any entry was quarantined or "
        "skipped, a spike run failed, or one is still being evaluated elsewhere (every other entry is still "
        "processed).",
    )
    ingest.add_argument("paths", nargs="*", metavar="PATH", help="payload files (default: every *.json in the inbox)")
    ingest.add_argument(
        "--replace",
        action="store_true",
        help="let these files supersede different evidence already stored under the same spike_run_id "
        "(the earlier revision stays in history)",
    )

    reeval = command(
        "reevaluate", run_reevaluate, "re-judge every stored spike run under the threshold policy in force (one run)"
    )
    reeval.add_argument("--force", action="store_true", help="re-judge even if no decision uses an older policy")
    reeval.add_argument("--show", type=int, default=20, metavar="N", help="list at most N changed decisions")

    whatif = command(
        "whatif",
        run_whatif,
        "judge every stored spike run under the policy in force with some keys changed; records nothing",
        "Re-judge history under thresholds.toml with each --set KEY=VALUE replacing the policy's value (a payload's "
        "own thresholds and cost_profile still win), and print the decision mix before and after and every "
        "decision that would change. Nothing is written: no table, report, policy record or Dagster record.",
    )
    whatif.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="KEY=VALUE",
        help="a key of thresholds.toml and its value (a number, true/false, or null to switch a guard off)",
    )
    whatif.add_argument("--format", choices=("table", "json"), default="table")
    whatif.add_argument("--show", type=int, default=20, metavar="N", help="list at most N changed decisions (table)")

    # The view names are written out: importing the store's schema here would load pyarrow on every command.
    sql = command(
        "sql",
        run_sql,
        "run a read-only SQL query over the evidence views and print the rows",
        "Views: spike_runs, adaptation_metrics, adaptation_summary, accuracy_metrics, accuracy_summary, "
        "cost_metrics, cost_breakeven, project_effects, evidence_strength, gate_decisions, gate_checks, "
        "decision_history, "
        "threshold_policies, decision_changes, decision_commits.",
    )
    sql.add_argument("query", help='e.g. "SELECT decision, count(*) FROM gate_decisions GROUP BY ALL"')
    sql.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table")

    doctor = command(
        "doctor",
        run_doctor,
        "find damaged or missing evidence; --repair sets it aside and rebuilds it from the stored payloads",
    )
    doctor.add_argument("--repair", action="store_true", help="move damaged files to damaged/ and re-evaluate")

    collect = command(
        "collect",
        run_collect,
        "assemble spike payloads from MLflow runs (learning curves and all) into the inbox or a folder",
        "Find ready spikes (parent runs tagged maml_evidence.role=spike and maml_evidence.complete=true) in an "
        "MLflow experiment, assemble one payload per spike from its tagged runs, validate it with the gate and "
        "write it (default: every ready spike not yet stored, into the inbox). One line per spike. Exit 1 if a "
        "spike could not be assembled, 2 if the tracking server is unreachable (nothing is written). Needs the "
        'mlflow extra: pip install -e ".[mlflow]".',
    )
    collect.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow tracking server or store (default: $MLFLOW_TRACKING_URI)"
    )
    collect.add_argument("--experiment", required=True, metavar="NAME", help="the MLflow experiment's name")
    collect.add_argument(
        "--spike-run-id",
        action="append",
        metavar="ID",
        help="collect this spike (its maml_evidence.spike_run_id tag), stored or not; repeatable",
    )
    where = collect.add_mutually_exclusive_group()
    where.add_argument("--to-inbox", action="store_true", help="write into the evidence home's inbox (the default)")
    where.add_argument("--output", metavar="DIR", help="write into this folder instead")
    collect.add_argument(
        "--accuracy-metric",
        default="val_accuracy",
        metavar="KEY",
        help="the metric holding each adaptation run's learning curve (default: val_accuracy)",
    )
    collect.add_argument(
        "--allow-unmatched-projects",
        action="store_true",
        help="collect a spike with projects logged in one arm only (judged on the common projects, as the gate "
        "does); by default each such project is an error naming its runs",
    )
    collect.add_argument(
        "--write-back",
        action="store_true",
        help="first tag each spike's parent run with its stored decision, failed check, grade, policy and report",
    )

    instance = command(
        "instance",
        run_instance,
        "show the evidence home's Dagster instance, or put it on Postgres (--postgres-url)",
        "Without flags: print the Dagster home folder and its storage (local SQLite, or the Postgres URL with the "
        "password masked). With --postgres-url: check the server is reachable, write the folder's dagster.yaml "
        "(Postgres storage for runs, event log, schedules; telemetry off; run monitoring on) and register the "
        'spike runs already stored as partitions. Needs the team extra: pip install -e ".[team]".',
    )
    instance.add_argument(
        "--postgres-url",
        metavar="URL",
        help="postgresql+psycopg2://USER[:PASSWORD]@HOST[:PORT]/DATABASE (postgresql:// gets the +psycopg2 driver)",
    )
    instance.add_argument("--force", action="store_true", help="replace a dagster.yaml with other settings")

    dev = command("dev", run_dev, "start the Dagster UI and daemon on the evidence home")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``maml-evidence``: the gate plus the evidence-store commands."""
    args = build_parser().parse_args(argv)
    return _guarded(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
