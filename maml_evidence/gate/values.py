"""Strict checks for JSON scalar values, shared by payload and policy validation.

Every number the gate accepts is finite and at most ``MAX_NUMBER``, so every metric derived from accepted
numbers stays a finite float (sums, differences, and products with a GPU price), and every value can be
stored in the evidence tables and written as strict JSON.
"""

from __future__ import annotations

from maml_evidence.gate.errors import Collector
from maml_evidence.gate.record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeGuard

MAX_NUMBER = 1e12  # no step count, minute count, price or threshold comes anywhere near it


def show_limit(value: float) -> str:
    """A limit as users would type it in JSON or TOML: 1, 100, 1000000, 1e12."""
    if value >= 1e7:
        return f"{value:.0e}".replace("+", "")
    return str(int(value)) if value == int(value) else repr(value)


def accepts(raw: object, maximum: float = MAX_NUMBER) -> TypeGuard[float | int]:
    """The quick test for a plain in-range number (NaN fails every comparison; a bool's type is not int).

    Validators use it to skip ``number`` for the common valid value; anything it refuses goes through
    ``number``, which decides and reports.
    """
    return (type(raw) is float or type(raw) is int) and 0.0 <= raw <= maximum


def number(
    raw: object,
    path: str,
    errors: Collector,
    *,
    minimum: float = 0.0,
    maximum: float = MAX_NUMBER,
    what: str | None = None,
) -> float | None:
    """A finite real number within [minimum, maximum]; booleans, null, strings, NaN and Infinity fail."""
    # NaN and Infinity fail the range test; a huge integer fails it before float() could overflow.
    if not isinstance(raw, bool) and isinstance(raw, (int, float)) and minimum <= raw <= maximum:
        return float(raw)
    errors.expected(path, what or f"a number between {minimum:g} and {show_limit(maximum)}", raw)
    return None


def text(raw: object, path: str, errors: Collector, *, what: str = "a non-empty string") -> str | None:
    """A string with visible content."""
    if not isinstance(raw, str) or not raw.strip():
        errors.expected(path, what, raw)
        return None
    return raw
