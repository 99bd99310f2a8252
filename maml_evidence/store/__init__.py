"""The evidence store: Parquet tables, payload revisions, reports and the DuckDB catalog of views.

``EvidenceStore`` (and DuckDB, pyarrow with it) loads on first use, so that light modules of the package, like
``store.files`` for the gate command's --output, import without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from maml_evidence.store.home import EvidenceHome, StoreError, check_spike_run_id

if TYPE_CHECKING:
    from maml_evidence.store.evidence import Evaluation, EvidenceStore

__all__ = ["Evaluation", "EvidenceHome", "EvidenceStore", "StoreError", "check_spike_run_id"]


def __getattr__(name: str) -> Any:
    if name in ("Evaluation", "EvidenceStore"):
        from maml_evidence.store import evidence

        return getattr(evidence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
