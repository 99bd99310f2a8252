"""Spike payload validation: a raw JSON object in, a typed ``SpikePayload`` out, or every problem at once."""

from __future__ import annotations

from maml_evidence.gate.errors import Collector, PayloadValidationError
from maml_evidence.gate.record import Record
from maml_evidence.gate.thresholds import COST_PROFILE_KEYS, THRESHOLD_KEYS, check_overrides
from maml_evidence.gate.values import MAX_NUMBER, accepts, number, show_limit, text

ARMS = (("baseline", "lora_only"), ("candidate", "lora_plus_maml"))
RATIO = "ratio_to_percentage_points"
PERCENTAGE_POINTS = "percentage_points"
# What a payload may declare as "score_scale", and the scale each declaration means.
DECLARED_SCALES = {"ratio": RATIO, RATIO: RATIO, PERCENTAGE_POINTS: PERCENTAGE_POINTS}
ACCURACY_FIELDS = ("target_accuracy", "final_accuracy")
KNOWN_KEYS = frozenset({"baseline", "candidate", "thresholds", "cost_profile", "score_scale"})  # the rest: extras
MAX_ACCURACY = 100.0  # percentage points; ratios are at most 1
BASELINE_MINUTES_WHAT = f"a number > 0 and at most {show_limit(MAX_NUMBER)}"


class ProjectResult(Record):
    """One project's adaptation result in one arm, accuracies as given in the payload."""

    project: str
    steps_to_target: float
    target_accuracy: float
    final_accuracy: float


class ArmRun(Record):
    """One arm of the spike: LoRA-only (baseline) or LoRA+MAML (candidate)."""

    label: str
    projects: tuple[ProjectResult, ...]
    train_minutes: float
    meta_train_minutes: float


class SpikePayload(Record):
    """A validated spike payload. ``extras`` keeps unknown top-level keys (``spike_run_id``, notes)."""

    baseline: ArmRun
    candidate: ArmRun
    score_scale: str
    threshold_overrides: dict[str, float | int]
    cost_overrides: dict[str, float | int]
    extras: dict[str, object]


def _entry_path(arm: str, index: int) -> str:
    return f"{arm}.per_project_adaptation[{index}]"


def _project(raw: object, arm: str, index: int, errors: Collector, accuracies: list[float]) -> ProjectResult | None:
    """One project entry; the common all-valid entry takes the quick path, anything else the reporting one.

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
        ):
            target, final = float(target), float(final)
            accuracies.append(target)
            accuracies.append(final)
            return ProjectResult._make((name, float(steps), target, final))
    return _project_problems(raw, arm, index, errors, accuracies)


def _project_problems(
    raw: object, arm: str, index: int, errors: Collector, accuracies: list[float]
) -> ProjectResult | None:
    path = _entry_path(arm, index)
    if not isinstance(raw, dict):
        errors.expected(path, "an object with project, steps_to_target and target_accuracy", raw)
        return None
    for key in ("project", "steps_to_target", "target_accuracy"):
        if key not in raw:
            errors.add(f"{path}.{key}", "required field is missing")
    name = text(raw["project"], f"{path}.project", errors) if "project" in raw else None
    steps = number(raw["steps_to_target"], f"{path}.steps_to_target", errors) if "steps_to_target" in raw else None
    values: dict[str, float | None] = {}
    for key in ACCURACY_FIELDS:
        if key in raw:
            value = values[key] = number(raw[key], f"{path}.{key}", errors, maximum=MAX_ACCURACY)
            if value is not None:
                accuracies.append(value)
    target = values.get("target_accuracy")
    final = values.get("final_accuracy", target)
    if name is None or steps is None or target is None or final is None:
        return None
    return ProjectResult(name, steps, target, final)


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
    if "per_project_adaptation" not in raw:
        errors.add(f"{arm}.per_project_adaptation", "required field is missing (a list, possibly empty)")
    elif not isinstance(entries, list):
        errors.expected(f"{arm}.per_project_adaptation", "a list of project results", entries)
    else:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            result = _project(entry, arm, index, errors, accuracies)
            if result is None:
                continue
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
    return ArmRun(label, tuple(projects), train, meta)


def _located_accuracies(raw: dict[str, object]) -> list[tuple[str, float]]:
    """Every valid accuracy value with its JSON path, in document order: the examples scale messages give."""
    found: list[tuple[str, float]] = []
    ignored = Collector()  # the values' own problems are reported where they are validated
    for arm, _label in ARMS:
        arm_raw = raw.get(arm)
        entries = arm_raw.get("per_project_adaptation") if isinstance(arm_raw, dict) else None
        for index, entry in enumerate(entries if isinstance(entries, list) else ()):
            for key in ACCURACY_FIELDS:
                if isinstance(entry, dict) and key in entry:
                    path = f"{_entry_path(arm, index)}.{key}"
                    value = number(entry[key], path, ignored, maximum=MAX_ACCURACY)
                    if value is not None:
                        found.append((path, value))
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


__all__ = ["ArmRun", "PayloadValidationError", "ProjectResult", "SpikePayload", "validate_payload"]
