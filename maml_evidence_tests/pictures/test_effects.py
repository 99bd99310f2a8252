"""The per-project effects chart of one report: a real picture, drawn from the report's own numbers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from maml_evidence.pictures import (
    BASELINE,
    CANDIDATE,
    EFFECTS_FILE,
    GAIN,
    LOSS,
    effects_figure,
    effects_size,
    render_effects,
    write_effects,
)
from maml_evidence.strength import interpretation_with_evidence
from maml_evidence_tests.gate.conftest import load_fixture
from maml_evidence_tests.pictures.conftest import assert_picture, has_colour, stored_report
from maml_evidence_tests.samples import SAMPLE_DECISIONS, SAMPLE_INBOX

ENABLE = "2026-10-06-support-bots-enable"
PENALTY = "2026-10-27-medical-coding-accuracy-penalty"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def sample_report(name: str) -> dict:
    return stored_report(json.loads((SAMPLE_INBOX / f"{name}.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    return {name: sample_report(name) for name in SAMPLE_DECISIONS}


def texts(report: dict) -> list[str]:
    """Every piece of text the chart shows (tick labels included: they exist once the figure is drawn)."""
    from matplotlib.text import Text

    figure = effects_figure(report)
    figure.canvas.draw()
    return [t.get_text() for t in figure.findobj(Text) if t.get_text() and t.get_visible()]


def test_every_sample_report_draws_a_real_picture(reports: dict[str, dict]) -> None:
    for name, report in reports.items():
        image = assert_picture(render_effects(report), effects_size(report))
        assert has_colour(image, BASELINE) and has_colour(image, CANDIDATE), name


def test_gains_and_losses_show_in_their_colours(reports: dict[str, dict]) -> None:
    # support-bots: every project saves steps (green) and loses a little accuracy (red)
    image = assert_picture(render_effects(reports[ENABLE]), (1200, 420))
    assert has_colour(image, GAIN, at_least=2000) and has_colour(image, LOSS, at_least=2000)


def test_the_chart_grows_a_row_per_project() -> None:
    payload = load_fixture("minimal.json")
    rows = copy.deepcopy(payload["baseline"]["per_project_adaptation"])
    for arm in ("baseline", "candidate"):
        entries = payload[arm]["per_project_adaptation"]
        for index in range(30):
            entry = dict(entries[index % len(rows)], project=f"extra-project-{index:02d}")
            entries.append(entry)
    report = stored_report(payload)
    width, height = effects_size(report)
    assert (width, height) == (1200, 170 + 24 * (len(report["comparison"]["per_project"]) + 1))
    assert_picture(render_effects(report), (width, height))


def test_labels_show_the_reports_own_numbers(reports: dict[str, dict]) -> None:
    report = copy.deepcopy(reports[PENALTY])
    step = report["evidence"]["step_reduction"]
    # numbers no computation from the rest of the report would give: the chart must read them, not work them out
    step["ci95_low"], step["ci95_high"] = 1.2345, 6.789
    report["evidence"]["accuracy"]["upper95_regression_pp"] = 2.3456
    report["thresholds"]["max_project_accuracy_regression_pp"] = 1.75
    shown = "\n".join(texts(report))
    assert f"mean {report['comparison']['mean_step_reduction']:g}, 95% interval 1.2345 to 6.789" in shown
    assert "one-sided 95% bound -2.3456" in shown
    assert "minimum mean 1.5" in shown and "allowed mean loss 1" in shown
    assert "worst-project limit 1.75" in shown  # shown only where the report shows the guard
    assert "worst-project limit" not in "\n".join(texts(reports[PENALTY]))
    assert f"mean {report['baseline']['mean_steps_to_target']:g} → 4.6667" in shown
    for project in report["comparison"]["per_project"]:
        assert project["project"] in shown


def test_labels_round_like_the_report(reports: dict[str, dict]) -> None:
    for name, report in reports.items():
        for text in texts(report):
            for number in NUMBER.findall(text.replace("−", "-")):
                decimals = number.partition(".")[2]
                assert len(decimals) <= 4, f"{name}: {text!r} shows {number}"


def test_undefined_figures_are_left_out() -> None:
    # two projects with the same reduction: no spread, so no interval; the chart still draws the means
    report = stored_report(load_fixture("collect_more_evidence.json"))
    assert report["evidence"]["step_reduction"]["ci95_low"] is None
    shown = "\n".join(texts(report))
    assert "95% interval" not in shown
    assert_picture(render_effects(report), effects_size(report))


def test_a_run_without_common_projects_still_draws() -> None:
    report = stored_report(load_fixture("empty_projects.json"))
    assert report["comparison"]["per_project"] == []
    assert "no common projects" in texts(report)
    assert_picture(render_effects(report), (1200, 420))


def test_unreached_targets_are_hollow_and_named_in_the_legend() -> None:
    payload = json.loads((SAMPLE_INBOX / f"{ENABLE}.json").read_text(encoding="utf-8"))
    payload["candidate"]["per_project_adaptation"][1]["reached_target"] = False
    report = stored_report(payload)
    assert report["evidence"]["reach"]["candidate"]["unreached_projects"] == ["returns"]
    assert any("target not reached" in t for t in texts(report))


def test_write_effects_writes_the_chart_that_the_interpretation_links(tmp_path: Path, reports: dict) -> None:
    path = write_effects(reports[ENABLE], tmp_path)
    assert path == tmp_path / EFFECTS_FILE
    assert_picture(path, (1200, 420))
    assert f"![Per-project effects]({EFFECTS_FILE})" in interpretation_with_evidence(reports[ENABLE], chart=True)
    # without a chart beside it (the gate command's report, or a chart that could not be drawn): no link
    assert EFFECTS_FILE not in interpretation_with_evidence(reports[ENABLE])


def test_a_drawing_error_is_logged_and_leaves_no_stale_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, reports: dict[str, dict]
) -> None:
    import maml_evidence.pictures as pictures

    (tmp_path / EFFECTS_FILE).write_bytes(b"an older chart")

    def broken(report: dict) -> bytes:
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(pictures, "render_effects", broken)
    with caplog.at_level("WARNING", logger="maml_evidence"):
        assert write_effects(reports[ENABLE], tmp_path) is None
    assert not (tmp_path / EFFECTS_FILE).exists()
    assert "effects chart of" in caplog.text and "no fonts today" in caplog.text
    assert not list(tmp_path.glob(".*partial"))
