"""`python -m maml_evidence_tests.benchmarks [--quick]`: measure the targets of issues 2-5, print one JSON object.

Figures carry their work size. Nothing here asserts a wall-clock time; the README's Performance section
quotes what this printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN_KEYS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def bench_core(count: int, rounds: int) -> dict[str, object]:
    """The gate core (validate, metrics, judge, report) against the yardstick, on the same payloads, in turns.

    The yardstick (yardstick.py) reaches the same decisions and numbers in one pass over plain dicts, with no
    validation, records or sentences: with each condition's margin and the closest call, as reports have them
    since issue 12 (the ratio that counts), and without them (the spec's rules alone, as issue 10 first set it).
    Rounds alternate between the three so that all see the same machine; each figure is its fastest round, the
    one least disturbed by whatever else the machine was doing.
    """
    from functools import partial

    from maml_evidence import evaluate_feasibility
    from maml_evidence_tests.benchmarks.yardstick import decide
    from maml_evidence_tests.generator import generate_payloads

    payloads = list(generate_payloads(count, seed=7))
    runs = {"core": evaluate_feasibility, "yardstick": decide, "spec_rules_only": partial(decide, margins=False)}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            for payload in payloads:
                run(payload)
            best[name] = min(best[name], time.perf_counter() - started)
    return {
        "payloads": count,
        "rounds": rounds,
        "seconds": round(best["core"], 3),
        "us_per_payload": round(best["core"] / count * 1e6, 1),
        "yardstick_us_per_payload": round(best["yardstick"] / count * 1e6, 1),
        "ratio_to_yardstick": round(best["core"] / best["yardstick"], 2),
        "spec_rules_only_yardstick_us_per_payload": round(best["spec_rules_only"] / count * 1e6, 1),
        "ratio_to_spec_rules_only_yardstick": round(best["core"] / best["spec_rules_only"], 2),
    }


def bench_cold_start(work: Path, repeats: int) -> dict[str, object]:
    import compileall

    import maml_evidence

    # As a non-editable install has it. force: a .pyc written in the same second as its source looks current to
    # compileall but not to the importer (which also compares sizes), and would silently be compiled on every run.
    compileall.compile_dir(Path(maml_evidence.__file__).parent, quiet=1, force=True)
    payload = work / "spike.json"
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "minimal.json", payload)
    commands = {
        "python_c_read_json": [sys.executable, "-c", "import json,sys; json.load(open(sys.argv[1]))", str(payload)],
        "maml_feasibility_gate": [_bin("maml-feasibility-gate"), "--input", str(payload)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(3):
        for command in commands.values():
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    for _ in range(repeats):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    fastest = {name: min(values) for name, values in times.items()}
    return {
        "runs_each": repeats,
        "python_c_ms": round(medians["python_c_read_json"] * 1000, 1),
        "gate_ms": round(medians["maml_feasibility_gate"] * 1000, 1),
        "ratio": round(medians["maml_feasibility_gate"] / medians["python_c_read_json"], 2),
        "ratio_of_fastest_runs": round(fastest["maml_feasibility_gate"] / fastest["python_c_read_json"], 2),
    }


def _write_inbox(inbox: Path, count: int, seed: int) -> None:
    from maml_evidence_tests.generator import generate_payloads

    inbox.mkdir(parents=True, exist_ok=True)
    for payload in generate_payloads(count, seed=seed):
        (inbox / f"{payload['spike_run_id']}.json").write_text(json.dumps(payload))


def _floor(home: Path, count: int) -> float:
    """Dagster's floor: the same graph with empty bodies, one run over ``count`` partitions (seconds)."""
    import dagster as dg

    from maml_evidence_tests.benchmarks import floor

    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        keys = [f"floor-{i:06d}" for i in range(count)]
        instance.add_dynamic_partitions("spike_runs", keys)
        started = time.perf_counter()
        floor.defs.resolve_job_def("floor").execute_in_process(
            instance=instance,
            tags=dict(zip(RUN_KEYS, (keys[0], keys[-1]), strict=True)),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        return time.perf_counter() - started


def bench_ingest(work: Path, count: int, per_run_sample: int) -> dict[str, object]:
    """Our ingest between two runs of Dagster's floor, so that a machine slowing down or speeding up over the
    minutes the three take (shared machines drift by a fifth) weighs on both sides of the ratio alike."""
    from maml_evidence.defs.partitions import register_spike_runs
    from maml_evidence.headless import evaluate_partitions, ingest, open_instance
    from maml_evidence.store import EvidenceStore

    os.environ.pop("DAGSTER_HOME", None)
    floor_before = _floor(work / "floor-before", count)
    store = EvidenceStore(work / "ingest").ensure()
    _write_inbox(store.home.inbox, count, seed=11)
    started = time.perf_counter()
    report = ingest(store)
    ingest_seconds = time.perf_counter() - started
    decided = len(store.decisions())
    floor_after = _floor(work / "floor-after", count)
    floor_seconds = (floor_before + floor_after) / 2

    # One Dagster run per spike run, on a sample, through our real job.
    sample_store = EvidenceStore(work / "per-run").ensure()
    _write_inbox(sample_store.home.inbox, per_run_sample, seed=12)
    from maml_evidence.store.intake import intake_files

    instance = open_instance(sample_store)
    results = intake_files(
        sample_store.home,
        sorted(sample_store.home.inbox.glob("*.json")),
        add_partitions=lambda ids: register_spike_runs(instance, ids),
    )
    ids = [r.spike_run_id for r in results if r.spike_run_id]
    started = time.perf_counter()
    for run_id in ids:
        evaluate_partitions(instance, sample_store, [run_id])
    per_run_seconds = (time.perf_counter() - started) / len(ids)
    return {
        "spike_runs": count,
        "seconds": round(ingest_seconds, 1),
        "decisions_stored": decided,
        "dagster_runs": len(report.runs),
        "floor_empty_bodies_seconds": round(floor_seconds, 1),
        "floor_before_and_after_seconds": [round(floor_before, 1), round(floor_after, 1)],
        "ratio_to_floor": round(ingest_seconds / floor_seconds, 2),
        "one_run_per_spike_run_sample": per_run_sample,
        "one_run_per_spike_run_seconds_each": round(per_run_seconds, 2),
        "one_run_per_spike_run_projected_seconds": round(per_run_seconds * count, 1),
        "speedup_vs_one_run_per_spike_run": round(per_run_seconds * count / ingest_seconds, 1),
    }


def bench_history(work: Path, count: int) -> dict[str, object]:
    from maml_evidence.store import EvidenceStore
    from maml_evidence.store.reevaluation import reevaluate
    from maml_evidence.store.sql import run_query
    from maml_evidence_tests.benchmarks.seed import seed_store

    store = EvidenceStore(work / "history").ensure()
    started = time.perf_counter()
    seed_store(store, count)
    seed_seconds = time.perf_counter() - started
    # Three policy changes in turn (each one re-judges the whole history and flips decisions); the figure is the
    # fastest, the one least disturbed by the rest of the machine, and every round is printed beside it.
    policies = (
        "max_extra_gpu_cost_usd_per_run = 3.0\nmax_training_overhead_pct = 90\nmax_mean_accuracy_regression_pp = 2.5\n",
        "max_extra_gpu_cost_usd_per_run = 2.5\nmax_training_overhead_pct = 70\nmax_mean_accuracy_regression_pp = 1.5\n",
        "max_extra_gpu_cost_usd_per_run = 3.5\nmax_training_overhead_pct = 95\nmax_mean_accuracy_regression_pp = 3.0\n",
    )
    rounds = []
    for text in policies:
        store.home.policy_file.write_text(text)
        started = time.perf_counter()
        outcome = reevaluate(store, refresh_reports=False)
        rounds.append((time.perf_counter() - started, outcome))
    reevaluate_seconds, result = min(rounds, key=lambda r: r[0])
    query = (
        "SELECT date_trunc('week', r.accepted_at) AS week, d.decision, count(*) AS runs "
        "FROM gate_decisions d JOIN spike_runs r USING (spike_run_id) GROUP BY ALL ORDER BY ALL"
    )
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        run_query(store.home, query)
        timings.append(time.perf_counter() - started)
    return {
        "reevaluation": {
            "spike_runs": result.evaluated,
            "seconds": round(reevaluate_seconds, 2),
            "rounds_seconds": [round(seconds, 2) for seconds, _ in rounds],
            "rounds_decisions_changed": [len(outcome.changes) for _, outcome in rounds],
            "decisions_changed": len(result.changes),
            "phases_seconds": {k: round(v, 2) for k, v in result.timings.items()},
            "seeding_seconds_not_timed": round(seed_seconds, 1),
        },
        "history_query": {
            "spike_runs": count,
            "query": "decision mix by week (gate_decisions JOIN spike_runs), read-only sql path",
            "median_seconds": round(statistics.median(timings), 3),
        },
    }


def bench_whatif(work: Path, count: int, repeats: int = 5) -> dict[str, object]:
    """A what-if over the whole history: in process (median of ``repeats``) and the command end to end."""
    from maml_evidence.store import EvidenceStore
    from maml_evidence.store.whatif import what_if
    from maml_evidence_tests.benchmarks.seed import seed_store

    store = EvidenceStore(work / "whatif").ensure()
    started = time.perf_counter()
    seed_store(store, count)
    seed_seconds = time.perf_counter() - started
    settings = {"max_extra_gpu_cost_usd_per_run": 3.0, "max_training_overhead_pct": 90.0, "min_projects": 4}
    timings, flips = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        flips = len(what_if(store, settings).flips)
        timings.append(time.perf_counter() - started)
    command = [_bin("maml-evidence"), "whatif", "--home", str(store.home.root), "--format", "json"]
    command += [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # warm the file cache as the loop above did
    cli_timings = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        cli_timings.append(time.perf_counter() - started)
    return {
        "spike_runs": count,
        "settings": settings,
        "decisions_that_would_change": flips,
        "median_seconds": round(statistics.median(timings), 3),
        "command_median_seconds": round(statistics.median(cli_timings), 3),
        "seeding_seconds_not_timed": round(seed_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maml_evidence_tests.benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness itself")
    parser.add_argument("--only", choices=("core", "cold_start", "ingest", "history", "whatif"), action="append")
    args = parser.parse_args(argv)
    sizes = (
        {"core": 1000, "core_rounds": 2, "cold": 5, "ingest": 30, "sample": 3, "history": 2000, "whatif": 2000}
        if args.quick
        else {
            "core": 10_000,
            "core_rounds": 7,
            "cold": 30,
            "ingest": 1000,
            "sample": 20,
            "history": 100_000,
            "whatif": 100_000,
        }
    )
    only = set(args.only or ("core", "cold_start", "ingest", "history", "whatif"))
    figures: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    }
    with tempfile.TemporaryDirectory(prefix="maml-bench-") as tmp:
        work = Path(tmp)
        if "core" in only:
            figures["core_gate"] = bench_core(sizes["core"], sizes["core_rounds"])
        if "cold_start" in only:
            figures["gate_cold_start"] = bench_cold_start(work, sizes["cold"])
        if "ingest" in only:
            figures["ingest"] = bench_ingest(work, sizes["ingest"], sizes["sample"])
        if "history" in only:
            figures.update(bench_history(work, sizes["history"]))
        if "whatif" in only:
            figures["whatif"] = bench_whatif(work, sizes["whatif"])
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
