"""The pictures of history, drawn from rows as the store's views return them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from maml_evidence.pictures import (
    DECISION_COLOURS,
    INTERVALS_UP_TO,
    OVERVIEW_SIZE,
    Overview,
    effect_sizes_figure,
    render_decision_mix,
    render_effect_sizes,
)
from maml_evidence_tests.pictures.conftest import assert_picture, has_colour

MONDAY = datetime(2026, 10, 5, tzinfo=UTC)
DECISIONS = list(DECISION_COLOURS)


def history(runs: int, weeks: int = 6) -> Overview:
    effects, mix = [], {}
    for index in range(runs):
        week = MONDAY + timedelta(weeks=index % weeks)
        decision = DECISIONS[index % len(DECISIONS)]
        mix[(week, decision)] = mix.get((week, decision), 0) + 1
        relative = 0.05 * (index % 9)
        effects.append(
            {
                "spike_run_id": f"run-{index:05d}",
                "accepted_at": week + timedelta(hours=index),
                "decision": decision,
                "relative_step_reduction": relative,
                "relative_ci95_low": None if index % 4 == 0 else relative - 0.1,
                "relative_ci95_high": None if index % 4 == 0 else relative + 0.1,
                "min_relative_step_reduction": 0.25,
            }
        )
    return Overview(sorted((w, d, n) for (w, d), n in mix.items()), effects)


def test_decision_mix_has_every_decision_in_its_colour() -> None:
    image = assert_picture(render_decision_mix(history(24)), OVERVIEW_SIZE)
    for decision, colour in DECISION_COLOURS.items():
        assert has_colour(image, colour, at_least=200), decision


def test_effect_sizes_show_each_run_in_its_decisions_colour() -> None:
    image = assert_picture(render_effect_sizes(history(12)), OVERVIEW_SIZE)
    for decision, colour in DECISION_COLOURS.items():
        assert has_colour(image, colour), decision


def test_many_runs_are_drawn_as_points_and_say_so() -> None:
    from matplotlib.text import Text

    overview = history(INTERVALS_UP_TO + 1)
    assert_picture(render_effect_sizes(overview), OVERVIEW_SIZE)
    figure = effect_sizes_figure(overview)
    titles = [t.get_text() for t in figure.findobj(Text)]
    assert any(f"intervals drawn up to {INTERVALS_UP_TO} runs" in t for t in titles)


def test_an_empty_store_draws_a_picture_that_says_so() -> None:
    empty = Overview([], [])
    for render in (render_decision_mix, render_effect_sizes):  # axes, a title and a sentence: little ink
        assert_picture(render(empty), OVERVIEW_SIZE, min_colours=4, min_ink=0.005)
