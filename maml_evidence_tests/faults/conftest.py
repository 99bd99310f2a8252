"""Fixtures for fault tests: a temporary evidence home with its own Dagster instance."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maml_evidence_tests.generator import generate_payload
from maml_evidence_tests.samples import SAMPLE_INBOX


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "evidence"
    (root / "inbox").mkdir(parents=True)
    monkeypatch.setenv("MAML_EVIDENCE_HOME", str(root))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return root


def write_generated(inbox: Path, count: int, seed: int, prefix: str = "gen") -> list[str]:
    rng = random.Random(seed)
    ids = []
    for index in range(count):
        run_id = f"{prefix}-{seed}-{index:03d}"
        (inbox / f"{run_id}.json").write_text(json.dumps(generate_payload(rng, run_id)))
        ids.append(run_id)
    return ids


def copy_samples(inbox: Path) -> list[str]:
    for path in SAMPLE_INBOX.glob("*.json"):
        shutil.copy(path, inbox / path.name)
    return sorted(p.stem for p in SAMPLE_INBOX.glob("*.json"))


def cli(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "maml_evidence.cli", *args, "--home", str(home)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
