"""The Dagster internals maml-evidence relies on (README "Dagster internals") fail a test when they move."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from maml_evidence.defs import metadata
from maml_evidence_tests.pipeline.conftest import SAMPLE_DECISIONS, Pipeline, open_pipeline

IDS = list(SAMPLE_DECISIONS)


def _materialize_samples(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Pipeline, dg.ExecuteInProcessResult]:
    with open_pipeline(root, monkeypatch) as pipeline:
        pipeline.drop_samples()
        assert [r.spike_run_id for r in pipeline.intake() if r.needs_run] == IDS
        return pipeline, pipeline.run(IDS)


def _per_partition(result: dg.ExecuteInProcessResult, asset: str, key: str) -> dict[str, object]:
    found = {
        e.materialization.partition: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    }
    return {name: value.value for name, value in found[IDS[2]].items()} | {"_partitions": sorted(found)}


def test_partition_metadata_takes_the_one_step_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails when the fast path is not taken: the public per-partition call is made to explode."""

    def public_path(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("add_asset_metadata(partition_key=...) was called: the one-step path was not taken")

    monkeypatch.setattr(dg.AssetExecutionContext, "add_asset_metadata", public_path)
    _pipeline, result = _materialize_samples(tmp_path, monkeypatch)
    assert result.success
    found = _per_partition(result, "decision_report", IDS[2])
    assert found["decision"] == SAMPLE_DECISIONS[IDS[2]]
    assert found["_partitions"] == sorted(IDS)
    assert metadata._FALLBACK_WARNED == []


def test_if_the_internals_move_it_warns_once_and_records_the_same_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def moved(*_args: object, **_kwargs: object) -> None:
        raise AttributeError("'StepExecutionContext' object has no attribute '_metadata_accumulator'")

    monkeypatch.setattr(metadata, "_record_in_one_step", moved)
    monkeypatch.setattr(metadata, "_FALLBACK_WARNED", [])
    with pytest.warns(RuntimeWarning, match="falls back to Dagster's public add_asset_metadata") as warned:
        _pipeline, result = _materialize_samples(tmp_path, monkeypatch)
    assert result.success
    assert len([w for w in warned if issubclass(w.category, RuntimeWarning)]) == 1  # once, not per asset or call
    found = _per_partition(result, "decision_report", IDS[2])
    assert found["decision"] == SAMPLE_DECISIONS[IDS[2]]
    assert found["_partitions"] == sorted(IDS)
