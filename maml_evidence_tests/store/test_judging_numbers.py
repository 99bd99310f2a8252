"""The SQL number formatting of bulk re-evaluation (``judging.MACROS``) prints exactly as the gate's ``fmt``."""

from __future__ import annotations

import random

import duckdb

from maml_evidence.gate.decision import fmt
from maml_evidence.store import judging


def test_sql_numbers_read_as_the_gate_prints_them() -> None:
    rng = random.Random(10)
    values = [
        0.0,
        -0.0,
        -0.00004,
        0.00005,
        -0.00005,
        0.00015,
        1.0,
        -1.0,
        10.0,
        100.0,
        -100.0,
        10.5,
        0.05,
        1.25,
        2.675,
        1e15,
        -1e-300,
        *(rng.uniform(-1000, 1000) for _ in range(2000)),
        *(float(round(rng.uniform(-1000, 1000))) for _ in range(2000)),
        *(round(rng.uniform(-100, 100), digits) for digits in (1, 2, 3, 4) for _ in range(500)),
        # exact ties at the fifth decimal (a mean over 32 projects), printf's half-to-even, not the cast's rounding
        *(k / 32 for k in range(-400, 400)),
        *(k / 20000 for k in range(-400, 400)),
        1.00005,
        2.00015,
        # either side of the cast's limit, and what only printf prints
        999_999_999.99994,
        999_999_999.99996,
        1e9,
        -1e9 - 0.00004,
        *(rng.uniform(-1e9, 1e9) for _ in range(2000)),
        float("inf"),
        float("-inf"),
        float("nan"),
    ]
    connection = duckdb.connect()
    for macro in judging.MACROS:
        connection.execute(macro)
    shown = connection.execute("SELECT gate_trimmed(gate_printed(x)) FROM unnest(?) AS t(x)", [values]).fetchall()
    assert [text for (text,) in shown] == [fmt(value) for value in values]
    # the values include ties where the cast alone would print otherwise than printf (the shortcut must step aside)
    (differ,) = connection.execute(
        "SELECT count(*) FILTER (CASE WHEN abs(x) < 1e9 THEN x::DECIMAL(18, 4)::VARCHAR != printf('%.4f', x) END) "
        "FROM unnest(?) AS t(x)",
        [values],
    ).fetchone()  # type: ignore[misc]
    assert differ > 0
