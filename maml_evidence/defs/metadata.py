"""Metadata shaping for the Dagster UI: column schemas and Markdown previews from store definitions."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg

from maml_evidence.gate.decision import fmt
from maml_evidence.gate.report import _r
from maml_evidence.store.schema import TABLES


def column_schema(*tables: str) -> dg.TableSchema:
    columns = [
        dg.TableColumn(name=c.name, type=str(c.type), description=c.doc) for t in tables for c in TABLES[t].columns
    ]
    return dg.TableSchema(columns=columns)


def schema_metadata(table: str, **more_tables: str) -> dict[str, dg.TableSchema]:
    """An asset's definition metadata: its table's column schema (``dagster/column_schema``, shown as the asset's
    Columns in the UI) and any further tables it writes, each under its own key.

    Definition metadata, not materialization metadata: the schema is the same for every partition, and carrying
    it on each partition's materialization made Dagster serialize and store ~10 KB more per spike run and asset.
    """
    return {"dagster/column_schema": column_schema(table)} | {k: column_schema(t) for k, t in more_tables.items()}


def markdown_table(header: list[str], body: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return fmt(value) if isinstance(value, float) else str(value)  # as the report's sentences show numbers

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


_FALLBACK_WARNED: list[str] = []


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Materialization metadata per partition for a run over many partitions, recorded in one step.

    Dagster's public ``add_asset_metadata(partition_key=...)`` re-reads every dynamic partition from the
    instance on each call: O(partitions) per call and O(n^2) per run (~8 ms a call at 1,000 partitions, most
    of the ingest's own cost). This checks the keys once and fills the step's metadata accumulator directly
    (Dagster internals, pinned exactly; ``test_partition_metadata_takes_the_one_step_path`` fails if they
    move). Should they move anyway, it warns once and takes the public path: slower, same metadata.
    """
    unknown = set(by_partition) - set(context.partition_keys)
    if unknown:
        raise ValueError(f"metadata for partitions this run does not target: {sorted(unknown)[:5]}")
    try:
        _record_in_one_step(context, by_partition)
    except (ImportError, AttributeError, TypeError) as exc:
        if not _FALLBACK_WARNED:
            _FALLBACK_WARNED.append(str(exc))
            message = (
                f"per-partition metadata falls back to Dagster's public add_asset_metadata (O(n^2) per run): "
                f"the internals it relies on moved ({type(exc).__name__}: {exc}); check the pinned dagster version"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            context.log.warning(message)
        for partition_key, metadata in by_partition.items():
            context.add_asset_metadata(metadata, partition_key=partition_key)


def _record_in_one_step(context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator

    step = context.get_step_execution_context()
    merged = dict(step._metadata_accumulator.per_output_metadata)  # noqa: SLF001 - see add_partition_metadata
    asset_key = context.assets_def.key
    for partition_key, metadata in by_partition.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=partition_key)
        merged[handle] = {**merged.get(handle, {}), **metadata}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)  # noqa: SLF001


# The figures of a report's evidence section shown beside its grade (see the README, "How sure is each decision").
EVIDENCE_FIGURES = (
    ("step_reduction", "ci95_low"),
    ("step_reduction", "ci95_high"),
    ("step_reduction", "relative_ci95_low"),
    ("step_reduction", "relative_ci95_high"),
    ("step_reduction", "t_p_value"),
    ("step_reduction", "sign_flip_p_value"),
    ("step_reduction", "projects_for_80pct_power"),
    ("accuracy", "upper95_regression_pp"),
    ("accuracy", "lower95_regression_pp"),
    ("accuracy", "verdict"),
)


def rounded(value: float | None) -> float | None:
    """A number as the report shows it (4 decimals), for metadata a person reads in the UI."""
    return None if value is None else _r(float(value))


def evidence_metadata(evidence: Mapping[str, Any] | None) -> dict[str, Any]:
    """The grade, its reason and the intervals and p-values of an evidence section, as metadata entries."""
    if not evidence:
        return {}
    found: dict[str, Any] = {
        "evidence_grade": str(evidence.get("grade")),
        "evidence_grade_reason": str(evidence.get("grade_reason")),
    }
    for part, key in EVIDENCE_FIGURES:
        value = (evidence.get(part) or {}).get(key)
        if value is not None:  # undefined figures are left out, not shown as null
            found[f"evidence_{part}_{key}"] = value
    return found
