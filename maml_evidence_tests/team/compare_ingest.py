"""Ingest of the same generated spike runs on the three setups a team can run, side by side.

    python -m maml_evidence_tests.team.compare_ingest [COUNT] [SEED] [--rounds N]
        (default: 200 spike runs, seed 11, 1 round)

Each variant is the real command (`maml-evidence ingest FILE...` in a fresh interpreter, timed from start to exit)
on a fresh evidence home:

- ``sqlite``: the local default, evidence in a local folder, its Dagster instance on SQLite beside it;
- ``postgres``: evidence in a local folder, the Dagster instance on Postgres (`maml-evidence instance`);
- ``s3``: the team setup, ``MAML_EVIDENCE_HOME=s3://BUCKET/evidence`` on a fresh bucket, this machine's local
  folder in ``MAML_EVIDENCE_LOCAL``, the Dagster instance on Postgres in its default place
  (``<local>/dagster_home``) and the locks taken on that database (no ``MAML_EVIDENCE_LOCK_URL``).

The Postgres server (fsync off) and the S3 server (SeaweedFS) are throwaway ones on this machine's loopback, as in
the tests, so the figures leave out network latency. Rounds run the variants in alternating order (forwards, then
backwards) with fresh homes and databases each time. Every variant must exit 0 and print one decision line per
spike run, each the decision the gate gives that payload in-process; anything else stops the run with the output.

Prints one JSON object: every round, the best round of each variant at the top level (``sqlite``, ``postgres``,
``s3``) with the ratios of the best times, the objects and bytes the ``s3`` variant left in the bucket, the
number of stderr lines each variant wrote (with a few of them), and how long the two servers took to start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maml_evidence import evaluate_feasibility
from maml_evidence.deploy.instance import write_postgres_instance
from maml_evidence_tests.generator import generate_payloads
from maml_evidence_tests.samples import BIN, ingest_decisions
from maml_evidence_tests.team import postgres, seaweed

VARIANTS = ("sqlite", "postgres", "s3")
STDERR_SAMPLE = 5  # distinct stderr lines kept per variant


@dataclass(frozen=True)
class Bench:
    """What every variant shares: the payload files, the decisions they must get, the two servers."""

    root: Path
    files: list[str]
    expected: dict[str, str]
    cluster: postgres.Cluster
    server: seaweed.Server


def _clean_env() -> dict[str, str]:
    """This environment without the variables that would point the command at another home, instance or store."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAML_EVIDENCE_", "DAGSTER_HOME"))}


def _ingest(bench: Bench, variant: str, round_number: int, env: dict[str, str], args: list[str]) -> dict[str, Any]:
    """Time one ``maml-evidence ingest``; stop the benchmark unless it decided every spike run as the gate does."""
    cwd = bench.root / f"round-{round_number}" / variant
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "maml-evidence"), "ingest", *args, *bench.files], capture_output=True, text=True, env=env, cwd=cwd
    )
    seconds = time.perf_counter() - started
    where = f"{variant}, round {round_number}"
    if done.returncode != 0:
        raise SystemExit(
            f"ingest failed ({where}, exit {done.returncode}):\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    decided = ingest_decisions(done.stdout)
    if len(lines) != len(bench.files) or decided != bench.expected:
        wrong = sorted(k for k in bench.expected.keys() | decided.keys() if decided.get(k) != bench.expected.get(k))
        raise SystemExit(
            f"ingest ({where}): expected {len(bench.files)} decision lines with the gate's decisions, got "
            f"{len(lines)} lines and {len(wrong)} spike runs that differ, first {wrong[:5]}:\n{done.stdout[-4000:]}"
        )
    problems = [line for line in done.stderr.splitlines() if line.strip()]
    result: dict[str, Any] = {
        "seconds": round(seconds, 1),
        "per_spike_run_ms": round(1000 * seconds / len(bench.files), 1),
        "decisions": len(decided),
        "stderr_lines": len(problems),
    }
    if problems:
        result["stderr_sample"] = [line[:300] for line in dict.fromkeys(problems)][:STDERR_SAMPLE]
    return result


def _local(bench: Bench, round_number: int, variant: str) -> dict[str, Any]:
    """``sqlite`` or ``postgres``: a local evidence folder with its own instance in ``<home>/dagster_home``."""
    evidence = bench.root / f"round-{round_number}" / variant / "evidence"
    evidence.mkdir(parents=True)
    env = _clean_env()
    database = None
    if variant == "postgres":
        database = bench.cluster.new_database()
        command = [str(BIN / "maml-evidence"), "instance", "--postgres-url", database, "--home", str(evidence)]
        subprocess.run(command, check=True, env=env, capture_output=True)
    result = _ingest(bench, variant, round_number, env, ["--home", str(evidence)])
    return {**result, "instance": "postgres" if database else "sqlite", "dagster_home": str(evidence / "dagster_home")}


def _s3(bench: Bench, round_number: int) -> dict[str, Any]:
    """The team setup: evidence in a fresh bucket, instance and locks on Postgres; what the bucket holds after."""
    bucket = bench.server.new_bucket()
    url = f"s3://{bucket}/evidence"
    local = bench.root / f"round-{round_number}" / "s3" / "local"
    write_postgres_instance(local / "dagster_home", bench.cluster.new_database())
    env = {**_clean_env(), **bench.server.env(), "MAML_EVIDENCE_HOME": url, "MAML_EVIDENCE_LOCAL": str(local)}
    result = _ingest(bench, "s3", round_number, env, [])
    written = bench.server.filesystem().find(f"{bucket}/evidence", detail=True)
    return {
        **result,
        "instance": "postgres",
        "locks": "postgres (the instance's database)",
        "evidence": url,
        "dagster_home": str(local / "dagster_home"),
        "objects": len(written),
        "bytes": sum(int(info.get("size") or 0) for info in written.values()),
    }


def _run_round(bench: Bench, round_number: int) -> dict[str, Any]:
    order = VARIANTS if round_number % 2 == 1 else tuple(reversed(VARIANTS))
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "sqlite": lambda: _local(bench, round_number, "sqlite"),
        "postgres": lambda: _local(bench, round_number, "postgres"),
        "s3": lambda: _s3(bench, round_number),
    }
    found: dict[str, Any] = {"round": round_number, "order": list(order)}
    for variant in order:
        found[variant] = steps[variant]()
    return found


@contextmanager
def _timed(into: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into[name] = round(time.perf_counter() - started, 1)


def main(count: int = 200, seed: int = 11, rounds: int = 1) -> dict[str, object]:
    for reason in (postgres.unavailable(), seaweed.unavailable()):
        if reason is not None:
            raise SystemExit(reason)
    started: dict[str, float] = {}
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="maml-evidence-compare-")))
        with _timed(started, "postgres_cluster_seconds"):
            cluster = stack.enter_context(postgres.running_cluster())
        with _timed(started, "s3_server_seconds"):
            server = stack.enter_context(seaweed.running_server())
        (root / "payloads").mkdir()
        files, expected = [], {}
        for payload in generate_payloads(count, seed=seed):
            run_id = str(payload["spike_run_id"])
            path = root / "payloads" / f"{run_id}.json"
            path.write_text(json.dumps(payload), encoding="utf-8")
            files.append(str(path))
            expected[run_id] = str(evaluate_feasibility(payload)["decision"])
        bench = Bench(root, files, expected, cluster, server)
        done = [_run_round(bench, n) for n in range(1, rounds + 1)]
    best = {v: min((r[v] | {"round": r["round"]} for r in done), key=lambda b: b["seconds"]) for v in VARIANTS}
    sqlite_seconds = float(best["sqlite"]["seconds"]) or 0.1
    return {
        "spike_runs": count,
        "seed": seed,
        "rounds": done,
        **best,
        "postgres_over_sqlite": round(float(best["postgres"]["seconds"]) / sqlite_seconds, 2),
        "s3_over_sqlite": round(float(best["s3"]["seconds"]) / sqlite_seconds, 2),
        "s3_over_postgres": round(float(best["s3"]["seconds"]) / (float(best["postgres"]["seconds"]) or 0.1), 2),
        "setup": started,
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m maml_evidence_tests.team.compare_ingest",
        description="Time `maml-evidence ingest` on a local home (SQLite, Postgres instance) and on a bucket.",
    )
    parser.add_argument("count", nargs="?", type=int, default=200, help="generated spike runs (default 200)")
    parser.add_argument("seed", nargs="?", type=int, default=11, help="generator seed (default 11)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, in alternating order (default 1)")
    parsed = parser.parse_args()
    if parsed.count < 1 or parsed.rounds < 1:
        parser.error(f"COUNT and --rounds: expected at least 1, got {parsed.count} and {parsed.rounds}")
    return parsed


if __name__ == "__main__":
    options = _arguments()
    print(json.dumps(main(options.count, options.seed, options.rounds), indent=2))
