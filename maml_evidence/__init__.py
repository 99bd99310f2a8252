"""maml-evidence: decide from evidence whether to turn on MAML meta-training on top of LoRA.

Public API (standard library only, safe to import anywhere)::

    from maml_evidence import evaluate_feasibility, PayloadValidationError
"""

from maml_evidence.gate import PayloadValidationError, evaluate_feasibility, render_interpretation

__all__ = ["PayloadValidationError", "evaluate_feasibility", "render_interpretation"]
