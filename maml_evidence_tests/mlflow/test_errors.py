"""Every problem with the runs is an error that names the MLflow run at fault (id and tags)."""

from __future__ import annotations

import math

import pytest

from maml_evidence import evaluate_feasibility
from maml_evidence.sources.mlflow import FAILED, WRITTEN, MlflowSource, SourceError
from maml_evidence_tests.mlflow.conftest import Experiment

SPIKE = "broken-spike"


def tags(arm: str, **more: str) -> dict[str, str]:
    extra = {f"maml_evidence.{k}": v for k, v in more.items()}
    return {"maml_evidence.spike_run_id": SPIKE, "maml_evidence.arm": arm, **extra}


def good_arm(experiment: Experiment, arm: str, projects: tuple[str, ...] = ("a", "b", "c")) -> None:
    experiment.run(f"{arm}/train", tags(arm, stage="train"), metrics={"train_minutes": [(0, 20.0)]})
    for project in projects:
        experiment.run(
            f"{arm}/{project}",
            tags(arm, project=project),
            params={"target_accuracy": 0.8},
            metrics={"val_accuracy": [(0, 0.5), (8 if arm == "baseline" else 4, 0.81)]},
        )


def collect_one(tracking_uri: str, experiment: Experiment) -> object:
    (result,) = MlflowSource(tracking_uri, experiment.name).collect()
    return result


def failure(tracking_uri: str, experiment: Experiment) -> str:
    result = collect_one(tracking_uri, experiment)
    assert result.outcome == FAILED and result.payload is None
    return result.error


def test_a_missing_arm_names_the_spike_and_its_parent_run(tracking_uri: str, experiment: Experiment) -> None:
    parent = experiment.parent(SPIKE)
    good_arm(experiment, "baseline")

    error = failure(tracking_uri, experiment)

    assert "arm candidate has no runs" in error
    assert parent in error and f"maml_evidence.spike_run_id={SPIKE}" in error


def test_a_missing_target_names_the_run(tracking_uri: str, experiment: Experiment) -> None:
    experiment.parent(SPIKE)
    good_arm(experiment, "baseline")
    good_arm(experiment, "candidate", ("a", "b"))
    run = experiment.run("no-target", tags("candidate", project="c"), metrics={"val_accuracy": [(0, 0.9)]})

    error = failure(tracking_uri, experiment)

    assert f"MLflow run {run} 'no-target' (" in error and "maml_evidence.project=c" in error
    assert "no target: log the param (or tag) target_accuracy" in error


def test_a_metric_without_history_names_the_run_and_the_metric(tracking_uri: str, experiment: Experiment) -> None:
    experiment.parent(SPIKE)
    good_arm(experiment, "baseline")
    good_arm(experiment, "candidate", ("a", "b"))
    run = experiment.run(
        "no-curve", tags("candidate", project="c"), params={"target_accuracy": 0.8}, metrics={"loss": [(0, 1.0)]}
    )

    error = failure(tracking_uri, experiment)

    assert f"MLflow run {run}" in error and "metric 'val_accuracy' has no history" in error


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_values_name_the_run_and_the_step(tracking_uri: str, experiment: Experiment, bad: float) -> None:
    experiment.parent(SPIKE)
    good_arm(experiment, "baseline")
    good_arm(experiment, "candidate", ("a", "b"))
    run = experiment.run(
        "nan-curve",
        tags("candidate", project="c"),
        params={"target_accuracy": 0.8},
        metrics={"val_accuracy": [(0, 0.5), (3, bad), (4, 0.9)]},
    )

    error = failure(tracking_uri, experiment)

    assert f"MLflow run {run}" in error and "non-finite values (step 3:" in error


def test_a_missing_train_run_and_unseeded_repeats_are_named(tracking_uri: str, experiment: Experiment) -> None:
    experiment.parent(SPIKE)
    good_arm(experiment, "baseline")
    for project in ("a", "b", "c", "c"):
        experiment.run(
            f"candidate/{project}",
            tags("candidate", project=project),
            params={"target_accuracy": 0.8},
            metrics={"val_accuracy": [(0, 0.5), (3, 0.9)]},
        )

    error = failure(tracking_uri, experiment)

    assert "arm candidate has no train run" in error
    assert "project c has 2 adaptation runs in one arm" in error and "maml_evidence.seed" in error


def test_a_value_the_gate_refuses_names_the_run_behind_it(tracking_uri: str, experiment: Experiment) -> None:
    parent = experiment.parent(SPIKE, params={"max_training_overhead_pct": "lots"})
    good_arm(experiment, "baseline")
    good_arm(experiment, "candidate")

    error = failure(tracking_uri, experiment)

    assert "thresholds.max_training_overhead_pct: expected a number" in error
    assert f"[from MLflow run {parent}" in error


def test_a_project_in_one_arm_is_an_error_naming_its_run(tracking_uri: str, experiment: Experiment) -> None:
    """Most often a run that failed or was never tagged: not collected unless asked."""
    experiment.parent(SPIKE)
    good_arm(experiment, "baseline", ("a", "b", "c", "d"))
    good_arm(experiment, "candidate")

    error = failure(tracking_uri, experiment)

    assert f"project d is only in the baseline arm (run {experiment.runs['baseline/d']})" in error
    assert "--allow-unmatched-projects" in error


def test_a_project_in_one_arm_is_collected_with_a_note_when_allowed(tracking_uri: str, experiment: Experiment) -> None:
    """As the gate does with hand-written payloads: listed in project_alignment, never silently dropped."""
    experiment.parent(SPIKE)
    good_arm(experiment, "baseline", ("a", "b", "c", "d"))
    good_arm(experiment, "candidate")

    (result,) = MlflowSource(tracking_uri, experiment.name, allow_unmatched_projects=True).collect()

    assert result.outcome == WRITTEN, result.error
    (note,) = result.notes
    assert f"project d is only in the baseline arm (run {experiment.runs['baseline/d']})" in note
    assert result.payload is not None
    report = evaluate_feasibility(result.payload)
    assert report["project_alignment"]["baseline_only_projects"] == ["d"]


def test_an_unknown_experiment_is_refused(tracking_uri: str) -> None:
    with pytest.raises(SourceError, match="experiment 'no-such-experiment' not found"):
        MlflowSource(tracking_uri, "no-such-experiment")
