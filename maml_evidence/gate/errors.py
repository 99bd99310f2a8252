"""The one error type users see for bad input: every problem at once, each with its JSON path."""

from __future__ import annotations

import json
import math


def show(value: object, limit: int = 60) -> str:
    """Render a bad value the way it appeared in the JSON, shortened for messages."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Problem:
    """One thing wrong with the input: where (a JSON path) and what."""

    __slots__ = ("path", "message")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.path, self.message) == (other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.path, self.message))


class PayloadValidationError(ValueError):
    """Raised for any invalid spike payload, threshold override or policy value.

    ``problems`` lists every problem found, each naming its JSON path, the value and what was expected.
    """

    def __init__(
        self, problems: list[Problem] | tuple[Problem, ...], source: str | None = None, what: str = "spike payload"
    ) -> None:
        self.problems = tuple(problems)
        self.source = source
        self.what = what
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        count = len(self.problems)
        lines = [f"{head}invalid {self.what} ({count} problem{'s' if count != 1 else ''}):"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


class Collector:
    """Accumulates problems while validating so that all of them are reported together."""

    __slots__ = ("problems",)

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def expected(self, path: str, what: str, value: object) -> None:
        self.add(path, f"expected {what}, got {show(value)}")

    def raise_if_any(self, source: str | None = None, what: str = "spike payload") -> None:
        if self.problems:
            raise PayloadValidationError(self.problems, source, what)
