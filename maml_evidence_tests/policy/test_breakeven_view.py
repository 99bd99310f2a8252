"""The cost_breakeven view: written with each run's cost metrics, refreshed by re-evaluation when its inputs change."""

from __future__ import annotations

import json
import math

import pytest

from maml_evidence.policy import load_policy
from maml_evidence.store.reevaluation import reevaluate
from maml_evidence_tests.policy.conftest import PAYLOADS, Home


def breakeven(home: Home) -> dict[str, dict[str, object]]:
    return {str(r["spike_run_id"]): r for r in home.rows("SELECT * FROM cost_breakeven")}


def test_ingest_writes_a_row_per_run_saying_which_inputs_are_missing(home: Home) -> None:
    rows = breakeven(home)
    assert set(rows) == set(PAYLOADS)
    for run_id, row in rows.items():
        report = home.store.read_report(run_id)
        assert row["extra_gpu_cost_usd_per_run"] == pytest.approx(
            report["cost"]["extra_gpu_cost_usd_per_run"], abs=1e-4
        )
        assert row["missing"] == report["economics"]["missing"]
        assert row["saving_per_adaptation_usd"] is None or "minutes_per_adaptation_step" in json.dumps(
            PAYLOADS[run_id].get("cost_profile", {})
        )


def test_a_policy_giving_the_inputs_refreshes_every_row_and_changes_no_decision(home: Home) -> None:
    before = {run_id: row["decision"] for run_id, row in home.decisions().items()}
    home.write_policy({"minutes_per_adaptation_step": 2, "adaptations_per_month": 30})
    version = load_policy(home.policy_file).version
    result = reevaluate(home.store)
    assert result.changes == []
    assert {run_id: row["decision"] for run_id, row in home.decisions().items()} == before
    summary = {str(r["spike_run_id"]): r for r in home.rows("SELECT * FROM adaptation_summary")}
    for run_id, row in breakeven(home).items():
        assert row["policy_version"] == version, run_id
        assert (row["minutes_per_adaptation_step"], row["adaptations_per_month"]) == (2.0, 30.0), run_id
        expected = summary[run_id]["mean_step_reduction"] * 2 / 60 * row["gpu_hour_usd"]
        assert row["saving_per_adaptation_usd"] == pytest.approx(expected), run_id
        sources = json.loads(str(row["sources"]))
        assert sources["minutes_per_adaptation_step"] == "policy", run_id
        if row["saving_per_adaptation_usd"] and row["saving_per_adaptation_usd"] > 0:
            ratio = row["extra_gpu_cost_usd_per_run"] / row["saving_per_adaptation_usd"]
            assert row["breakeven_adaptations_per_run"] == math.ceil(ratio), run_id
    # a policy change that leaves the inputs alone rewrites no row
    home.write_policy({"minutes_per_adaptation_step": 2, "adaptations_per_month": 30, "min_projects": 2})
    reevaluate(home.store)
    assert {row["policy_version"] for row in breakeven(home).values()} == {version}
