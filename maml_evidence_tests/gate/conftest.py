"""Shared helpers for the gate tests: fixture files, payload builders and a CLI runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Each decision fixture and the decision it must produce.
DECISION_FIXTURES = {
    "minimal.json": "enable_maml",
    "fast_enough.json": "defer_maml_fast_enough",
    "low_effect.json": "defer_maml_low_effect",
    "accuracy_penalty.json": "defer_maml_accuracy_penalty",
    "cost_too_high.json": "defer_maml_cost_too_high",
    "collect_more_evidence.json": "collect_more_evidence",
    "empty_projects.json": "collect_more_evidence",
}


def load_fixture(name: str) -> dict:
    """A fresh (deep) copy of a JSON fixture, safe to mutate."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def minimal_payload() -> dict:
    """The spec's minimal example (enable_maml)."""
    return load_fixture("minimal.json")


def project(name: str, steps: float, target: float = 80.0, final: float | None = None) -> dict:
    entry: dict = {"project": name, "steps_to_target": steps, "target_accuracy": target}
    if final is not None:
        entry["final_accuracy"] = final
    return entry


def arm(projects: list[dict], train_minutes: float, meta_train_minutes: float | None = None, **extra: object) -> dict:
    out: dict = {"per_project_adaptation": projects, "train_minutes": train_minutes, **extra}
    if meta_train_minutes is not None:
        out["meta_train_minutes"] = meta_train_minutes
    return out


def build_payload(
    baseline_steps: list[float],
    candidate_steps: list[float],
    *,
    baseline_final: list[float] | None = None,
    candidate_final: list[float] | None = None,
    baseline_train: float = 45.0,
    candidate_train: float = 55.0,
    meta: float | None = 8.0,
    names: list[str] | None = None,
    **top: object,
) -> dict:
    """A percentage-points payload with the same projects in both arms (target accuracy 80 pp)."""
    names = names or [f"project-{i}" for i in range(len(baseline_steps))]
    baseline_final = baseline_final or [80.0] * len(baseline_steps)
    candidate_final = candidate_final or [80.0] * len(candidate_steps)
    return {
        "baseline": arm(
            [project(n, s, 80.0, f) for n, s, f in zip(names, baseline_steps, baseline_final, strict=True)],
            baseline_train,
        ),
        "candidate": arm(
            [project(n, s, 80.0, f) for n, s, f in zip(names, candidate_steps, candidate_final, strict=True)],
            candidate_train,
            meta,
        ),
        **top,
    }


def strict_json(report: dict) -> str:
    """Serialise as the CLI would, but refuse NaN/Infinity (they are not JSON)."""
    return json.dumps(report, allow_nan=False)


def run_cli(*args: str, module: str = "maml_evidence.cli", script: str | None = None) -> subprocess.CompletedProcess:
    """Run a command line for real, in a fresh interpreter."""
    command = [str(BIN / script)] if script else [sys.executable, "-m", module]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, encoding="utf-8"
    )
