"""The evidence views as pandas DataFrames, for notebooks.

    from maml_evidence.notebook import open_evidence

    ev = open_evidence("data")       # else $MAML_EVIDENCE_HOME, else ./data
    ev.decisions()                   # one row per spike run: the current decision and the numbers behind it
    ev.history("run-1")              # every decision ever made for one spike run (or all, without an id)
    ev.sql("SELECT decision, count(*) AS runs FROM gate_decisions GROUP BY ALL")

Every query runs exactly as ``maml-evidence sql`` runs it (``store/sql.py``): only read statements, on a
connection that reads only the home's ``tables/`` folder and writes nothing; problems raise the command's
``StoreError`` messages, and a damaged table file is skipped with an ``EvidenceWarning`` naming it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the environment

from maml_evidence.store.home import EvidenceHome, StoreError, check_spike_run_id
from maml_evidence.store.schema import TABLES
from maml_evidence.store.sql import execute

__all__ = ["Evidence", "EvidenceWarning", "StoreError", "open_evidence"]

# One row per spike run: the decision, the sentence of the check that settled it, and the numbers the gate judged.
DECISIONS_SQL = """
SELECT d.spike_run_id, d.decision, d.maml_recommended, d.failed_check, c.reason AS failed_reason,
       r.revision, r.accepted_at, r.common_project_count,
       a.mean_step_reduction, a.relative_step_reduction, acc.mean_accuracy_regression_pp,
       cost.training_overhead_pct, d.extra_gpu_cost_usd_per_run, d.gpu_hour_usd,
       d.policy_version, d.trigger, d.evaluated_at
FROM gate_decisions d
LEFT JOIN spike_runs r USING (spike_run_id)
LEFT JOIN adaptation_summary a USING (spike_run_id)
LEFT JOIN accuracy_summary acc USING (spike_run_id)
LEFT JOIN cost_metrics cost USING (spike_run_id)
LEFT JOIN gate_checks c ON c.spike_run_id = d.spike_run_id AND c.check_name = d.failed_check
ORDER BY d.spike_run_id
"""
HISTORY_SQL = """
SELECT *, lag(decision) OVER (PARTITION BY spike_run_id ORDER BY evaluated_at) AS previous_decision
FROM decision_history {where}
ORDER BY spike_run_id, evaluated_at
"""


class EvidenceWarning(UserWarning):
    """A query skipped damaged evidence (the message names the file and its spike runs)."""


def open_evidence(home: str | os.PathLike[str] | None = None) -> Evidence:
    """The evidence home ``home``, else ``$MAML_EVIDENCE_HOME``, else ``./data`` (as the commands resolve it).

    Raises ``StoreError`` when that folder is not an evidence home, instead of creating one there.
    """
    opened = EvidenceHome(home)
    if not opened.tables.is_dir():
        raise StoreError(
            f"{opened.root}: not an evidence home (no tables/ folder); pass the folder that holds tables/ and "
            "evidence.duckdb, or set MAML_EVIDENCE_HOME"
        )
    return Evidence(opened)


@dataclass(frozen=True)
class Evidence:
    """Read-only access to one evidence home; every method returns a new pandas DataFrame."""

    home: EvidenceHome

    def __repr__(self) -> str:
        return f"Evidence({str(self.home.root)!r})"

    def sql(self, query: str, params: Sequence[object] | None = None) -> pd.DataFrame:
        """The last statement's result; ``params`` bind ``?`` placeholders of a single statement."""
        frame, damage = execute(self.home, query, _frame, params)
        for warning in damage:
            warnings.warn(warning, EvidenceWarning, stacklevel=2)
        return frame

    def views(self) -> pd.DataFrame:
        """Every view: its name, kind (current or history), key, description and columns (see the README)."""
        return pd.DataFrame(
            [
                {
                    "view": name,
                    "kind": table.kind,
                    "key": table.key,
                    "description": table.doc,
                    "columns": table.column_names,
                }
                for name, table in TABLES.items()
            ]
        )

    def view(self, name: str) -> pd.DataFrame:
        """Every row of one view, e.g. ``ev.view("gate_checks")``."""
        if name not in TABLES:
            raise StoreError(f"no view {name!r}; the views are: {', '.join(TABLES)}")
        return self.sql(f"FROM {name}")

    def decisions(self) -> pd.DataFrame:
        """The current decision per spike run, with the failed check's sentence and the numbers it judged."""
        return self.sql(DECISIONS_SQL)

    def history(self, spike_run_id: str | None = None) -> pd.DataFrame:
        """Every decision made for ``spike_run_id`` (all spike runs without one), oldest first per run.

        ``previous_decision`` is the run's decision before each row (null for its first).
        """
        if spike_run_id is None:
            return self.sql(HISTORY_SQL.format(where=""))
        frame = self.sql(HISTORY_SQL.format(where="WHERE spike_run_id = ?"), [check_spike_run_id(spike_run_id)])
        if frame.empty:
            raise StoreError(f"spike run {spike_run_id!r}: no decisions in {self.home.root}")
        return frame


def _frame(cursor: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return cursor.df()
