"""The evidence gate: pure, standard-library-only domain code (no Dagster, pandas or DuckDB)."""

from maml_evidence.gate.decision import (
    CHECK_NAMES,
    CHECK_TABLE,
    CHECKS,
    DECISIONS,
    ENABLE,
    SPEC_CHECK_NAMES,
    CheckResult,
    CheckSpec,
    Condition,
    ConditionSpec,
    Verdict,
    flip_cause,
    judge,
    observed_values,
)
from maml_evidence.gate.errors import PayloadValidationError, Problem
from maml_evidence.gate.loading import load_payload_file, parse_payload_text
from maml_evidence.gate.metrics import GateInputs, GateMetrics, compute_metrics
from maml_evidence.gate.payload import SpikePayload, validate_payload
from maml_evidence.gate.report import evaluate_feasibility, evaluate_payload, render_interpretation
from maml_evidence.gate.thresholds import (
    DEFAULT_GPU_HOUR_USD,
    SPEC_THRESHOLD_KEYS,
    THRESHOLD_KEYS,
    Settings,
    Thresholds,
    effective_settings,
)
from maml_evidence.gate.values import MAX_NUMBER

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "CHECK_TABLE",
    "DECISIONS",
    "DEFAULT_GPU_HOUR_USD",
    "ENABLE",
    "MAX_NUMBER",
    "SPEC_CHECK_NAMES",
    "SPEC_THRESHOLD_KEYS",
    "THRESHOLD_KEYS",
    "CheckResult",
    "CheckSpec",
    "Condition",
    "ConditionSpec",
    "GateInputs",
    "GateMetrics",
    "PayloadValidationError",
    "Problem",
    "Settings",
    "SpikePayload",
    "Thresholds",
    "Verdict",
    "compute_metrics",
    "effective_settings",
    "evaluate_feasibility",
    "evaluate_payload",
    "flip_cause",
    "judge",
    "load_payload_file",
    "observed_values",
    "parse_payload_text",
    "render_interpretation",
    "validate_payload",
]
