"""The plotting library loads only where a picture is drawn: never for the gate commands or on import."""

from __future__ import annotations

import json
import subprocess
import sys

from maml_evidence_tests.gate.conftest import FIXTURES, REPO_ROOT

PLOTTING = ["PIL", "matplotlib"]  # Pillow writes the PNG
PROBE = """
import contextlib, io, json, sys
def plotting():
    return sorted({name.split(".")[0] for name in sys.modules} & {"matplotlib", "PIL"})
import maml_evidence.cli as cli
seen = {}
with contextlib.redirect_stdout(io.StringIO()):
    seen["maml-feasibility-gate"] = (cli.gate_main(["--input", sys.argv[1]]), plotting())
    seen["maml-evidence gate"] = (cli.main(["gate", "--input", sys.argv[1], "--format", "markdown"]), plotting())
import maml_evidence.pictures, maml_evidence.store.commit, maml_evidence.definitions
seen["import the package, the store and the Dagster definitions"] = (0, plotting())
from maml_evidence.pictures import render_effects
from maml_evidence.strength import evaluate_with_evidence
from maml_evidence.gate import load_payload_file, validate_payload
report = evaluate_with_evidence(validate_payload(load_payload_file(sys.argv[1])), {})[2]
render_effects(report)
seen["draw a chart"] = (0, plotting())
print(json.dumps(seen))
"""


def test_matplotlib_loads_only_to_draw() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(FIXTURES / "minimal.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen.pop("draw a chart") == [0, PLOTTING]  # the positive control: the probe does see it
    for step, (code, loaded) in seen.items():
        assert code == 0, step
        assert loaded == [], f"{step} imported {loaded}"
