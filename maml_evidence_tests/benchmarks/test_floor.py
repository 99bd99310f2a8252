"""The ingest benchmark's floor is the product's own asset graph with empty bodies, and stays so.

The ratio issue 12 targets (ingest within 1.3x of the floor) means something only if the floor does the same
bookkeeping: the same assets, dependencies, partitioning and checks. An earlier hand-written floor kept six checks
after the product grew to eight and an overview asset; this fails if they drift apart again.
"""

from __future__ import annotations

import dagster as dg

from maml_evidence.definitions import defs
from maml_evidence.defs.jobs import EVALUATE_JOB
from maml_evidence_tests.benchmarks import floor


def _graph(definitions: dg.Definitions, job: str) -> tuple[dict[dg.AssetKey, tuple[set[dg.AssetKey], bool]], set]:
    graph = definitions.resolve_asset_graph()
    selected = definitions.resolve_job_def(job).asset_layer.selected_asset_keys
    assets = {
        key: ({p for p in graph.get(key).parent_keys if p in selected}, graph.get(key).is_partitioned)
        for key in selected
    }
    checks = {(c.asset_key, c.name) for c in graph.asset_check_keys if c.asset_key in selected}
    return assets, checks


def test_the_floor_has_the_evaluate_jobs_assets_dependencies_and_checks() -> None:
    product_assets, product_checks = _graph(defs, EVALUATE_JOB)
    floor_assets, floor_checks = _graph(floor.defs, "floor")
    assert floor_assets == product_assets
    assert floor_checks == product_checks
    assert len(floor_checks) == 8 and len(floor_assets) == 7  # the graph the README's figures were measured on
