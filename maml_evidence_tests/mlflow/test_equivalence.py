"""Payloads collected from MLflow decide exactly as the hand-written payloads they were logged from."""

from __future__ import annotations

import json

from maml_evidence import evaluate_feasibility
from maml_evidence.gate import validate_payload
from maml_evidence.sources.mlflow import WRITTEN, MlflowSource
from maml_evidence.strength import evaluate_with_evidence
from maml_evidence_tests.mlflow.conftest import Experiment
from maml_evidence_tests.samples import SAMPLE_DECISIONS, SAMPLE_INBOX


def by_project(payload: dict) -> dict:
    """The payload with each arm's projects in name order (MLflow has no order of its own) and no notes."""
    out = {k: v for k, v in payload.items() if k not in ("notes", "source")}
    for arm in ("baseline", "candidate"):
        entries = sorted(payload[arm]["per_project_adaptation"], key=lambda e: e["project"])
        out[arm] = {**payload[arm], "per_project_adaptation": entries}
    return out


def test_every_sample_collected_from_mlflow_gets_the_same_report(tracking_uri: str, experiment: Experiment) -> None:
    written = {}
    for spike in SAMPLE_DECISIONS:
        written[spike] = json.loads((SAMPLE_INBOX / f"{spike}.json").read_text(encoding="utf-8"))
        experiment.log_payload(spike, written[spike])

    # one sample has a project in one arm only: judged over the common projects when asked to, an error if not
    strict = {r.spike_run_id: r for r in MlflowSource(tracking_uri, experiment.name).collect()}
    unmatched = {
        s
        for s, p in written.items()
        if evaluate_feasibility(p)["project_alignment"]["baseline_only_projects"]
        or evaluate_feasibility(p)["project_alignment"]["candidate_only_projects"]
    }
    assert unmatched and {s for s, r in strict.items() if r.outcome != WRITTEN} == unmatched
    collected = MlflowSource(tracking_uri, experiment.name, allow_unmatched_projects=True).collect()

    assert sorted(r.spike_run_id for r in collected) == sorted(SAMPLE_DECISIONS)
    for result in collected:
        assert result.outcome == WRITTEN, result.error
        hand = by_project(written[result.spike_run_id])
        report = evaluate_feasibility(result.payload)
        assert report["decision"] == SAMPLE_DECISIONS[result.spike_run_id]
        assert report == evaluate_feasibility(hand)  # every number, check, reason and sentence
        # the statistics too (steps and accuracies came from the curves, not from typed numbers)
        ours = evaluate_with_evidence(validate_payload(result.payload)).report
        theirs = evaluate_with_evidence(validate_payload(hand)).report
        assert ours["evidence"] == theirs["evidence"]


def test_a_spike_not_marked_complete_is_not_collected(tracking_uri: str, experiment: Experiment) -> None:
    spike = "2026-10-06-support-bots-enable"
    payload = json.loads((SAMPLE_INBOX / f"{spike}.json").read_text(encoding="utf-8"))
    experiment.log_payload(spike, payload, complete=False)

    (result,) = MlflowSource(tracking_uri, experiment.name).collect()

    assert result.payload is None and result.outcome == "skipped (not ready)"
    assert "maml_evidence.complete=true" in result.error and result.parent_run_id in result.error
    # asked for by id, a spike still training is an error that names its parent run
    (asked,) = MlflowSource(tracking_uri, experiment.name).collect([spike])
    assert asked.outcome == "error" and asked.parent_run_id in asked.error
