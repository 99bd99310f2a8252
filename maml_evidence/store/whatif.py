"""What-if: every stored spike run judged again under the policy in force with some keys changed, recording nothing.

The judging is re-evaluation's own (``reevaluation.judge_history``: the gate's check table column-wise over the stored
gate inputs) on an in-memory DuckDB connection over the store's Parquet files. No lock is taken, so ingest and
re-evaluation carry on; the one ``CREATE TEMP TABLE`` statement reads the committed batches as they are then.
Nothing is written: no table file, report, policy record, journal or Dagster record, and no spilled temp files.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from maml_evidence.gate import DECISIONS, effective_settings
from maml_evidence.gate.errors import Collector
from maml_evidence.gate.thresholds import check_overrides
from maml_evidence.policy import POLICY_KEYS, WHAT, Policy
from maml_evidence.store.catalog import query
from maml_evidence.store.evidence import EvidenceStore
from maml_evidence.store.reevaluation import FLIPPED, judge_history

NULL_WORDS = frozenset({"null", "none"})  # TOML has no null: a guard switched off is spelt null or none
SOURCE = "--set"

Value = float | int | bool | None


@dataclass(frozen=True)
class Flip:
    """A spike run whose decision the what-if policy would change, and the check that would change it."""

    spike_run_id: str
    from_decision: str
    to_decision: str
    cause_check: str | None


@dataclass
class WhatIf:
    """The stored decisions beside the what-if ones; nothing of it is recorded."""

    current: Policy
    policy: Policy
    overrides: dict[str, Value]
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    flips: list[Flip] = field(default_factory=list)
    # spike runs a payload pins a --set key for (the payload's value wins): key -> count
    pinned: dict[str, int] = field(default_factory=dict)
    decided: int = 0  # rows of gate_decisions; more than were judged when a spike run lacks metric rows
    damaged: list[str] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return sum(self.before.values())

    def effective(self, policy: Policy | None = None) -> dict[str, Value]:
        """Every setting of the policy layer over the defaults (an optional guard that is off: null or false)."""
        return dict(effective_settings((policy or self.policy).values, {}, {}).values)

    def as_json(self) -> dict[str, object]:
        return {
            "policy": self.effective(),
            "before": self.before,
            "after": self.after,
            "flips": [
                {
                    "spike_run_id": f.spike_run_id,
                    "from": f.from_decision,
                    "to": f.to_decision,
                    "cause_check": f.cause_check,
                }
                for f in self.flips
            ],
        }


def parse_scalar(text: str) -> object:
    """A ``--set`` value as TOML or JSON reads a scalar: numbers, true/false, null (or none); else the text.

    Whatever comes back is validated by the policy file's own rules, so ``yes`` or ``[1]`` get its messages.
    """
    stripped = text.strip()
    if stripped.lower() in NULL_WORDS:
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:  # TOML's own spellings: 1_000, +1.5, inf
        return tomllib.loads(f"value = {stripped}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def check_settings(assignments: Sequence[tuple[str, str]]) -> dict[str, Value]:
    """Validate ``(key, value text)`` pairs as policy keys, with the policy file's messages (every problem at once).

    A key given twice keeps its last value, as a repeated command-line option does.
    """
    raw = {key.strip(): parse_scalar(value) for key, value in assignments}
    errors = Collector()
    clean = check_overrides(raw, "", POLICY_KEYS, errors)
    errors.raise_if_any(SOURCE, WHAT)
    return clean


def what_if_policy(current: Policy, overrides: Mapping[str, Value]) -> Policy:
    """The policy in force with ``overrides`` replacing its keys (payload overrides still win over both)."""
    shown = ", ".join(f"{key}={_show(value)}" for key, value in overrides.items())
    return Policy(values={**current.values, **overrides}, source=f"{current.source} with --set {shown}")


def what_if(store: EvidenceStore, overrides: Mapping[str, Value], current: Policy | None = None) -> WhatIf:
    """Judge every stored spike run under the policy in force with ``overrides``; writes nothing anywhere."""
    current = current if current is not None else store.policy()
    policy = what_if_policy(current, overrides)
    result = WhatIf(current, policy, dict(overrides))
    connection = store.connect()
    try:
        result.damaged = [damage.describe() for damage in store.last_damage]
        # an in-memory database spills large intermediates into ./.tmp: with no temp directory nothing is written
        connection.execute("SET temp_directory = ''")
        (result.decided,) = query(connection, "SELECT count(*) FROM gate_decisions").fetchone()  # type: ignore[misc]
        if not result.decided:
            return result
        resolved = judge_history(connection, policy)
        result.before = _mix(connection, "old_decision")
        result.after = _mix(connection, "decision")
        found = connection.execute(
            f"SELECT spike_run_id, old_decision, decision, cause FROM {FLIPPED} ORDER BY spike_run_id"
        ).fetchall()
        result.flips = [Flip(*row) for row in found]
        runs_per_pair = connection.execute(
            "SELECT payload_thresholds, payload_cost_profile, count(*) FROM judged GROUP BY ALL"
        ).fetchall()
    finally:
        connection.close()
    for thresholds, cost, runs in runs_per_pair:
        sources = resolved[(thresholds, cost)].sources
        for key in overrides:
            if sources[key] == "payload":
                result.pinned[key] = result.pinned.get(key, 0) + runs
    return result


def _mix(connection, column: str) -> dict[str, int]:  # noqa: ANN001 - a DuckDB connection
    """Decision -> spike runs, in the gate's order of decisions."""
    counts = dict(connection.execute(f"SELECT {column}, count(*) FROM verdicts GROUP BY ALL").fetchall())
    order = {decision: index for index, decision in enumerate(DECISIONS)}
    return {str(k): int(counts[k]) for k in sorted(counts, key=lambda d: (order.get(d, len(order)), str(d)))}


def _show(value: object) -> str:
    """A setting as the policy file spells it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return format(value, "g") if isinstance(value, float) else str(value)


def render_table(result: WhatIf, home: str, show: int) -> str:
    """The what-if for a person: the keys changed, the decision mix before and after, and the flips."""
    lines = [f"what-if over {home} (nothing is recorded)", f"policy in force: {result.current.source}"]
    before, after = result.effective(result.current), result.effective()
    width = max(len(key) for key in result.overrides) if result.overrides else 0
    for key in result.overrides:
        if before[key] == after[key]:
            lines.append(f"  {key:<{width}}  {_show(after[key])} (as in force)")
        else:
            lines.append(f"  {key:<{width}}  {_show(before[key])} -> {_show(after[key])}")
    for key, runs in result.pinned.items():
        lines.append(f"  note: {runs} spike run{'s' if runs != 1 else ''} set {key} in the payload, which wins")
    for damage in result.damaged:
        lines.append(f"  warning: skipped {damage}; run `maml-evidence doctor --repair`")
    if not result.decided:
        lines.append("no decisions stored: nothing to judge again")
        return "\n".join(lines) + "\n"
    if result.decided > result.judged:
        missing = result.decided - result.judged
        lines.append(
            f"  note: {missing} decided spike run(s) lack metric rows and are left out (`maml-evidence doctor`)"
        )
    decisions = list(dict.fromkeys([*result.before, *result.after]))
    name_width = max(len("decision"), len("total"), *(len(d) for d in decisions))
    lines += ["", f"{'decision':<{name_width}}  {'before':>7}  {'after':>7}  {'change':>7}"]
    for decision in decisions:
        old, new = result.before.get(decision, 0), result.after.get(decision, 0)
        lines.append(f"{decision:<{name_width}}  {old:>7}  {new:>7}  {_signed(new - old):>7}")
    lines.append(f"{'total':<{name_width}}  {result.judged:>7}  {sum(result.after.values()):>7}")
    lines.append("")
    count = len(result.flips)
    lines.append(f"{count} of {result.judged} decisions would change")
    for flip in result.flips[:show]:
        lines.append(f"  {flip.spike_run_id}: {flip.from_decision} -> {flip.to_decision} (cause: {flip.cause_check})")
    if count > show:
        lines.append(f"  ...and {count - show} more (--show N lists more, --format json lists every one)")
    return "\n".join(lines) + "\n"


def _signed(change: int) -> str:
    return f"{change:+d}" if change else "0"
