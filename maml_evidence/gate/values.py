"""Strict checks for JSON scalar values, shared by payload and policy validation."""

from __future__ import annotations

import math

from maml_evidence.gate.errors import Collector


def number(
    raw: object,
    path: str,
    errors: Collector,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
    what: str | None = None,
) -> float | None:
    """A finite real number within [minimum, maximum]; booleans, null, strings, NaN and Infinity fail."""
    if what is None:
        what = f"a number >= {minimum:g}" if maximum is None else f"a number between {minimum:g} and {maximum:g}"
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        errors.expected(path, what, raw)
        return None
    try:
        value = float(raw)
    except OverflowError:  # a JSON integer literal too large for a float
        errors.expected(path, what, raw)
        return None
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        errors.expected(path, what, raw)
        return None
    return value


def text(raw: object, path: str, errors: Collector, *, what: str = "a non-empty string") -> str | None:
    """A string with visible content."""
    if not isinstance(raw, str) or not raw.strip():
        errors.expected(path, what, raw)
        return None
    return raw
