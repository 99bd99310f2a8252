"""``Record``, the gate's frozen value objects: construction, immutability, equality, copies, and typing."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maml_evidence.gate import GateInputs, Thresholds, judge
from maml_evidence.gate.payload import ProjectResult
from maml_evidence.gate.record import Record
from maml_evidence_tests.gate.conftest import REPO_ROOT


def test_positional_keyword_and_default_construction_agree():
    positional = ProjectResult("project-a", 8.0, 80.0, 81.0)
    keywords = ProjectResult(project="project-a", steps_to_target=8.0, target_accuracy=80.0, final_accuracy=81.0)
    assert positional == keywords == ProjectResult._make(("project-a", 8.0, 80.0, 81.0, 0, 0, None, None))
    assert type(ProjectResult._make(tuple(positional))) is ProjectResult
    assert (positional.project, positional.steps_to_target, positional.final_accuracy) == ("project-a", 8.0, 81.0)
    assert Thresholds(min_projects=5) == Thresholds(5, 4.0, 7.0, 1.5, 0.25, 1.0, 50.0, 2.0)
    assert Thresholds().max_extra_gpu_cost_usd_per_run == 2.0
    assert Thresholds._fields[0] == "min_projects" and len(Thresholds._fields) == 10  # the spec's 8, 2 guards


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ProjectResult("a", 1.0, 2.0), "missing field 'final_accuracy'"),
        (lambda: ProjectResult("a", 1.0, 2.0, 3.0, 0, 0, None, None, 4.0), "takes 8 fields, got 9"),
        (lambda: ProjectResult("a", 1.0, 2.0, 3.0, colour="red"), "no field 'colour'"),
        (lambda: ProjectResult("a", 1.0, 2.0, project="b"), "two values for 'project'"),
        (lambda: Thresholds(min_project=4), "no field 'min_project'"),
    ],
)
def test_wrong_construction_is_a_type_error(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_records_are_immutable():
    result = ProjectResult("a", 1.0, 2.0, 3.0)
    with pytest.raises(AttributeError, match="immutable"):
        result.project = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        result.colour = "red"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="immutable"):
        del result.project  # type: ignore[misc]
    assert result.project == "a"


def test_equality_and_hashing_need_the_same_type():
    inputs = GateInputs(3, 7.0, 8.0, 2.5, 0.35, 0.5, 18.0, 40.0)
    assert inputs == GateInputs(3, 7.0, 8.0, 2.5, 0.35, 0.5, 18.0, 40.0)
    assert hash(inputs) == hash(GateInputs(3, 7.0, 8.0, 2.5, 0.35, 0.5, 18.0, 40.0))
    assert inputs != GateInputs(4, 7.0, 8.0, 2.5, 0.35, 0.5, 18.0, 40.0)
    assert inputs != tuple(inputs)
    assert tuple(inputs) != inputs

    class Other(Record):
        a: str
        b: float

    class Same(Record):
        a: str
        b: float

    assert Other("x", 1.0) != Same("x", 1.0)
    assert len({inputs, GateInputs(*inputs)}) == 1


def test_a_verdict_survives_pickle_and_deepcopy():
    """Re-evaluation workers send verdicts back to the parent process pickled."""
    verdict = judge(GateInputs(3, 7.0, 8.0, 2.5, 0.35, 0.5, 18.0, 40.0), Thresholds(), 2.5)
    for copied in (pickle.loads(pickle.dumps(verdict)), copy.deepcopy(verdict), copy.copy(verdict)):
        assert copied == verdict
        assert type(copied) is type(verdict)
        assert copied.checks[0].conditions[0].check == "enough_projects"
        assert copied.maml_recommended and copied.reasons == verdict.reasons


def test_repr_and_as_dict_name_every_field():
    result = ProjectResult("a", 1.0, 2.0, 3.0)
    assert repr(result) == (
        "ProjectResult(project='a', steps_to_target=1.0, target_accuracy=2.0, final_accuracy=3.0, replicates=0, "
        "unreached=0, steps_sd=None, final_accuracy_sd=None)"
    )
    assert result.as_dict() == {
        "project": "a",
        "steps_to_target": 1.0,
        "target_accuracy": 2.0,
        "final_accuracy": 3.0,
        "replicates": 0,
        "unreached": 0,
        "steps_sd": None,
        "final_accuracy_sd": None,
    }


TYPED_USE = """
from maml_evidence.gate import GateInputs, Thresholds
from maml_evidence.gate.payload import ProjectResult

ProjectResult("a", "eight", 80.0, 81.0)
ProjectResult("a", 8.0, 80.0)
Thresholds(min_project=4)
inputs = GateInputs(3, 7.0, 8.0, 2.5, 0.35, 0.5, 18.0, 40.0)
inputs.common_project_count = 4
count: str = inputs.common_project_count
ok = Thresholds(min_projects=4).trigger_mean_steps + 1.0
"""


def test_a_type_checker_sees_record_constructors_and_fields(tmp_path: Path):
    mypy = Path(sys.executable).with_name("mypy")
    if not mypy.exists():
        pytest.skip("mypy is not installed in this environment")
    script = tmp_path / "typed_use.py"
    script.write_text(textwrap.dedent(TYPED_USE), encoding="utf-8")
    result = subprocess.run(
        [str(mypy), "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(script)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert [int(line.split(":")[1]) for line in errors] == [5, 6, 7, 9, 10], result.stdout
    assert 'Argument 2 to "ProjectResult" has incompatible type "str"' in result.stdout
    assert 'Missing positional argument "final_accuracy"' in result.stdout
    assert 'Unexpected keyword argument "min_project"' in result.stdout


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="the C-level field reader is CPython's")
def test_fields_are_read_by_cpythons_tuple_getter():
    """The fast field reader is a private CPython name: if a Python release drops it, this fails, not only speed."""
    from collections import _tuplegetter  # type: ignore[attr-defined]

    assert type(ProjectResult.__dict__["project"]) is _tuplegetter
    assert type(Thresholds.__dict__["max_extra_gpu_cost_usd_per_run"]) is _tuplegetter
