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
    ]
    connection = duckdb.connect()
    for macro in judging.MACROS:
        connection.execute(macro)
    shown = connection.execute("SELECT gate_trimmed(gate_printed(x)) FROM unnest(?) AS t(x)", [values]).fetchall()
    assert [text for (text,) in shown] == [fmt(value) for value in values]
