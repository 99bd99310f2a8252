"""The evidence store as a Dagster resource."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from maml_evidence.store import EvidenceStore


class EvidenceStoreResource(dg.ConfigurableResource):
    """The evidence home: payload revisions, Parquet metric tables, reports and the DuckDB catalog.

    Leave ``home`` empty to use $MAML_EVIDENCE_HOME, or ./data when that is unset (read at run time).
    """

    home: str = Field(default="", description="Evidence home folder; empty means $MAML_EVIDENCE_HOME or ./data.")

    def store(self) -> EvidenceStore:
        return EvidenceStore(self.home or None).ensure()
