"""Spike payload validation: a raw JSON object in, a typed ``SpikePayload`` out, or every problem at once."""

from __future__ import annotations

import math

from maml_evidence.gate.errors import Collector, PayloadValidationError
from maml_evidence.gate.record import TYPE_CHECKING, Record
from maml_evidence.gate.thresholds import COST_PROFILE_KEYS, THRESHOLD_KEYS, check_overrides
from maml_evidence.gate.values import MAX_NUMBER, accepts, number, show_limit, text

if TYPE_CHECKING:
    from collections.abc import Sequence

ARMS = (("baseline", "lora_only"), ("candidate", "lora_plus_maml"))
RATIO = "ratio_to_percentage_points"
PERCENTAGE_POINTS = "percentage_points"
# What a payload may declare as "score_scale", and the scale each declaration means.
DECLARED_SCALES = {"ratio": RATIO, RATIO: RATIO, PERCENTAGE_POINTS: PERCENTAGE_POINTS}
ACCURACY_FIELDS = ("target_accuracy", "final_accuracy")
KNOWN_KEYS = frozenset({"baseline", "candidate", "thresholds", "cost_profile", "score_scale"})  # the rest: extras
MAX_ACCURACY = 100.0  # percentage points; ratios are at most 1
BASELINE_MINUTES_WHAT = f"a number > 0 and at most {show_limit(MAX_NUMBER)}"
ENTRY_FIELDS = ("project", "steps_to_target", "target_accuracy")  # required, unless replicates give the steps
REPLICATE_KEYS = ("seed", "steps_to_target", "final_accuracy", "reached_target")
REPLACED_BY_REPLICATES = ("steps_to_target", "final_accuracy", "reached_target")
EITHER = "give either replicates or steps_to_target/final_accuracy, not both"
REACHED_WHAT = "true or false (false: training stopped at steps_to_target without reaching the target)"
SEED_WHAT = f"an integer between 0 and {show_limit(MAX_NUMBER)}"


class ProjectResult(Record):
    """One project's adaptation result in one arm, accuracies as given in the payload.

    From replicates (seeds), steps and final accuracy are the replicates' means and the sds their spread;
    ``unreached`` counts the values that are lower bounds (training stopped before reaching the target).
    """

    project: str
    steps_to_target: float
    target_accuracy: float
    final_accuracy: float
    replicates: int = 0  # 0: the entry gave its own values
    unreached: int = 0
    steps_sd: float | None = None  # within-project sample sd (ddof 1) of 2 or more replicates
    final_accuracy_sd: float | None = None

    @property
    def reached_target(self) -> bool:
        return self.unreached == 0


class ArmRun(Record):
    """One arm of the spike: LoRA-only (baseline) or LoRA+MAML (candidate)."""

    label: str
    projects: tuple[ProjectResult, ...]
    train_minutes: float
    meta_train_minutes: float
    # True when no project gave replicates or an unreached target, so the metrics may skip looking for them
    # (a speed-up for the common payload; False is always correct).
    plain: bool = False


class SpikePayload(Record):
    """A validated spike payload. ``extras`` keeps unknown top-level keys (``spike_run_id``, notes)."""

    baseline: ArmRun
    candidate: ArmRun
    score_scale: str
    threshold_overrides: dict[str, float | int | None]
    cost_overrides: dict[str, float | int | None]
    extras: dict[str, object]


def sample_sd(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof 1) of two or more values; exactly 0 when every value is the same."""
    if max(values) == min(values):
        return 0.0
    m = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def _entry_path(arm: str, index: int) -> str:
    return f"{arm}.per_project_adaptation[{index}]"


def _quick_project(raw: object, accuracies: list[float]) -> ProjectResult | None:
    """The common entry, plain and valid, on the quick path; None for anything else (``_project`` decides).

    Every valid accuracy value goes to ``accuracies`` for the scale rules (a missing final accuracy counts
    as its target again, which changes none of them).
    """
    if type(raw) is dict:
        name = raw.get("project")
        steps = raw.get("steps_to_target")
        target = raw.get("target_accuracy")
        final = raw.get("final_accuracy", target)
        if (  # accepts() for each number, written out: this runs for every entry of every payload
            type(name) is str
            and name.strip()
            and (type(steps) is float or type(steps) is int)
            and 0.0 <= steps <= MAX_NUMBER
            and (type(target) is float or type(target) is int)
            and 0.0 <= target <= MAX_ACCURACY
            and (type(final) is float or type(final) is int)
            and 0.0 <= final <= MAX_ACCURACY
            and "replicates" not in raw
            and "reached_target" not in raw
        ):
            target, final = float(target), float(final)
            accuracies.append(target)
            accuracies.append(final)
            return ProjectResult._make((name, float(steps), target, final, 0, 0, None, None))
    return None


def _project(raw: object, arm: str, index: int, errors: Collector, accuracies: list[float]) -> ProjectResult | None:
    """Any project entry, plain or with replicates or ``reached_target``; its problems go to ``errors``."""
    path = _entry_path(arm, index)
    if not isinstance(raw, dict):
        errors.expected(path, "an object with project, steps_to_target and target_accuracy", raw)
        return None
    replicated = "replicates" in raw
    for key in ENTRY_FIELDS:
        if key not in raw and not (replicated and key == "steps_to_target"):
            errors.add(f"{path}.{key}", "required field is missing")
    name = text(raw["project"], f"{path}.project", errors) if "project" in raw else None
    steps = number(raw["steps_to_target"], f"{path}.steps_to_target", errors) if "steps_to_target" in raw else None
    values: dict[str, float | None] = {}
    for key in ACCURACY_FIELDS:
        if key in raw:
            value = values[key] = number(raw[key], f"{path}.{key}", errors, maximum=MAX_ACCURACY)
            if value is not None:
                accuracies.append(value)
    reached = _reached(raw, path, errors)
    target = values.get("target_accuracy")
    if replicated:
        for key in REPLACED_BY_REPLICATES:
            if key in raw:
                also = " (reached_target then goes on each replicate)" if key == "reached_target" else ""
                errors.add(f"{path}.{key}", EITHER + also)
        summary = _replicates(raw["replicates"], f"{path}.replicates", target, errors, accuracies)
        if name is None or target is None or summary is None:
            return None
        mean_steps, mean_final, count, unreached, steps_sd, final_sd = summary
        return ProjectResult(name, mean_steps, target, mean_final, count, unreached, steps_sd, final_sd)
    final = values.get("final_accuracy", target)
    if name is None or steps is None or target is None or final is None or reached is None:
        return None
    return ProjectResult(name, steps, target, final, 0, 0 if reached else 1, None, None)


def _reached(raw: dict[str, object], path: str, errors: Collector) -> bool | None:
    """``reached_target`` of an entry or a replicate: true unless given; None (recorded) when not a boolean."""
    value = raw.get("reached_target", True)
    if type(value) is bool:
        return value
    errors.expected(f"{path}.reached_target", REACHED_WHAT, value)
    return None


def _replicates(
    raw: object, path: str, target: float | None, errors: Collector, accuracies: list[float]
) -> tuple[float, float, int, int, float | None, float | None] | None:
    """A project's replicates summarised: (mean steps, mean final accuracy, count, unreached, steps sd, final sd).

    A replicate's missing final accuracy is the entry's target, as for an entry; None when anything is wrong.
    """
    if not isinstance(raw, list) or not raw:
        errors.expected(path, "a non-empty list of replicates (objects with steps_to_target)", raw)
        return None
    steps: list[float] = []
    finals: list[float] = []
    unreached = 0
    seeds: dict[int, int] = {}
    valid = True
    for index, replicate in enumerate(raw):
        here = f"{path}[{index}]"
        if not isinstance(replicate, dict):
            errors.expected(here, "an object with steps_to_target", replicate)
            valid = False
            continue
        for key in replicate:
            if key not in REPLICATE_KEYS:
                errors.add(f"{here}.{key}", f"unknown field; a replicate may give {', '.join(REPLICATE_KEYS)}")
                valid = False
        step: float | None = None
        if "steps_to_target" in replicate:
            step = number(replicate["steps_to_target"], f"{here}.steps_to_target", errors)
        else:
            errors.add(f"{here}.steps_to_target", "required field is missing")
        final = target
        if "final_accuracy" in replicate:
            final = number(replicate["final_accuracy"], f"{here}.final_accuracy", errors, maximum=MAX_ACCURACY)
            if final is not None:
                accuracies.append(final)
        if "seed" in replicate:
            seed = replicate["seed"]
            if type(seed) is not int or not 0 <= seed <= MAX_NUMBER:
                errors.expected(f"{here}.seed", SEED_WHAT, seed)
                valid = False
            elif (first := seeds.setdefault(seed, index)) != index:
                errors.add(
                    f"{here}.seed",
                    f"duplicate seed {seed} (already at replicates[{first}]); each seed may appear once per project",
                )
                valid = False
        reached = _reached(replicate, here, errors)
        if step is None or final is None or reached is None:
            valid = False
            continue
        steps.append(step)
        finals.append(final)
        unreached += not reached
    if not valid:
        return None
    count = len(steps)
    several = count >= 2
    return (
        math.fsum(steps) / count,
        math.fsum(finals) / count,
        count,
        unreached,
        sample_sd(steps) if several else None,
        sample_sd(finals) if several else None,
    )


def _train_minutes(raw: dict[str, object], arm: str, errors: Collector) -> float | None:
    if "train_minutes" not in raw:
        errors.add(f"{arm}.train_minutes", "required field is missing")
        return None
    value = raw["train_minutes"]
    if arm != "baseline":
        return float(value) if accepts(value) else number(value, f"{arm}.train_minutes", errors)
    if accepts(value) and value:
        return float(value)
    # the baseline's minutes divide the overhead, so zero is refused too
    checked = number(value, f"{arm}.train_minutes", errors, what=BASELINE_MINUTES_WHAT)
    if checked == 0:
        errors.expected(f"{arm}.train_minutes", f"{BASELINE_MINUTES_WHAT} (overhead is relative to it)", value)
        return None
    return checked


def _arm(raw: object, arm: str, default_label: str, errors: Collector, accuracies: list[float]) -> ArmRun | None:
    if not isinstance(raw, dict):
        errors.expected(arm, "an object with per_project_adaptation and train_minutes", raw)
        return None
    label: str | None = default_label
    if "label" in raw:
        label = text(raw["label"], f"{arm}.label", errors)
    entries = raw.get("per_project_adaptation")
    projects: list[ProjectResult] = []
    plain = True
    if "per_project_adaptation" not in raw:
        errors.add(f"{arm}.per_project_adaptation", "required field is missing (a list, possibly empty)")
    elif not isinstance(entries, list):
        errors.expected(f"{arm}.per_project_adaptation", "a list of project results", entries)
    else:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            result = _quick_project(entry, accuracies)
            if result is None:
                result = _project(entry, arm, index, errors, accuracies)
                if result is None:
                    continue
                if result.replicates or result.unreached:
                    plain = False
            first = seen.setdefault(result.project, index)
            if first != index:
                errors.add(
                    f"{_entry_path(arm, index)}.project",
                    f"duplicate project {result.project!r} (already at index {first}); "
                    "each project may appear once per run",
                )
                continue
            projects.append(result)
    train = _train_minutes(raw, arm, errors)
    meta = raw.get("meta_train_minutes", 0.0)
    meta = float(meta) if accepts(meta) else number(meta, f"{arm}.meta_train_minutes", errors)
    if label is None or train is None or meta is None:
        return None
    return ArmRun(label, tuple(projects), train, meta, plain)


def _located_accuracies(raw: dict[str, object]) -> list[tuple[str, float]]:
    """Every valid accuracy value with its JSON path, in document order: the examples scale messages give."""
    found: list[tuple[str, float]] = []
    ignored = Collector()  # the values' own problems are reported where they are validated
    for arm, _label in ARMS:
        arm_raw = raw.get(arm)
        entries = arm_raw.get("per_project_adaptation") if isinstance(arm_raw, dict) else None
        for index, entry in enumerate(entries if isinstance(entries, list) else ()):
            if not isinstance(entry, dict):
                continue
            found += _located(entry, _entry_path(arm, index), ACCURACY_FIELDS, ignored)
            replicates = entry.get("replicates")
            for position, replicate in enumerate(replicates if isinstance(replicates, list) else ()):
                if isinstance(replicate, dict):
                    path = f"{_entry_path(arm, index)}.replicates[{position}]"
                    found += _located(replicate, path, ("final_accuracy",), ignored)
    return found


def _located(raw: dict[str, object], path: str, keys: tuple[str, ...], ignored: Collector) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    for key in keys:
        if key in raw:
            value = number(raw[key], f"{path}.{key}", ignored, maximum=MAX_ACCURACY)
            if value is not None:
                found.append((f"{path}.{key}", value))
    return found


def _score_scale(declared: str | None, accuracies: list[float], raw: dict[str, object], errors: Collector) -> str:
    """The accuracy scale a payload declares or implies; its problems are recorded in ``errors``."""
    if declared == RATIO:
        if any(value > 1.0 for value in accuracies):
            for path, value in _located_accuracies(raw):
                if value > 1.0:
                    errors.expected(
                        path, 'a ratio between 0 and 1 (the payload declares "score_scale": "ratio")', value
                    )
        return RATIO
    if declared == PERCENTAGE_POINTS:
        return PERCENTAGE_POINTS
    if not accuracies:
        return PERCENTAGE_POINTS
    if max(accuracies) <= 1.0:
        return RATIO
    if min(accuracies) <= 1.0:
        located = _located_accuracies(raw)
        low = next((p, v) for p, v in located if v <= 1.0)
        high = next((p, v) for p, v in located if v > 1.0)
        errors.add(
            "score_scale",
            "ambiguous accuracy scale: some values look like ratios (<= 1, e.g. "
            f"{low[0]} = {low[1]:g}) and some like percentage points (> 1, e.g. {high[0]} = {high[1]:g}); "
            'use one scale or declare "score_scale": "ratio" or "percentage_points"',
        )
    return PERCENTAGE_POINTS


def validate_payload(raw: object, source: str | None = None) -> SpikePayload:
    """Validate a decoded spike payload strictly; raise ``PayloadValidationError`` listing every problem."""
    errors = Collector()
    if not isinstance(raw, dict):
        errors.expected("$", "a JSON object with baseline and candidate", raw)
        raise PayloadValidationError(errors.problems, source)
    declared = raw.get("score_scale")
    if declared is not None and (not isinstance(declared, str) or declared not in DECLARED_SCALES):
        errors.expected("score_scale", 'one of "ratio", "percentage_points"', declared)
        declared = None
    scale_name = DECLARED_SCALES.get(declared) if declared is not None else None
    accuracies: list[float] = []
    arms: dict[str, ArmRun | None] = {}
    for arm, default_label in ARMS:
        if arm not in raw:
            errors.add(arm, "required field is missing")
            arms[arm] = None
        else:
            arms[arm] = _arm(raw[arm], arm, default_label, errors, accuracies)
    thresholds = check_overrides(raw.get("thresholds"), "thresholds", THRESHOLD_KEYS, errors)
    cost = check_overrides(raw.get("cost_profile"), "cost_profile", COST_PROFILE_KEYS, errors)
    scale = _score_scale(scale_name, accuracies, raw, errors)
    errors.raise_if_any(source)
    baseline, candidate = arms["baseline"], arms["candidate"]
    assert baseline is not None and candidate is not None  # guaranteed: no problems were recorded
    extras = {key: value for key, value in raw.items() if key not in KNOWN_KEYS}
    return SpikePayload(baseline, candidate, scale, thresholds, cost, extras)


__all__ = ["ArmRun", "PayloadValidationError", "ProjectResult", "SpikePayload", "sample_sd", "validate_payload"]
