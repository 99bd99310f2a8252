"""200 files at once, a third invalid: valid ones evaluated, invalid ones quarantined, none unaccounted for."""

import json
from pathlib import Path

import dagster as dg

from maml_evidence.definitions import defs
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.store import EvidenceStore
from maml_evidence_tests.faults.conftest import write_generated

BREAKAGES = (
    lambda p: p.pop("baseline"),
    lambda p: p["candidate"].__setitem__("train_minutes", "sixty"),
    lambda p: p["baseline"]["per_project_adaptation"].append(
        {"project": "", "steps_to_target": 1, "target_accuracy": 0.5}
    ),
    lambda p: p.__setitem__("thresholds", {"max_training_overhead": 80}),
)


def test_flood_of_files_is_fully_accounted_for(home: Path, tmp_path: Path) -> None:
    inbox = home / "inbox"
    ids = write_generated(inbox, 200, seed=21)
    invalid = set()
    for index, run_id in enumerate(ids):
        if index % 3 == 0:
            path = inbox / f"{run_id}.json"
            payload = json.loads(path.read_text())
            BREAKAGES[index % len(BREAKAGES)](payload)
            path.write_text(json.dumps(payload) if index % 2 else json.dumps(payload)[:-7])  # some also truncated
            invalid.add(run_id)
    valid = [i for i in ids if i not in invalid]

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        resources = {"evidence": EvidenceStoreResource(home=str(home))}
        sensor = defs.resolve_sensor_def("spike_inbox_sensor")
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=resources))
        assert len(result.run_requests) == 1
        request = result.run_requests[0]
        assert set(instance.get_dynamic_partitions("spike_runs")) == set(valid)
        run = defs.resolve_job_def("evaluate_spike_runs").execute_in_process(
            instance=instance, tags=request.tags, resources=resources
        )
        assert run.success
        # the next tick sees nothing new: the sensor does not crash or re-request
        again = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, resources=resources, cursor=result.cursor)
        )
        assert not again.run_requests

    decisions = EvidenceStore(home).decisions()
    assert sorted(decisions) == sorted(valid)
    assert sorted(p.stem for p in inbox.glob("*.json")) == sorted(valid)
    quarantined = sorted((home / "quarantine").glob("*.json"))
    assert len(quarantined) == len(invalid)
    for path in quarantined:
        reason = path.with_name(path.name + ".reason.txt").read_text()
        assert "invalid spike payload" in reason and path.name.split("-", 1)[1] in reason
    assert {p.name.split("-", 1)[1][: -len(".json")] for p in quarantined} == invalid
