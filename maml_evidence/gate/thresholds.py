"""Gate thresholds and cost assumptions: the spec's defaults and strict key-by-key overrides."""

from __future__ import annotations

from maml_evidence.gate.errors import Collector
from maml_evidence.gate.record import TYPE_CHECKING, Record
from maml_evidence.gate.values import MAX_NUMBER, number, show_limit

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Thresholds(Record):
    """The gate thresholds: the spec's eight (AFR-141, with its defaults), then the optional guards of issue 11.

    An optional guard is off by default, and a report shows it only where a policy or payload sets it, so a
    spec payload judged under the spec's defaults gets the spec's report.
    """

    min_projects: int = 3
    trigger_mean_steps: float = 4.0
    trigger_max_steps: float = 7.0
    min_mean_step_reduction: float = 1.5
    min_relative_step_reduction: float = 0.25
    max_mean_accuracy_regression_pp: float = 1.0
    max_training_overhead_pct: float = 50.0
    max_extra_gpu_cost_usd_per_run: float = 2.0
    # worst single project's final-accuracy loss (pp); None: not checked
    max_project_accuracy_regression_pp: float | None = None
    # enable_maml only with strong evidence (else collect_more_evidence)
    require_strong_evidence: bool = False


DEFAULT_GPU_HOUR_USD = 2.5
THRESHOLD_KEYS: tuple[str, ...] = Thresholds._fields
OPTIONAL_THRESHOLD_KEYS: frozenset[str] = frozenset({"max_project_accuracy_regression_pp", "require_strong_evidence"})
NULLABLE_KEYS: frozenset[str] = frozenset({"max_project_accuracy_regression_pp"})  # null: not checked
SPEC_THRESHOLD_KEYS: tuple[str, ...] = tuple(key for key in THRESHOLD_KEYS if key not in OPTIONAL_THRESHOLD_KEYS)
# Break-even inputs (issue 12): cost_profile keys beside the spec's GPU price; they never change a decision.
ECONOMICS_KEYS: tuple[str, ...] = ("minutes_per_adaptation_step", "adaptations_per_month", "training_runs_per_month")
COST_PROFILE_KEYS: tuple[str, ...] = ("gpu_hour_usd", *ECONOMICS_KEYS)
SETTING_KEYS: tuple[str, ...] = (*THRESHOLD_KEYS, *COST_PROFILE_KEYS)
DEFAULT_THRESHOLDS = Thresholds()
DEFAULT_SETTING_VALUES: dict[str, float | int | None] = {
    **DEFAULT_THRESHOLDS.as_dict(),
    "gpu_hour_usd": DEFAULT_GPU_HOUR_USD,
    "minutes_per_adaptation_step": None,  # not known unless given
    "adaptations_per_month": None,
    "training_runs_per_month": 1,
}
# Settings the spec defines: always part of a policy's version; the others count only where they differ from default.
SPEC_SETTING_KEYS: frozenset[str] = frozenset({*SPEC_THRESHOLD_KEYS, "gpu_hour_usd"})
STEP_MINUTES_WHAT = f"a number of GPU minutes > 0 and at most {show_limit(MAX_NUMBER)}"
# A count of projects; the bound keeps it far inside the int64 column it is stored in.
MAX_MIN_PROJECTS = 1_000_000
MIN_PROJECTS_WHAT = f"a whole number between 0 and {show_limit(MAX_MIN_PROJECTS)}"
FRACTION_WHAT = "a fraction between 0 and 1 (0.25 means 25%)"
BOOLEAN_WHAT = "true or false"
OPTIONAL_PP_WHAT = f"a number of percentage points between 0 and {show_limit(MAX_NUMBER)}, or null (not checked)"


class Settings(Record):
    """What a spike run is judged under: thresholds and GPU price, and where each value came from.

    ``values`` and ``sources`` are keyed by every threshold key and ``gpu_hour_usd``; a source is
    ``"default"``, ``"policy"`` or ``"payload"``.
    """

    thresholds: Thresholds
    gpu_hour_usd: float
    values: dict[str, float | int | None]
    sources: dict[str, str]

    def in_force(self) -> tuple[str, ...]:
        """The threshold keys a report shows: the spec's, and each optional guard a policy or payload sets."""
        sources = self.sources
        if sources["max_project_accuracy_regression_pp"] == sources["require_strong_evidence"] == "default":
            return SPEC_THRESHOLD_KEYS  # the common case, without a loop over every key
        return tuple(key for key in THRESHOLD_KEYS if key not in OPTIONAL_THRESHOLD_KEYS or sources[key] != "default")


def check_threshold_value(key: str, raw: object, path: str, errors: Collector) -> float | int | None:
    """Validate one threshold value; returns the clean value or None (with a problem recorded)."""
    if key == "require_strong_evidence":
        if type(raw) is bool:
            return raw
        errors.expected(path, BOOLEAN_WHAT, raw)
        return None
    if key == "max_project_accuracy_regression_pp":
        return number(raw, path, errors, what=OPTIONAL_PP_WHAT)
    if key == "min_projects":
        value = number(raw, path, errors, maximum=MAX_MIN_PROJECTS, what=MIN_PROJECTS_WHAT)
        if value is None:
            return None
        if not value.is_integer():
            errors.expected(path, MIN_PROJECTS_WHAT, raw)
            return None
        return int(value)
    if key == "min_relative_step_reduction":
        return number(raw, path, errors, maximum=1.0, what=FRACTION_WHAT)
    return number(raw, path, errors)


def check_overrides(
    raw: object, path: str, valid_keys: tuple[str, ...], errors: Collector
) -> dict[str, float | int | None]:
    """Validate an override object (``thresholds`` or ``cost_profile``): known keys, clean values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.expected(path, "an object", raw)
        return {}
    clean: dict[str, float | int | None] = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in valid_keys:
            errors.add(key_path, f"unknown key {key!r}; valid keys are: {', '.join(valid_keys)}")
            continue
        if value is None and key in NULLABLE_KEYS:  # a guard switched off (say, one a policy set)
            clean[key] = None
            continue
        if key == "gpu_hour_usd" or key in ECONOMICS_KEYS:
            what = STEP_MINUTES_WHAT if key == "minutes_per_adaptation_step" else None
            checked = number(value, key_path, errors, what=what)
            if checked == 0 and key == "minutes_per_adaptation_step":  # a step that costs nothing saves nothing
                errors.expected(key_path, STEP_MINUTES_WHAT, value)
                checked = None
        else:
            checked = check_threshold_value(key, value, key_path, errors)
        if checked is not None:
            clean[key] = checked
    return clean


def effective_settings(
    policy: Mapping[str, float | int | None] | None,
    payload_thresholds: Mapping[str, float | int | None],
    payload_cost: Mapping[str, float | int | None],
) -> Settings:
    """The one rule for what a spike run is judged under: default < policy < the payload's own overrides.

    Every layer holds validated values (``check_overrides``); keys that are not settings are ignored.
    """
    values: dict[str, Any] = dict(DEFAULT_SETTING_VALUES)
    sources = dict.fromkeys(SETTING_KEYS, "default")
    for origin, layer in (("policy", policy or {}), ("payload", payload_thresholds), ("payload", payload_cost)):
        for key, value in layer.items():
            if key in values:
                values[key] = value
                sources[key] = origin
    thresholds = Thresholds(*[values[key] for key in THRESHOLD_KEYS])
    return Settings(thresholds, float(values["gpu_hour_usd"]), values, sources)
