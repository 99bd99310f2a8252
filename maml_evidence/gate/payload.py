"""Spike payload validation: a raw JSON object in, a typed ``SpikePayload`` out, or every problem at once."""

from __future__ import annotations

from maml_evidence.gate.errors import Collector, PayloadValidationError
from maml_evidence.gate.record import Record
from maml_evidence.gate.thresholds import COST_PROFILE_KEYS, THRESHOLD_KEYS, check_overrides
from maml_evidence.gate.values import number, text

ARMS = (("baseline", "lora_only"), ("candidate", "lora_plus_maml"))
RATIO = "ratio_to_percentage_points"
PERCENTAGE_POINTS = "percentage_points"
# What a payload may declare as "score_scale", and the scale each declaration means.
DECLARED_SCALES = {"ratio": RATIO, RATIO: RATIO, PERCENTAGE_POINTS: PERCENTAGE_POINTS}
ACCURACY_FIELDS = ("target_accuracy", "final_accuracy")


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


def _project(raw: object, path: str, errors: Collector, accuracies: list[tuple[str, float]]) -> ProjectResult | None:
    if not isinstance(raw, dict):
        errors.expected(path, "an object with project, steps_to_target and target_accuracy", raw)
        return None
    missing = [key for key in ("project", "steps_to_target", "target_accuracy") if key not in raw]
    for key in missing:
        errors.add(f"{path}.{key}", "required field is missing")
    name = text(raw["project"], f"{path}.project", errors) if "project" in raw else None
    steps = number(raw["steps_to_target"], f"{path}.steps_to_target", errors) if "steps_to_target" in raw else None
    values: dict[str, float | None] = {}
    for key in ACCURACY_FIELDS:
        if key in raw:
            values[key] = number(raw[key], f"{path}.{key}", errors, maximum=100.0)
            if values[key] is not None:
                accuracies.append((f"{path}.{key}", values[key]))
    if name is None or steps is None or values.get("target_accuracy") is None:
        return None
    if "final_accuracy" in raw and values["final_accuracy"] is None:
        return None
    target = values["target_accuracy"]
    final = values.get("final_accuracy", target)
    return ProjectResult(name, steps, target, final)


def _arm(
    raw: object, arm: str, default_label: str, errors: Collector, accuracies: list[tuple[str, float]]
) -> ArmRun | None:
    if not isinstance(raw, dict):
        errors.expected(arm, "an object with per_project_adaptation and train_minutes", raw)
        return None
    label = raw.get("label", default_label)
    if "label" in raw:
        label = text(label, f"{arm}.label", errors)
    entries = raw.get("per_project_adaptation")
    projects: list[ProjectResult] = []
    if "per_project_adaptation" not in raw:
        errors.add(f"{arm}.per_project_adaptation", "required field is missing (a list, possibly empty)")
    elif not isinstance(entries, list):
        errors.expected(f"{arm}.per_project_adaptation", "a list of project results", entries)
    else:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            path = f"{arm}.per_project_adaptation[{index}]"
            result = _project(entry, path, errors, accuracies)
            if result is None:
                continue
            if result.project in seen:
                errors.add(
                    f"{path}.project",
                    f"duplicate project {result.project!r} (already at index {seen[result.project]}); "
                    "each project may appear once per run",
                )
                continue
            seen[result.project] = index
            projects.append(result)
    if "train_minutes" not in raw:
        errors.add(f"{arm}.train_minutes", "required field is missing")
        train = None
    elif arm == "baseline":
        train = number(raw["train_minutes"], f"{arm}.train_minutes", errors, what="a number > 0")
        if train == 0:
            errors.expected(f"{arm}.train_minutes", "a number > 0 (overhead is relative to it)", raw["train_minutes"])
            train = None
    else:
        train = number(raw["train_minutes"], f"{arm}.train_minutes", errors)
    meta = number(raw.get("meta_train_minutes", 0.0), f"{arm}.meta_train_minutes", errors)
    if label is None or train is None or meta is None:
        return None
    return ArmRun(label, tuple(projects), train, meta)


def _score_scale(declared: str | None, accuracies: list[tuple[str, float]], errors: Collector) -> str:
    if declared == RATIO:
        for path, value in accuracies:
            if value > 1.0:
                errors.expected(path, 'a ratio between 0 and 1 (the payload declares "score_scale": "ratio")', value)
        return RATIO
    if declared == PERCENTAGE_POINTS:
        return PERCENTAGE_POINTS
    low = next(((p, v) for p, v in accuracies if v <= 1.0), None)
    high = next(((p, v) for p, v in accuracies if v > 1.0), None)
    if low and high:
        errors.add(
            "score_scale",
            "ambiguous accuracy scale: some values look like ratios (<= 1, e.g. "
            f"{low[0]} = {low[1]:g}) and some like percentage points (> 1, e.g. {high[0]} = {high[1]:g}); "
            'use one scale or declare "score_scale": "ratio" or "percentage_points"',
        )
    if not accuracies or high:
        return PERCENTAGE_POINTS
    return RATIO


def validate_payload(raw: object, source: str | None = None) -> SpikePayload:
    """Validate a decoded spike payload strictly; raise ``PayloadValidationError`` listing every problem."""
    errors = Collector()
    if not isinstance(raw, dict):
        errors.expected("$", "a JSON object with baseline and candidate", raw)
        errors.raise_if_any(source)
    declared = raw.get("score_scale")
    if declared is not None and (not isinstance(declared, str) or declared not in DECLARED_SCALES):
        errors.expected("score_scale", 'one of "ratio", "percentage_points"', declared)
        declared = None
    scale_name = DECLARED_SCALES.get(declared) if declared is not None else None
    accuracies: list[tuple[str, float]] = []
    arms: dict[str, ArmRun | None] = {}
    for arm, default_label in ARMS:
        if arm not in raw:
            errors.add(arm, "required field is missing")
            arms[arm] = None
        else:
            arms[arm] = _arm(raw[arm], arm, default_label, errors, accuracies)
    thresholds = check_overrides(raw.get("thresholds"), "thresholds", THRESHOLD_KEYS, errors)
    cost = check_overrides(raw.get("cost_profile"), "cost_profile", COST_PROFILE_KEYS, errors)
    scale = _score_scale(scale_name, accuracies, errors)
    errors.raise_if_any(source)
    baseline, candidate = arms["baseline"], arms["candidate"]
    assert baseline is not None and candidate is not None  # guaranteed: no problems were recorded
    known = {"baseline", "candidate", "thresholds", "cost_profile", "score_scale"}
    extras = {key: value for key, value in raw.items() if key not in known}
    return SpikePayload(baseline, candidate, scale, thresholds, cost, extras)


__all__ = ["ArmRun", "PayloadValidationError", "ProjectResult", "SpikePayload", "validate_payload"]
