"""Metadata shaping for the Dagster UI: column schemas and Markdown previews from store definitions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from maml_evidence.store.schema import TABLES


def column_schema(*tables: str) -> dg.TableSchema:
    columns = [
        dg.TableColumn(name=c.name, type=str(c.type), description=c.doc) for t in tables for c in TABLES[t].columns
    ]
    return dg.TableSchema(columns=columns)


def markdown_table(header: list[str], body: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Materialization metadata per partition for a run over many partitions, recorded in one step.

    Dagster's public ``add_asset_metadata(partition_key=...)`` re-reads every dynamic partition from the
    instance on each call: O(partitions) per call and O(n^2) per run (~8 ms a call at 1,000 partitions, most
    of the ingest's own cost). This checks the keys once and fills the step's metadata accumulator directly.
    It relies on Dagster internals (pinned to 1.13; test_materialize checks per-partition metadata) and falls
    back to the public call if they move.
    """
    unknown = set(by_partition) - set(context.partition_keys)
    if unknown:
        raise ValueError(f"metadata for partitions this run does not target: {sorted(unknown)[:5]}")
    try:
        from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator

        step = context._step_execution_context  # noqa: SLF001 - see docstring
        merged = dict(step._metadata_accumulator.per_output_metadata)  # noqa: SLF001
        asset_key = context.assets_def.key
        for partition_key, metadata in by_partition.items():
            handle = AssetMetadataHandle(asset_key=asset_key, partition_key=partition_key)
            merged[handle] = {**merged.get(handle, {}), **metadata}
        step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)  # noqa: SLF001
    except (ImportError, AttributeError, TypeError):
        for partition_key, metadata in by_partition.items():
            context.add_asset_metadata(metadata, partition_key=partition_key)
