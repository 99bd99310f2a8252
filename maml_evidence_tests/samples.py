"""What every suite shares: the shipped samples and what they must reach, paths, and a Dagster home for tests."""

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_INBOX = REPO_ROOT / "data" / "inbox"
BIN = Path(sys.executable).parent  # the console scripts of the environment running the tests
DAGSTER_YAML = "telemetry:\n  enabled: false\n"
# Dagster's console logger at DEBUG prints every event; tests only need warnings.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def prepare_dagster_home(path: Path) -> Path:
    """A Dagster home folder with telemetry off, as the product's own dagster.yaml has it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    return path


# The shipped sample payloads (spike_run_id = file stem) and the decision each must reach.
SAMPLE_DECISIONS = {
    "2026-10-06-support-bots-enable": "enable_maml",
    "2026-10-13-legal-summaries-fast-enough": "defer_maml_fast_enough",
    "2026-10-20-code-review-low-effect": "defer_maml_low_effect",
    "2026-10-27-medical-coding-accuracy-penalty": "defer_maml_accuracy_penalty",
    "2026-11-03-translation-cost-too-high": "defer_maml_cost_too_high",
    "2026-11-10-search-ranking-more-evidence": "collect_more_evidence",
}

# The partitioned spike-run assets, upstream first.
SPIKE_ASSET_NAMES = [
    "spike_payload",
    "adaptation_metrics",
    "accuracy_metrics",
    "cost_metrics",
    "decision_report",
    "interpretation",
]


def run_cli(evidence: Path, *args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``maml-evidence ARGS --home EVIDENCE`` in a fresh interpreter, from the folder holding the home."""
    return subprocess.run(
        [str(BIN / "maml-evidence"), *args, "--home", str(evidence)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=evidence.parent,
        env=env,
        timeout=timeout,
    )


def ingest_decisions(stdout: str) -> dict[str, str]:
    """``maml-evidence ingest`` output -> spike run: decision (every entry's line is its decision, then its id)."""
    found = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and not line.startswith(" "):
            found[words[1]] = words[0]
    return found
