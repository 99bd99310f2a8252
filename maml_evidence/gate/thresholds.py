"""Gate thresholds and cost assumptions: the spec's defaults and strict key-by-key overrides."""

from __future__ import annotations

from maml_evidence.gate.errors import Collector
from maml_evidence.gate.record import TYPE_CHECKING, Record
from maml_evidence.gate.values import number, show_limit

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Thresholds(Record):
    """The eight gate thresholds; defaults are the spec's (AFR-141)."""

    min_projects: int = 3
    trigger_mean_steps: float = 4.0
    trigger_max_steps: float = 7.0
    min_mean_step_reduction: float = 1.5
    min_relative_step_reduction: float = 0.25
    max_mean_accuracy_regression_pp: float = 1.0
    max_training_overhead_pct: float = 50.0
    max_extra_gpu_cost_usd_per_run: float = 2.0


DEFAULT_GPU_HOUR_USD = 2.5
THRESHOLD_KEYS: tuple[str, ...] = Thresholds._fields
COST_PROFILE_KEYS: tuple[str, ...] = ("gpu_hour_usd",)
SETTING_KEYS: tuple[str, ...] = (*THRESHOLD_KEYS, *COST_PROFILE_KEYS)
DEFAULT_THRESHOLDS = Thresholds()
DEFAULT_SETTING_VALUES: dict[str, float | int] = {**DEFAULT_THRESHOLDS.as_dict(), "gpu_hour_usd": DEFAULT_GPU_HOUR_USD}
# A count of projects; the bound keeps it far inside the int64 column it is stored in.
MAX_MIN_PROJECTS = 1_000_000
MIN_PROJECTS_WHAT = f"a whole number between 0 and {show_limit(MAX_MIN_PROJECTS)}"
FRACTION_WHAT = "a fraction between 0 and 1 (0.25 means 25%)"


class Settings(Record):
    """What a spike run is judged under: thresholds and GPU price, and where each value came from.

    ``values`` and ``sources`` are keyed by every threshold key and ``gpu_hour_usd``; a source is
    ``"default"``, ``"policy"`` or ``"payload"``.
    """

    thresholds: Thresholds
    gpu_hour_usd: float
    values: dict[str, float | int]
    sources: dict[str, str]


def check_threshold_value(key: str, raw: object, path: str, errors: Collector) -> float | int | None:
    """Validate one threshold value; returns the clean value or None (with a problem recorded)."""
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


def check_overrides(raw: object, path: str, valid_keys: tuple[str, ...], errors: Collector) -> dict[str, float | int]:
    """Validate an override object (``thresholds`` or ``cost_profile``): known keys, clean values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.expected(path, "an object", raw)
        return {}
    clean: dict[str, float | int] = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in valid_keys:
            errors.add(key_path, f"unknown key {key!r}; valid keys are: {', '.join(valid_keys)}")
            continue
        if key == "gpu_hour_usd":
            checked = number(value, key_path, errors)
        else:
            checked = check_threshold_value(key, value, key_path, errors)
        if checked is not None:
            clean[key] = checked
    return clean


def effective_settings(
    policy: Mapping[str, float | int] | None,
    payload_thresholds: Mapping[str, float | int],
    payload_cost: Mapping[str, float | int],
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
