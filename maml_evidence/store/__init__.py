"""The evidence store: Parquet tables, payload revisions, reports and the DuckDB catalog of views."""

from maml_evidence.store.evidence import Evaluation, EvidenceStore
from maml_evidence.store.home import EvidenceHome, StoreError, check_spike_run_id

__all__ = ["Evaluation", "EvidenceHome", "EvidenceStore", "StoreError", "check_spike_run_id"]
