"""What a collected payload reads from the runs: curves, seeds, unreached targets, minutes, thresholds."""

from __future__ import annotations

from maml_evidence import evaluate_feasibility
from maml_evidence.sources.mlflow import WRITTEN, MlflowSource
from maml_evidence_tests.mlflow.conftest import Experiment

SPIKE = "seeds-and-misses"


def tags(arm: str, **more: str) -> dict[str, str]:
    return {
        "maml_evidence.spike_run_id": SPIKE,
        "maml_evidence.arm": arm,
        **{f"maml_evidence.{k}": v for k, v in more.items()},
    }


def adaptation(experiment: Experiment, arm: str, project: str, points: list, seed: int | None = None) -> str:
    more = {"project": project} if seed is None else {"project": project, "seed": str(seed)}
    return experiment.run(
        f"{arm}/{project}/{seed}", tags(arm, **more), params={"target_accuracy": 0.8}, metrics={"val_accuracy": points}
    )


def test_seeds_become_replicates_and_a_missed_target_is_a_lower_bound(
    tracking_uri: str, experiment: Experiment
) -> None:
    experiment.parent(SPIKE, params={"min_projects": "2", "require_strong_evidence": "false", "gpu_hour_usd": "3.5"})
    experiment.run("b/train", tags("baseline", stage="train"), metrics={"train_minutes": [(0, 40.0)]})
    experiment.run("c/train", tags("candidate", stage="train"), metrics={"train_minutes": [(0, 42.0)]})
    experiment.run("c/meta", tags("candidate", stage="meta_train"), metrics={"meta_train_minutes": [(0, 3.0)]})
    # logged out of step order, with a dip after reaching the target: the first step >= target counts
    adaptation(experiment, "baseline", "alpha", [(9, 0.82), (3, 0.5), (6, 0.79), (7, 0.8), (8, 0.78)], seed=1)
    adaptation(experiment, "baseline", "alpha", [(0, 0.4), (10, 0.81)], seed=2)
    adaptation(experiment, "baseline", "beta", [(0, 0.3), (8, 0.85)])
    adaptation(experiment, "candidate", "alpha", [(0, 0.5), (4, 0.83)], seed=1)
    adaptation(experiment, "candidate", "alpha", [(0, 0.5), (12, 0.77)], seed=2)  # never reaches 0.8
    adaptation(experiment, "candidate", "beta", [(0, 0.5), (5, 0.79), (20, 0.795)])  # never reaches 0.8

    (result,) = MlflowSource(tracking_uri, experiment.name).collect()

    assert result.outcome == WRITTEN, result.error
    payload = result.payload
    assert payload["spike_run_id"] == SPIKE
    assert payload["thresholds"] == {"min_projects": 2, "require_strong_evidence": False}
    assert payload["cost_profile"] == {"gpu_hour_usd": 3.5}
    baseline, candidate = payload["baseline"], payload["candidate"]
    assert (baseline["train_minutes"], candidate["train_minutes"], candidate["meta_train_minutes"]) == (40, 42, 3)
    assert baseline["per_project_adaptation"] == [
        {
            "project": "alpha",
            "target_accuracy": 0.8,
            "replicates": [
                {"seed": 1, "steps_to_target": 7.0, "final_accuracy": 0.82},
                {"seed": 2, "steps_to_target": 10.0, "final_accuracy": 0.81},
            ],
        },
        {"project": "beta", "target_accuracy": 0.8, "steps_to_target": 8.0, "final_accuracy": 0.85},
    ]
    assert candidate["per_project_adaptation"] == [
        {
            "project": "alpha",
            "target_accuracy": 0.8,
            "replicates": [
                {"seed": 1, "steps_to_target": 4.0, "final_accuracy": 0.83},
                {"seed": 2, "steps_to_target": 12.0, "final_accuracy": 0.77, "reached_target": False},
            ],
        },
        {
            "project": "beta",
            "target_accuracy": 0.8,
            "steps_to_target": 20.0,
            "final_accuracy": 0.795,
            "reached_target": False,
        },
    ]
    report = evaluate_feasibility(payload)
    assert report["thresholds"]["min_projects"] == 2
    assert any("did not reach the target on alpha, beta" in reason for reason in report["reasons"])


def test_train_minutes_default_to_the_run_duration(tracking_uri: str, experiment: Experiment) -> None:
    experiment.parent(SPIKE)
    client = experiment.client
    for arm, minutes in (("baseline", 30), ("candidate", 45)):
        run = client.create_run(experiment.experiment_id, tags=tags(arm, stage="train"), start_time=1_000_000)
        client.set_terminated(run.info.run_id, end_time=1_000_000 + minutes * 60_000)
        for project in ("a", "b", "c"):
            adaptation(experiment, arm, project, [(0, 0.5), (6 if arm == "baseline" else 3, 0.9)])

    (result,) = MlflowSource(tracking_uri, experiment.name).collect()

    assert result.outcome == WRITTEN, result.error
    assert result.payload["baseline"]["train_minutes"] == 30.0
    assert result.payload["candidate"]["train_minutes"] == 45.0
    assert "meta_train_minutes" not in result.payload["candidate"]  # no meta_train run: the gate's default, 0


def test_another_accuracy_metric_can_be_named(tracking_uri: str, experiment: Experiment) -> None:
    experiment.parent(SPIKE)
    for arm in ("baseline", "candidate"):
        experiment.run(f"{arm}/train", tags(arm, stage="train"), metrics={"train_minutes": [(0, 10.0)]})
        experiment.run(
            f"{arm}/p",
            tags(arm, project="p"),
            params={"target_accuracy": 90},
            metrics={"eval/acc": [(0, 50.0), (5 if arm == "baseline" else 2, 91.0)], "val_accuracy": [(0, 99.0)]},
        )

    (result,) = MlflowSource(tracking_uri, experiment.name, "eval/acc").collect()

    assert result.outcome == WRITTEN, result.error
    steps = [result.payload[arm]["per_project_adaptation"][0]["steps_to_target"] for arm in ("baseline", "candidate")]
    assert steps == [5.0, 2.0]
    assert result.payload["source"]["mlflow"]["accuracy_metric"] == "eval/acc"
