"""What the shipped samples and the pipeline are expected to contain, written out once for every suite."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_INBOX = REPO_ROOT / "data" / "inbox"

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
