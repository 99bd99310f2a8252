"""One dynamic partition per spike run."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

SPIKE_RUNS = "spike_runs"
spike_runs = dg.DynamicPartitionsDefinition(name=SPIKE_RUNS)

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def contiguous_ranges(all_keys: Sequence[str], wanted: Sequence[str]) -> list[tuple[str, str]]:
    """Group ``wanted`` keys into runs of keys that are adjacent in partition (insertion) order.

    A Dagster partition range follows the order partitions were added, so one run can cover a set of keys
    only where they are contiguous in that order.
    """
    wanted_set = set(wanted)
    ranges: list[tuple[str, str]] = []
    start: str | None = None
    previous: str | None = None
    for key in all_keys:
        if key in wanted_set:
            if start is None:
                start = key
            previous = key
        elif start is not None:
            ranges.append((start, previous))  # type: ignore[arg-type]
            start = None
    if start is not None:
        ranges.append((start, previous))  # type: ignore[arg-type]
    return ranges


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def register_spike_runs(instance: dg.DagsterInstance, spike_run_ids: Sequence[str]) -> None:
    """Add these spike runs as partitions, in the order given; ones the instance has are left as they are.

    The one way partitions are registered (sensor, ingest, doctor's rebuild, tests): Dagster's
    ``add_dynamic_partitions`` is idempotent and keeps the first insertion order, which ranges follow.
    """
    if spike_run_ids:
        instance.add_dynamic_partitions(SPIKE_RUNS, list(dict.fromkeys(spike_run_ids)))
