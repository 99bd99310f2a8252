"""The gate's ``CHECK_TABLE`` applied column-wise, as DuckDB SQL, for bulk re-evaluation.

Nothing here states a rule of its own: every condition, how a check's conditions combine, the decision a check
makes when it is first to fail, and every sentence come from ``CHECK_TABLE``; the observed values come from
the stored gate inputs and ``observed_values``'s one derived metric is computed by the gate core's own
function. Number formatting follows ``gate.decision.fmt`` (four decimals, no trailing zeros); the
differential tests compare every decision, check and sentence with the scalar gate.
"""

from __future__ import annotations

from collections.abc import Sequence

from maml_evidence.gate.decision import (
    ALL,
    CHECK_TABLE,
    ENABLE,
    EVIDENCE_CHECK,
    FRACTIONS,
    GLYPHS,
    LABELS,
    MARGIN_SIGN,
    UNDEFINED,
    CheckSpec,
    ConditionSpec,
)
from maml_evidence.gate.metrics import MEASURED_INPUTS
from maml_evidence.store.sqltext import ident, literal
from maml_evidence.strength import INSUFFICIENT, STRONG, SUGGESTIVE, SUGGESTIVE_CHECKS

# ``fmt`` of the gate core, in SQL, in two steps so that each value is printed once: printf's %.4f rounds the
# binary value exactly as Python's format does; then trailing zeros and the point go, and "-0" reads "0".
# printf is the slow part (half of writing the check rows), so a value is printed by a cast to DECIMAL(18, 4),
# twice as fast, wherever that cast cannot round otherwise: away from a tie (the scaled value's fraction at
# least 0.01 from one half, where the cast's error of well under 0.001 cannot cross it) and below 1e9 (no
# overflow); a value near a tie, beyond 1e9, infinite or not a number goes through printf.
# rtrim is the slow part of trimming, so the two common shapes skip it: a value whose last decimal is not 0
# keeps every digit, a whole number loses its ".0000".
MACROS = (
    "CREATE OR REPLACE TEMP MACRO gate_printed(x) AS CASE WHEN abs(x::DOUBLE) < 1e9 "
    "AND abs(x::DOUBLE * 10000 - trunc(x::DOUBLE * 10000)) NOT BETWEEN 0.49 AND 0.51 "
    "THEN x::DOUBLE::DECIMAL(18, 4)::VARCHAR ELSE printf('%.4f', x::DOUBLE) END",
    "CREATE OR REPLACE TEMP MACRO gate_trimmed(p) AS "
    "CASE WHEN NOT (suffix(p, '0') OR suffix(p, '.')) THEN p WHEN p = '-0.0000' THEN '0' "
    "WHEN suffix(p, '.0000') THEN p[:-6] ELSE rtrim(rtrim(p, '0'), '.') END",
)


def shown_columns(names: list[str]) -> tuple[str, str]:
    """Two projections that add ``shown_<name>``: each value as the gate's sentences show it.

    The first prints (``printed_<name>``), the second trims; fractions show as percentages, a value that is
    not there as ``UNDEFINED``, a label as given ("none" when there is none).
    """
    numbers = [n for n in names if n not in LABELS]
    printed = ", ".join(
        f"gate_printed({ident(n)}{' * 100' if n in FRACTIONS else ''}) AS {ident('printed_' + n)}" for n in numbers
    )
    percent = " || '%'"
    shown = []
    for n in numbers:
        text = f"gate_trimmed({ident('printed_' + n)}){percent if n in FRACTIONS else ''}"
        if n in MEASURED_INPUTS:  # null where not measured or undefined
            text = f"coalesce({text}, {literal(UNDEFINED)})"
        shown.append(f"{text} AS {ident('shown_' + n)}")
    shown += [f"coalesce({ident(n)}, 'none') AS {ident('shown_' + n)}" for n in names if n in LABELS]
    return printed, ", ".join(shown)


def condition_sql(check: CheckSpec, index: int) -> str:
    """Whether condition ``index`` of ``check`` holds: ``observed <operator> threshold`` (false on a null)."""
    condition = check.conditions[index]
    compared = f"{ident(condition.metric)} {condition.operator} {ident(condition.threshold_key)}"
    return f"coalesce({compared}, false)" if condition.metric in MEASURED_INPUTS else f"({compared})"


def margin_sql(condition: ConditionSpec) -> str:
    """The condition's margin (``MARGIN_SIGN``): how far observed is from threshold in the passing direction."""
    sign = MARGIN_SIGN[condition.operator]
    return f"({sign!r} * ({ident(condition.metric)} - {ident(condition.threshold_key)}))::DOUBLE"


def enabled_column(check: CheckSpec) -> str:
    """The settings column that says whether an optional check runs (``CheckSpec.enabled_by``)."""
    return "enabled_" + check.name


def passed_sql(check: CheckSpec) -> str:
    """Whether the check passes: its conditions combined as the table says; null where it does not run."""
    joiner = " AND " if check.combine == ALL else " OR "
    passed = "(" + joiner.join(condition_sql(check, i) for i in range(len(check.conditions))) + ")"
    if check.enabled_by is None:
        return passed
    return f"CASE WHEN {ident(enabled_column(check))} THEN {passed} ELSE NULL END"


def decision_sql() -> tuple[str, str]:
    """(decision, failed_check) over the ``flags_sql`` columns: the first failing check in table order decides.

    A check that did not run (null) fails nothing.
    """
    decision = " ".join(f"WHEN NOT {ident(c.name)} THEN {literal(c.on_fail)}" for c in CHECK_TABLE)
    failed = " ".join(f"WHEN NOT {ident(c.name)} THEN {literal(c.name)}" for c in CHECK_TABLE)
    return f"CASE {decision} ELSE {literal(ENABLE)} END", f"CASE {failed} ELSE NULL END"


def decisive_sql(check: CheckSpec) -> str:
    """Index of the condition that settled the check (first with the check's outcome, else the first)."""
    passed = ident(check.name)
    whens = " ".join(f"WHEN {condition_sql(check, i)} = {passed} THEN {i}" for i in range(len(check.conditions)))
    return f"CASE {whens} ELSE 0 END"


_MARK = "\x00"


class _Marks(dict[str, str]):
    """Stands in for the values a sentence shows: each lookup leaves a marker naming what was looked up."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def __missing__(self, name: str) -> str:
        return f"{_MARK}{self.kind}:{name}{_MARK}"


def sentence_parts(check: CheckSpec, passed: bool) -> list[tuple[str, str]]:
    """The check's sentence for one outcome as parts: ("text", literal), ("value", name) or ("cmp", metric).

    The sentence is the check's own ``explain``, called with markers instead of values; nothing is restated.
    """
    text = check.explain(passed, _Marks("value"), _Marks("cmp"))
    parts: list[tuple[str, str]] = []
    for index, piece in enumerate(text.split(_MARK)):
        if index % 2 == 0:
            if piece:
                parts.append(("text", piece))
        else:
            kind, _, name = piece.partition(":")
            parts.append((kind, name))
    return parts


def sentence_names(checks: Sequence[CheckSpec] = CHECK_TABLE) -> list[str]:
    """Every value some check sentence shows."""
    names: list[str] = []
    for check in checks:
        for passed in (True, False):
            for kind, name in sentence_parts(check, passed):
                if kind == "value" and name not in names:
                    names.append(name)
    return names


def _sentence_sql(check: CheckSpec, passed: bool) -> str:
    parts = []
    for kind, name in sentence_parts(check, passed):
        if kind == "text":
            parts.append(literal(name))
        elif kind == "cmp":  # how that metric's condition came out
            index = next(i for i, c in enumerate(check.conditions) if c.metric == name)
            holds, fails = GLYPHS[check.conditions[index].operator]
            parts.append(f"CASE WHEN {condition_sql(check, index)} THEN {literal(holds)} ELSE {literal(fails)} END")
        else:
            parts.append(ident("shown_" + name))
    # one concat, not a chain of ||: each || copies the sentence so far (every part is set: no null to skip)
    return "concat(" + ", ".join(parts or ["''"]) + ")"


def reason_sql(check: CheckSpec) -> str:
    """The check's sentence for the outcome it came to (its ``flags_sql`` column), values and comparisons filled in."""
    return f"CASE WHEN {ident(check.name)} THEN {_sentence_sql(check, True)} ELSE {_sentence_sql(check, False)} END"


def check_rows_sql(source: str, check: CheckSpec, evaluated_at: str) -> str:
    """``gate_checks`` rows of one check for every spike run of ``source`` (columns as the table declares).

    ``source`` has the observed values, thresholds, ``flags_sql`` columns and ``shown_columns``.
    """
    decisive = decisive_sql(check)

    def pick(values: list[str]) -> str:
        if len(values) == 1:  # one condition: it is the decisive one
            return values[0]
        return "CASE " + " ".join(f"WHEN {decisive} = {i} THEN {v}" for i, v in enumerate(values)) + " END"

    conditions = check.conditions
    return (
        f"SELECT spike_run_id, {literal(check.name)} AS check_name, {ident(check.name)} AS passed, "
        f"{pick([literal(c.metric) for c in conditions])} AS metric, "
        f"{pick([f'{ident(c.metric)}::DOUBLE' for c in conditions])} AS observed, "
        f"{pick([literal(c.operator) for c in conditions])} AS operator, "
        f"{pick([f'{ident(c.threshold_key)}::DOUBLE' for c in conditions])} AS threshold, "
        f"{pick([literal(c.threshold_key) for c in conditions])} AS threshold_key, "
        f"{pick([margin_sql(c) for c in conditions])} AS margin, "
        f"{reason_sql(check)} AS reason, {evaluated_at} AS evaluated_at FROM {source}"
        + ("" if check.enabled_by is None else f" WHERE {ident(enabled_column(check))}")
    )


def flags_sql() -> str:
    """One boolean column per check, named as the check."""
    return ", ".join(f"{passed_sql(c)} AS {ident(c.name)}" for c in CHECK_TABLE)


def grade_sql() -> str:
    """The evidence grade over the ``flags_sql`` columns: strong when the ``evidence_strength`` check's conditions
    hold (whether or not the policy requires it), suggestive when the checks ``SUGGESTIVE_CHECKS`` pass, else
    insufficient (``maml_evidence.strength``'s grade, column-wise)."""
    joiner = " AND " if EVIDENCE_CHECK.combine == ALL else " OR "
    strong = joiner.join(condition_sql(EVIDENCE_CHECK, i) for i in range(len(EVIDENCE_CHECK.conditions)))
    suggestive = " AND ".join(f"coalesce({ident(name)}, false)" for name in SUGGESTIVE_CHECKS)
    return (
        f"CASE WHEN {strong} THEN {literal(STRONG)} WHEN {suggestive} THEN {literal(SUGGESTIVE)} "
        f"ELSE {literal(INSUFFICIENT)} END"
    )
