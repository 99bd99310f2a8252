"""Metadata shaping for the Dagster UI: column schemas and Markdown previews from store definitions."""

from __future__ import annotations

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
