"""Fixtures for the policy tests: one evidence home ingested through the real pipeline, copied per test.

Ingesting through Dagster costs seconds, so the package ingests a fixed set of spike runs once (the six
shipped samples, eight generated payloads and two runs whose payload pins thresholds) and every test works on
its own copy of that evidence home and Dagster home.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.store import EvidenceStore
from maml_evidence_tests.generator import DECISIONS, generate_payload
from maml_evidence_tests.samples import SAMPLE_INBOX, prepare_dagster_home, run_cli

# A policy that flips decisions in several directions over the template's spike runs (the oracle in each
# test says exactly which): fewer than 4 projects -> collect_more_evidence, a looser accuracy guard, a
# tighter overhead limit and a dearer GPU.
POLICY_B = {
    "min_projects": 4,
    "max_mean_accuracy_regression_pp": 2.5,
    "max_training_overhead_pct": 25.0,
    "gpu_hour_usd": 6.0,
}


def toml_text(values: Mapping[str, float | int | bool], header: str = "") -> str:
    lines = [header] if header else []
    lines += [
        f"{key} = {str(value).lower() if isinstance(value, bool) else repr(value)}" for key, value in values.items()
    ]
    return "\n".join(lines) + "\n"


def template_payloads() -> dict[str, dict]:
    """spike_run_id -> payload: samples (mostly no overrides), generated runs, and payload-pinned runs."""
    payloads: dict[str, dict] = {}
    for path in sorted(SAMPLE_INBOX.glob("*.json")):
        payloads[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    rng = random.Random(404)
    for index in range(8):
        run_id = f"gen-{index:02d}"
        payloads[run_id] = generate_payload(rng, run_id, DECISIONS[index % len(DECISIONS)])
    # The enable sample again, but its payload pins the keys POLICY_B changes: the policy must not move it.
    pinned = copy.deepcopy(payloads["2026-10-06-support-bots-enable"])
    pinned.update(
        spike_run_id="pinned-support-bots",
        thresholds={"min_projects": 3, "max_training_overhead_pct": 50.0},
        cost_profile={"gpu_hour_usd": 2.5},
    )
    payloads["pinned-support-bots"] = pinned
    # Every threshold and the price set by the payload itself.
    full = copy.deepcopy(payloads["gen-00"])
    full.update(
        spike_run_id="pinned-everything",
        thresholds={
            "min_projects": 2,
            "trigger_mean_steps": 3.0,
            "trigger_max_steps": 6.0,
            "min_mean_step_reduction": 1.0,
            "min_relative_step_reduction": 0.2,
            "max_mean_accuracy_regression_pp": 1.5,
            "max_training_overhead_pct": 60.0,
            "max_extra_gpu_cost_usd_per_run": 3.0,
        },
        cost_profile={"gpu_hour_usd": 1.0},
    )
    payloads["pinned-everything"] = full
    for run_id, payload in payloads.items():
        assert payload.get("spike_run_id", run_id) == run_id
    return payloads


PAYLOADS = template_payloads()


def oracle(policy: Mapping[str, float | int] | None = None) -> dict[str, dict]:
    """The gate core's report for every template spike run under ``policy``: what the store must agree with."""
    return {run_id: evaluate_feasibility(payload, policy=policy) for run_id, payload in PAYLOADS.items()}


@dataclass
class Home:
    """An evidence home and its Dagster home, with the ways the product reads and drives them."""

    evidence: Path
    dagster_home: Path

    @property
    def store(self) -> EvidenceStore:
        return EvidenceStore(self.evidence)

    @property
    def policy_file(self) -> Path:
        return self.evidence / "thresholds.toml"

    @property
    def resources(self) -> dict[str, object]:
        return {"evidence": EvidenceStoreResource(home=str(self.evidence))}

    def write_policy(self, values: Mapping[str, float | int] | str) -> Path:
        text = values if isinstance(values, str) else toml_text(values)
        self.policy_file.write_text(text, encoding="utf-8")
        return self.policy_file

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, object]]:
        connection = self.store.connect()
        try:
            cursor = connection.execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()

    def scalar(self, sql: str, params: Sequence[object] = ()) -> object:
        return next(iter(self.rows(sql, params)[0].values()))

    def decisions(self) -> dict[str, dict[str, object]]:
        return self.store.decisions()

    def counts(self) -> dict[str, int]:
        from maml_evidence.store.schema import TABLES

        return {name: int(self.scalar(f"SELECT count(*) FROM {name}")) for name in TABLES}  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        return {**os.environ, "MAML_EVIDENCE_HOME": str(self.evidence), "DAGSTER_HOME": str(self.dagster_home)}

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``maml-evidence ARGS --home <this home>`` in a fresh interpreter."""
        return run_cli(self.evidence, *args, env=self.env(), timeout=timeout)


def build_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """The template spike runs ingested once through the real pipeline (no thresholds.toml: spec defaults).

    The session-wide ``template`` fixture (root conftest) calls this, so every suite shares one ingest.
    """
    from maml_evidence.headless import ingest

    root = tmp_path_factory.mktemp("policy-template")
    home = Home(root / "evidence", prepare_dagster_home(root / "dagster_home"))
    files = root / "files"
    files.mkdir()
    paths = []
    for run_id, payload in PAYLOADS.items():
        path = files / f"{run_id}.json"
        path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        paths.append(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAML_EVIDENCE_HOME", str(home.evidence))
        patch.setenv("DAGSTER_HOME", str(home.dagster_home))
        report = ingest(EvidenceStore(home.evidence).ensure(), paths)
    assert [r.error for r in report.runs if not r.success] == []
    expected = {run_id: r["decision"] for run_id, r in oracle().items()}
    assert {k: v["decision"] for k, v in home.decisions().items()} == expected
    yield home


def copy_home(template: Home, root: Path) -> Home:
    """A private copy of the template's evidence home and Dagster home under ``root``."""
    home = Home(root / "evidence", root / "dagster_home")
    shutil.copytree(template.evidence, home.evidence)
    shutil.copytree(template.dagster_home, home.dagster_home)
    EvidenceStore(home.evidence).ensure()  # the catalog's views point at the template: re-point them here
    return home


@pytest.fixture
def home(template: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A copy of the ingested template, set as MAML_EVIDENCE_HOME and DAGSTER_HOME."""
    copied = copy_home(template, tmp_path)
    monkeypatch.setenv("MAML_EVIDENCE_HOME", str(copied.evidence))
    monkeypatch.setenv("DAGSTER_HOME", str(copied.dagster_home))
    return copied


@pytest.fixture
def instance(home: Home) -> Iterator[dg.DagsterInstance]:
    opened = home.instance()
    try:
        yield opened
    finally:
        opened.dispose()


def decision_snapshot(home: Home) -> dict[str, object]:
    """Everything a failed command must leave as it was: current decisions, history and policies."""
    return {
        "decisions": {k: (v["decision"], v["policy_version"], v["evaluated_at"]) for k, v in home.decisions().items()},
        "counts": home.counts(),
        "policies": sorted(p.name for p in (home.evidence / "policies").iterdir()),
    }
