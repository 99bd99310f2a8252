"""Fill an evidence store with many evaluated spike runs quickly, through the store's own row builders.

Dagster bookkeeping costs ~60-85 ms per partition (FACTS.md), so 100,000 stored spike runs for the
re-evaluation and query benchmarks are written directly: the gate core evaluates each generated payload and
the store writes one batch per table, exactly the rows the assets would have written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from maml_evidence.gate import effective_settings, evaluate_payload, validate_payload
from maml_evidence.store import EvidenceStore, rows
from maml_evidence.store.commit import commit
from maml_evidence.store.evidence import sources_json
from maml_evidence.store.registry import Revision
from maml_evidence.store.schema import TABLES
from maml_evidence.store.tables import new_batch_id
from maml_evidence.strength import evaluate_with_evidence
from maml_evidence_tests.generator import generate_payloads


def seed_store(
    store: EvidenceStore,
    count: int,
    seed: int = 141,
    *,
    evidence: bool = False,
    payloads: Iterable[dict[str, object]] | None = None,
) -> dict[str, int]:
    """Evaluate ``count`` generated payloads under the store's policy and write them as one batch per table.

    ``evidence``: also store each payload in the registry, measure its evidence strength (scipy, about 1 ms a
    run) and write its ``evidence_strength`` rows, as the pipeline does. ``payloads``: these instead of the
    generated ones (``count`` and ``seed`` are then not used).
    """
    policy = store.policy()
    now = datetime.now(UTC)
    tables: dict[str, list[dict[str, object]]] = {
        name: []
        for name in (
            "spike_runs",
            "adaptation_metrics",
            "adaptation_summary",
            "accuracy_metrics",
            "accuracy_summary",
            "cost_metrics",
            "gate_decisions",
            "gate_checks",
            "decision_history",
            "project_effects",
            "evidence_strength",
            "cost_breakeven",
        )
    }
    ids: list[str] = []
    mix: dict[str, int] = {}
    for raw in generate_payloads(count, seed) if payloads is None else payloads:
        run_id = str(raw["spike_run_id"])
        data = json.dumps(raw).encode()
        if evidence:  # stored as an ingest stores it, so a re-evaluation can measure it again
            revision = store.registry.accept(run_id, data, f"generated/{run_id}.json")
        else:
            digest = hashlib.sha256(data).hexdigest()
            revision = Revision(run_id, 1, digest, f"generated/{run_id}.json", now.isoformat())
        payload = validate_payload(raw)
        if evidence:
            metrics, verdict, report, section = evaluate_with_evidence(payload, policy.values)
            tables["evidence_strength"].append(rows.evidence_row(run_id, section, metrics.inputs, policy.version, now))
        else:
            metrics, verdict, report = evaluate_payload(payload, policy.values)
        settings = effective_settings(policy.values, payload.threshold_overrides, payload.cost_overrides)
        tables["project_effects"].extend(rows.project_effect_rows(run_id, metrics))
        tables["cost_breakeven"].append(
            rows.breakeven_row(
                run_id, metrics.inputs.mean_step_reduction, verdict.extra_gpu_cost_usd_per_run, settings, policy.version
            )
        )
        mix[verdict.decision] = mix.get(verdict.decision, 0) + 1
        tables["spike_runs"].append(rows.spike_run_row(run_id, revision, payload, metrics, "", now))
        tables["adaptation_metrics"].extend(rows.adaptation_rows(run_id, metrics))
        tables["adaptation_summary"].append(rows.adaptation_summary_row(run_id, metrics))
        tables["accuracy_metrics"].extend(rows.accuracy_rows(run_id, metrics))
        tables["accuracy_summary"].append(rows.accuracy_summary_row(run_id, payload, metrics))
        tables["cost_metrics"].append(
            rows.cost_row(run_id, metrics, verdict, report["cost"]["assumptions"]["gpu_hour_usd_source"])
        )
        tables["gate_decisions"].append(
            rows.decision_row(
                run_id,
                verdict,
                settings.thresholds.as_dict(),
                sources_json(settings.sources),
                policy.version,
                "ingest",
                now,
            )
        )
        tables["gate_checks"].extend(rows.check_rows(run_id, verdict, now))
        tables["decision_history"].append(rows.history_row(run_id, 1, verdict, policy.version, "ingest", now))
        ids.append(run_id)
    store.record_policy(policy)
    batch = new_batch_id()  # the decision tables commit as one batch, as an ingest's decision step does
    for name, table_rows in tables.items():
        committed = TABLES[name].committed
        store.tables.write(name, table_rows, ids, compact=False, batch=batch if committed else None)
    commit(store, batch, "ingest", now, [policy.version], len(ids), [])
    return mix
