"""The inbox sensor's cursor logic: new, unchanged, duplicate, conflicting and invalid files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pytest

from maml_evidence.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from maml_evidence.store.registry import PayloadRegistry
from maml_evidence_tests.pipeline.conftest import (
    EVALUATE_JOB,
    QUIET,
    SAMPLE_DECISIONS,
    SAMPLE_INBOX,
    Pipeline,
    defs,
    sample,
)

IDS = list(SAMPLE_DECISIONS)


def tick(pipeline: Pipeline, cursor: str | None = None):  # Dagster's tick result has no public type
    """Evaluate one tick and apply its partition requests, as the daemon would."""
    result = pipeline.tick(cursor)
    for request in result.dynamic_partitions_requests or []:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        pipeline.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def covered(pipeline: Pipeline, request: dg.RunRequest) -> list[str]:
    """The partitions a range run request covers, in the order Dagster resolves a range (order added)."""
    keys = pipeline.partitions()
    if request.partition_key is not None:
        return [request.partition_key]
    start, end = request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]
    return keys[keys.index(start) : keys.index(end) + 1]


def copy_samples(pipeline: Pipeline, ids: Sequence[str]) -> list[Path]:
    pipeline.inbox.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(SAMPLE_INBOX / f"{i}.json", pipeline.inbox)) for i in ids]


def quarantined(pipeline: Pipeline) -> dict[str, str]:
    """Quarantined payload file name -> the text of its reason file."""
    out = {}
    for path in pipeline.quarantine.glob("*"):
        if path.name.endswith(".reason.txt"):
            continue
        reason = path.with_name(path.name + ".reason.txt")
        assert reason.exists(), f"{path.name} has no reason file"
        out[path.name] = reason.read_text(encoding="utf-8")
    return out


def only_run_request(result: object) -> dg.RunRequest:
    assert result.run_requests is not None and len(result.run_requests) == 1, result.run_requests
    request = result.run_requests[0]
    assert request.job_name in (None, EVALUATE_JOB)
    return request


def test_new_files_add_partitions_and_one_run_covering_exactly_them(pipeline_env: Pipeline) -> None:
    copy_samples(pipeline_env, IDS[:3])
    first = tick(pipeline_env)
    assert pipeline_env.partitions() == IDS[:3]
    assert covered(pipeline_env, only_run_request(first)) == IDS[:3]

    copy_samples(pipeline_env, IDS[3:5])
    second = tick(pipeline_env, first.cursor)
    assert pipeline_env.partitions() == IDS[:5]
    request = only_run_request(second)
    assert covered(pipeline_env, request) == IDS[3:5]
    assert request.run_key != only_run_request(first).run_key

    # The request, run as the daemon would, evaluates exactly the new spike runs.
    result = (
        defs()
        .resolve_job_def(EVALUATE_JOB)
        .execute_in_process(
            instance=pipeline_env.instance, tags=request.tags, resources=pipeline_env.resources, run_config=QUIET
        )
    )
    assert result.success
    materialized = {e.materialization.partition for e in result.get_asset_materialization_events()}
    assert materialized == {*IDS[3:5], None}  # None: the unpartitioned evidence_overview, refreshed by the run
    assert {k: v["decision"] for k, v in pipeline_env.store.decisions().items()} == {
        i: SAMPLE_DECISIONS[i] for i in IDS[3:5]
    }


def test_no_change_since_the_cursor_skips(pipeline_env: Pipeline) -> None:
    copy_samples(pipeline_env, IDS[:2])
    first = tick(pipeline_env)
    assert len(first.run_requests or []) == 1
    second = tick(pipeline_env, first.cursor)
    assert not second.run_requests
    assert second.skip_message
    assert json.loads(second.cursor) == json.loads(first.cursor)
    third = tick(pipeline_env, second.cursor)
    assert not third.run_requests
    assert pipeline_env.partitions() == IDS[:2]


def test_duplicate_under_another_name_is_a_no_op_and_stays_in_the_inbox(pipeline_env: Pipeline) -> None:
    [original] = copy_samples(pipeline_env, IDS[:1])
    first = tick(pipeline_env)
    duplicate = pipeline_env.inbox / "resent-copy.json"
    shutil.copy(original, duplicate)

    second = tick(pipeline_env, first.cursor)
    assert not second.run_requests
    assert duplicate.exists() and original.exists()
    assert quarantined(pipeline_env) == {}
    assert pipeline_env.partitions() == IDS[:1]
    assert [r.revision for r in PayloadRegistry(pipeline_env.store.home).history(IDS[0])] == [1]
    # remembered: the next tick does not look at it again
    assert not tick(pipeline_env, second.cursor).run_requests


@pytest.mark.parametrize("same_name", [False, True], ids=["new-file", "rewritten-file"])
def test_conflicting_content_is_quarantined_and_nothing_else_changes(pipeline_env: Pipeline, same_name: bool) -> None:
    copy_samples(pipeline_env, IDS[:2])
    first = tick(pipeline_env)
    registry = PayloadRegistry(pipeline_env.store.home)
    before = registry.history(IDS[0])
    other = (pipeline_env.inbox / f"{IDS[1]}.json").read_bytes()

    changed = sample(IDS[0], notes="re-run with a different seed")
    name = f"{IDS[0]}.json" if same_name else "support-bots-rerun.json"
    pipeline_env.drop(name, changed)

    second = tick(pipeline_env, first.cursor)
    assert not second.run_requests
    assert not (pipeline_env.inbox / name).exists()
    [(moved, reason)] = quarantined(pipeline_env).items()
    assert moved.endswith(name)
    assert IDS[0] in reason
    assert "--replace" in reason
    assert registry.history(IDS[0]) == before
    assert (pipeline_env.inbox / f"{IDS[1]}.json").read_bytes() == other
    assert pipeline_env.partitions() == IDS[:2]


def test_invalid_file_is_quarantined_with_the_core_error_and_others_still_run(pipeline_env: Pipeline) -> None:
    broken = sample(IDS[0])
    broken["baseline"]["per_project_adaptation"][1]["steps_to_target"] = "many"
    pipeline_env.drop("0-broken.json", broken)
    pipeline_env.drop("0-not-json.json", "{ this is not json")
    copy_samples(pipeline_env, IDS[1:3])

    result = tick(pipeline_env)
    assert pipeline_env.partitions() == IDS[1:3]
    assert covered(pipeline_env, only_run_request(result)) == IDS[1:3]
    reasons = quarantined(pipeline_env)
    assert sorted(n.split("-", 1)[1] for n in reasons) == ["0-broken.json", "0-not-json.json"]
    broken_reason = next(r for n, r in reasons.items() if n.endswith("0-broken.json"))
    assert "baseline.per_project_adaptation[1].steps_to_target" in broken_reason
    assert "many" in broken_reason
    assert sorted(p.name for p in pipeline_env.inbox.glob("*.json")) == [f"{i}.json" for i in IDS[1:3]]


@pytest.mark.parametrize(
    ("name", "spike_run_id"),
    [("escape.json", "../x"), ("slash.json", "a/b"), ("dots.json", "a..b"), ("bad name!.json", None)],
)
def test_invalid_spike_run_id_is_quarantined(pipeline_env: Pipeline, name: str, spike_run_id: str | None) -> None:
    payload = sample(IDS[0])
    if spike_run_id is None:
        del payload["spike_run_id"]  # the id comes from the file stem, which is not a valid id
    else:
        payload["spike_run_id"] = spike_run_id
    pipeline_env.drop(name, payload)

    result = tick(pipeline_env)
    assert not result.run_requests
    assert pipeline_env.partitions() == []
    [(_moved, reason)] = quarantined(pipeline_env).items()
    assert "spike_run_id" in reason
    assert PayloadRegistry(pipeline_env.store.home).known_ids() == []
    assert not (pipeline_env.home / "x").exists()
    assert not (pipeline_env.home.parent / "x").exists()
