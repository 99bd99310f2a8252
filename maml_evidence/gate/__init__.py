"""The evidence gate: pure, standard-library-only domain code (no Dagster, pandas or DuckDB)."""

from maml_evidence.gate.decision import CHECK_NAMES, CHECKS, DECISIONS, ENABLE, Verdict, flip_cause, judge
from maml_evidence.gate.errors import PayloadValidationError, Problem
from maml_evidence.gate.loading import load_payload_file, parse_payload_text
from maml_evidence.gate.metrics import GateInputs, GateMetrics, compute_metrics
from maml_evidence.gate.payload import SpikePayload, validate_payload
from maml_evidence.gate.report import evaluate_feasibility, evaluate_payload, render_interpretation
from maml_evidence.gate.thresholds import DEFAULT_GPU_HOUR_USD, THRESHOLD_KEYS, Thresholds, merge_thresholds

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "DECISIONS",
    "DEFAULT_GPU_HOUR_USD",
    "ENABLE",
    "THRESHOLD_KEYS",
    "GateInputs",
    "GateMetrics",
    "PayloadValidationError",
    "Problem",
    "SpikePayload",
    "Thresholds",
    "Verdict",
    "compute_metrics",
    "evaluate_feasibility",
    "evaluate_payload",
    "flip_cause",
    "judge",
    "load_payload_file",
    "merge_thresholds",
    "parse_payload_text",
    "render_interpretation",
    "validate_payload",
]
