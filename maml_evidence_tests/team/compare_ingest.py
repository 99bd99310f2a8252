"""Ingest of generated spike runs with the instance on Postgres vs the local default (SQLite), side by side.

    python -m maml_evidence_tests.team.compare_ingest [COUNT] [SEED]      (default: 200 spike runs, seed 11)

Both are the real command (`maml-evidence ingest FILE...` in a fresh interpreter) on a fresh evidence home; the
Postgres server is a throwaway cluster on this machine (loopback, fsync off, as in the tests). One JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maml_evidence_tests.generator import generate_payloads
from maml_evidence_tests.samples import BIN
from maml_evidence_tests.team.postgres import running_cluster, unavailable


def _ingest(root: Path, files: list[str], url: str | None) -> dict[str, object]:
    evidence, instance = root / "evidence", root / "evidence" / "dagster_home"
    evidence.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MAML_EVIDENCE_HOME")}
    command = [str(BIN / "maml-evidence")]
    if url is not None:
        subprocess.run([*command, "instance", "--postgres-url", url, "--home", str(evidence)], check=True, env=env)
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "ingest", "--home", str(evidence), *files], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ingest failed ({'postgres' if url else 'sqlite'}):\n{done.stdout}{done.stderr}")
    decided = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return {
        "seconds": round(seconds, 1),
        "per_spike_run_ms": round(1000 * seconds / len(files), 1),
        "decisions": len(decided),
        "instance": "postgres" if url else "sqlite",
        "dagster_home": str(instance),
    }


def main(count: int = 200, seed: int = 11) -> dict[str, object]:
    reason = unavailable()
    if reason is not None:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="maml-evidence-compare-") as tmp, running_cluster() as cluster:
        root = Path(tmp)
        (root / "payloads").mkdir()
        files = []
        for payload in generate_payloads(count, seed=seed):
            path = root / "payloads" / f"{payload['spike_run_id']}.json"
            path.write_text(json.dumps(payload), encoding="utf-8")
            files.append(str(path))
        sqlite = _ingest(root / "sqlite", files, None)
        postgres = _ingest(root / "postgres", files, cluster.new_database())
    ratio = float(postgres["seconds"]) / float(sqlite["seconds"])  # type: ignore[arg-type]
    return {
        "spike_runs": count,
        "seed": seed,
        "sqlite": sqlite,
        "postgres": postgres,
        "postgres_over_sqlite": round(ratio, 2),
    }


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(main(*arguments), indent=2))
