"""Pictures of the evidence: each spike run's per-project effects, and the decision mix and effect sizes over time.

Every number drawn comes from a stored report (``comparison``, ``evidence``, ``thresholds``) or from the store's
views: a picture never measures anything itself. matplotlib (Agg, through ``Figure`` and never ``pyplot``) is
imported inside the drawing functions only, so nothing on the gate command's start-up path loads it, and a
picture that cannot be drawn is logged and left out: it never fails a decision.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maml_evidence import drafts
from maml_evidence.gate import DECISIONS
from maml_evidence.gate.decision import fmt
from maml_evidence.store.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from maml_evidence.store import EvidenceStore

LOG = logging.getLogger("maml_evidence")

EFFECTS_FILE = "effects.png"  # beside report.json and interpretation.md in reports/<id>/
OVERVIEW_DIR = "overview"  # in the evidence home
DECISION_MIX_FILE = "decision_mix.png"
EFFECT_SIZES_FILE = "effect_sizes.png"

DPI = 100
EFFECTS_WIDTH = 1200
ROW_PX = 24  # one row per common project, plus the row of means
MAX_EFFECTS_HEIGHT = 2400
OVERVIEW_SIZE = (1000, 480)
NAMED_UP_TO = 40  # the effect-size picture names each spike run up to this many runs
NAMED_PROJECTS_UP_TO = 100  # the effects chart names each project's row up to this many projects
INTERVALS_UP_TO = 500  # the effect-size picture draws each run's interval up to this many runs (points beyond)
MAX_LABEL = 28
MAX_EMBED_BYTES = 96_000  # a picture embedded in Dagster metadata is stored with every materialization

# One colour per decision, the same in every picture (colour-blind-safe Okabe-Ito hues; grey for any other).
DECISION_COLOURS = {
    "enable_maml": "#009E73",
    "defer_maml_fast_enough": "#56B4E9",
    "defer_maml_low_effect": "#E69F00",
    "defer_maml_accuracy_penalty": "#D55E00",
    "defer_maml_cost_too_high": "#CC79A7",
    "collect_more_evidence": "#7F7F7F",
}
BASELINE, CANDIDATE, GAIN, LOSS, LIMIT = "#7F7F7F", "#0072B2", "#009E73", "#D55E00", "#333333"


# --- one spike run ------------------------------------------------------------------------------------------


def effects_size(report: Mapping[str, Any]) -> tuple[int, int]:
    """The effects chart's size in pixels (width, height): one row per common project and one for the means."""
    rows = len(_per_project(report)) + 1
    return EFFECTS_WIDTH, min(MAX_EFFECTS_HEIGHT, max(420, 170 + ROW_PX * rows))


def render_effects(report: Mapping[str, Any]) -> bytes:
    """The per-project effects chart of one report as PNG bytes.

    Three panels share one row per common project (report order) and a row of means: steps to target in both
    arms (a line per project), the step reduction with the 95% interval of its mean and the policy's minimum,
    and the final-accuracy change against the allowed mean regression (and the worst-project limit when the
    report shows it).
    """
    with _style():
        return _png(effects_figure(report))


def effects_figure(report: Mapping[str, Any]) -> Figure:
    """``render_effects``'s chart as a figure on an Agg canvas, not yet drawn (tests read its texts)."""
    from matplotlib.ticker import NullLocator

    figure = _figure(*effects_size(report))
    projects = _per_project(report)
    names = [_short(str(p["project"])) for p in projects] + ["mean"]
    rows = list(range(len(names)))
    longest = max(len(n) for n in names)
    left = min(0.25, (longest * 7 + 24) / EFFECTS_WIDTH)
    height = figure.get_figheight() * DPI
    figure.subplots_adjust(left=left, right=0.985, top=1 - 84 / height, bottom=58 / height, wspace=0.08)
    steps, reduction, accuracy = figure.subplots(1, 3)
    decision = str(report.get("decision"))
    evidence = _evidence(report)
    grade = f" · evidence {evidence['grade']}" if evidence else ""
    figure.suptitle(
        f"{report.get('spike_run_id') or 'spike run'}: {decision}{grade}",
        x=0.01,
        ha="left",
        fontsize=12,
        color=DECISION_COLOURS.get(decision, LIMIT),
        fontweight="bold",
    )
    _steps_panel(steps, report, projects, names)
    _reduction_panel(reduction, report, projects, evidence)
    _accuracy_panel(accuracy, report, projects, evidence)
    handles: dict[str, Any] = {}
    for axes in (steps, reduction, accuracy):
        axes.set_ylim(len(names) - 0.5, -0.5)
        axes.axhline(len(names) - 1.5, color="#BBBBBB", linewidth=0.8)
        axes.grid(axis="x", color="#E5E5E5", linewidth=0.6)
        axes.set_axisbelow(True)
        axes.xaxis.get_major_locator().set_params(nbins=5)
        axes.tick_params(labelsize=8 if len(names) <= 40 else 6)
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    # one legend for the three panels, under them (cheaper to draw than three, and never over the data)
    figure.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=max(1, len(handles)), fontsize=8, frameon=False
    )
    if len(projects) <= NAMED_PROJECTS_UP_TO:
        steps.set_yticks(rows, names)
    else:  # a name per row would be unreadable, and a tick per row costs more than the rest of the chart
        steps.set_yticks([rows[-1]], [names[-1]])
        steps.set_ylabel(f"{len(projects)} projects, in the report's order", fontsize=8)
    for axes in (reduction, accuracy):  # the rows are named once, on the left (ticks cost more than any data)
        axes.yaxis.set_major_locator(NullLocator())
    if not projects:
        steps.text(0.5, 0.75, "no common projects", transform=steps.transAxes, ha="center", color=LIMIT)
    return figure


def _steps_panel(axes: Axes, report: Mapping[str, Any], projects: list[Mapping[str, Any]], names: list[str]) -> None:
    reach = _evidence(report).get("reach") or {}
    labels = {side: str((report.get(side) or {}).get("label") or side) for side in ("baseline", "candidate")}
    base = [float(p["baseline_steps_to_target"]) for p in projects]
    cand = [float(p["candidate_steps_to_target"]) for p in projects]
    means = [(report.get(side) or {}).get("mean_steps_to_target") for side in ("baseline", "candidate")]
    rows = list(range(len(projects)))
    if None not in means:
        base.append(float(means[0]))  # type: ignore[arg-type]
        cand.append(float(means[1]))  # type: ignore[arg-type]
        rows.append(len(names) - 1)
    axes.hlines(rows, base, cand, colors=[_direction(b - c) for b, c in zip(base, cand, strict=True)], linewidth=1.8)
    for side, values, colour in (("baseline", base, BASELINE), ("candidate", cand, CANDIDATE)):
        unreached = set((reach.get(side) or {}).get("unreached_projects") or [])
        short = [i for i, p in enumerate(projects) if p["project"] in unreached]
        reached = [i for i in range(len(projects)) if i not in short]
        _points(axes, [values[i] for i in reached], reached, colour, labels[side])
        if short:
            label = f"{labels[side]}: target not reached (a lower bound)"
            _points(axes, [values[i] for i in short], short, colour, label, hollow=True)
        if len(rows) > len(projects):
            _points(axes, [values[-1]], [rows[-1]], colour, None, marker="D")
    subtitle = f"mean {fmt(base[-1])} → {fmt(cand[-1])}" if len(rows) > len(projects) else ""
    _title(axes, "Steps to target", subtitle)
    axes.margins(x=0.12)


def _reduction_panel(
    axes: Axes, report: Mapping[str, Any], projects: list[Mapping[str, Any]], evidence: Mapping[str, Any]
) -> None:
    values = [float(p["step_reduction"]) for p in projects]
    _bars(axes, values)
    step = evidence.get("step_reduction") or {}
    mean = (report.get("comparison") or {}).get("mean_step_reduction")
    text = ""
    if mean is not None:
        low, high = step.get("ci95_low"), step.get("ci95_high")
        text = f"mean {fmt(float(mean))}"
        if low is not None and high is not None:
            _interval(axes, float(low), float(high), len(projects), "95% interval of the mean")
            text += f", 95% interval {fmt(float(low))} to {fmt(float(high))}"
        _points(axes, [float(mean)], [len(projects)], LIMIT, "mean", marker="D")
    minimum = (report.get("thresholds") or {}).get("min_mean_step_reduction")
    if minimum is not None:
        _limit(axes, float(minimum), f"minimum mean {fmt(float(minimum))}", "--", LIMIT)
    _title(axes, "Steps saved (baseline − candidate)", text)


def _accuracy_panel(
    axes: Axes, report: Mapping[str, Any], projects: list[Mapping[str, Any]], evidence: Mapping[str, Any]
) -> None:
    _bars(axes, [float(p["final_accuracy_delta_pp"]) for p in projects])
    # a regression (baseline minus candidate) is drawn as a negative change: the panel reads candidate - baseline
    thresholds = report.get("thresholds") or {}
    allowed = thresholds.get("max_mean_accuracy_regression_pp")
    if allowed is not None:
        _limit(axes, -float(allowed), f"allowed mean loss {fmt(float(allowed))}", "--", LIMIT)
    worst = thresholds.get("max_project_accuracy_regression_pp")
    if worst is not None:
        _limit(axes, -float(worst), f"worst-project limit {fmt(float(worst))}", ":", LOSS)
    accuracy = evidence.get("accuracy") or {}
    mean, upper = accuracy.get("mean_regression_pp"), accuracy.get("upper95_regression_pp")
    if mean is None:  # no statistics: the mean regression the accuracy check judged (clipped at 0)
        mean = (report.get("comparison") or {}).get("mean_accuracy_regression_pp")
    text = ""
    if mean is not None:
        text = f"mean {fmt(-float(mean))}"
        if upper is not None:
            _interval(axes, -float(upper), -float(mean), len(projects), "one-sided 95% bound of the mean")
            text += f", one-sided 95% bound {fmt(-float(upper))}"
        _points(axes, [-float(mean)], [len(projects)], LIMIT, "mean", marker="D")
    _title(axes, "Final accuracy change, pp (candidate − baseline)", text)


def _direction(saved: float) -> str:
    return GAIN if saved > 0 else LOSS if saved < 0 else BASELINE


def _bars(axes: Axes, values: list[float]) -> None:
    """One horizontal bar per project row, green where MAML gained, red where it lost."""
    axes.barh(range(len(values)), values, color=[_direction(v) for v in values], height=0.6)
    axes.axvline(0, color=LIMIT, linewidth=0.8)
    axes.use_sticky_edges = False  # room beyond the bars' ends for the mean's interval
    axes.margins(x=0.15)


def _points(
    axes: Axes,
    xs: Sequence[float],
    ys: Sequence[float],
    colour: str,
    label: str | None,
    *,
    marker: str = "o",
    hollow: bool = False,
) -> None:
    """Markers without lines (a Line2D: several times cheaper to draw than a scatter collection)."""
    if not xs:
        return
    axes.plot(
        xs,
        ys,
        linestyle="none",
        marker=marker,
        markersize=6,
        color=colour,
        markerfacecolor="white" if hollow else colour,
        zorder=3,
        label=label if label is not None else "_nolegend_",
    )


def _interval(axes: Axes, low: float, high: float, row: int, label: str) -> None:
    axes.plot([low, high], [row, row], color=LIMIT, linewidth=1.4, marker="|", markersize=10, label=label)


def write_effects(report: Mapping[str, Any], folder: Path) -> Path | None:
    """Write ``folder/effects.png`` for ``report``; on any drawing error log it, remove a stale chart, return None.

    A chart ``drafts.draw_ahead`` started for this very report (same content, provenance aside) is waited for and
    moved into place; anything else is drawn here. A picture is an explanation, not evidence: failing to draw it must
    never fail the decision being recorded.
    """
    path = folder / EFFECTS_FILE
    try:
        if not drafts.take(report, path):
            atomic_write_bytes(path, render_effects(report))
        return path
    except Exception:  # noqa: BLE001 - any drawing failure is logged and the decision goes on
        LOG.warning("effects chart of %s not drawn (the decision is unaffected)", folder.name, exc_info=True)
        path.unlink(missing_ok=True)  # an older chart would show another decision's thresholds
        return None
    finally:
        drafts.clear_leftovers(path)


# --- across history -----------------------------------------------------------------------------------------

MIX_SQL = """
SELECT date_trunc('week', r.accepted_at) AS week, d.decision, count(*) AS runs
FROM gate_decisions d JOIN spike_runs r USING (spike_run_id)
GROUP BY ALL ORDER BY week, decision
"""
EFFECTS_SQL = """
SELECT r.spike_run_id, r.accepted_at, d.decision, a.relative_step_reduction,
       e.relative_ci95_low, e.relative_ci95_high, d.min_relative_step_reduction
FROM gate_decisions d
JOIN spike_runs r USING (spike_run_id)
JOIN adaptation_summary a USING (spike_run_id)
LEFT JOIN evidence_strength e USING (spike_run_id)
ORDER BY r.accepted_at, r.spike_run_id
"""


@dataclass(frozen=True)
class Overview:
    """What the overview pictures show, as read from the store's views (nothing is measured here)."""

    mix: list[tuple[Any, str, int]]  # (week, decision, runs)
    effects: list[dict[str, Any]]  # one per spike run, oldest accepted first

    @property
    def spike_runs(self) -> int:
        return len(self.effects)


def read_overview(store: EvidenceStore) -> Overview:
    connection = store.connect()
    try:
        mix = [(week, str(decision), int(runs)) for week, decision, runs in connection.execute(MIX_SQL).fetchall()]
        cursor = connection.execute(EFFECTS_SQL)
        names = [d[0] for d in cursor.description]
        effects = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()
    return Overview(mix, effects)


def render_decision_mix(overview: Overview) -> bytes:
    """Stacked weekly bars: how many spike runs accepted that week hold each current decision."""
    with _style():
        return _png(decision_mix_figure(overview))


def decision_mix_figure(overview: Overview) -> Figure:
    """``render_decision_mix``'s chart as a figure on an Agg canvas, not yet drawn."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(*OVERVIEW_SIZE)
    axes = figure.subplots()
    figure.subplots_adjust(left=0.07, right=0.76, top=0.88, bottom=0.14)
    weeks = sorted({week for week, _, _ in overview.mix})
    counts = {(week, decision): runs for week, decision, runs in overview.mix}
    present = [d for d in DECISIONS if any(d == decision for _, decision, _ in overview.mix)]
    present += sorted({d for _, d, _ in overview.mix} - set(present))
    bottom = [0] * len(weeks)
    for decision in present:
        heights = [counts.get((week, decision), 0) for week in weeks]
        axes.bar(
            weeks,
            heights,
            bottom=bottom,
            width=5.5,
            color=DECISION_COLOURS.get(decision, BASELINE),
            label=decision,
            align="edge",
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    total = sum(runs for _, _, runs in overview.mix)
    axes.set_title(f"Decision mix by week accepted ({total} spike runs, current decisions)", fontsize=11)
    axes.set_ylabel("spike runs", fontsize=9)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", color="#E5E5E5", linewidth=0.6)
    axes.set_axisbelow(True)
    if weeks:
        _date_axis(axes)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    else:
        axes.text(0.5, 0.5, "no decisions yet", transform=axes.transAxes, ha="center", color=LIMIT)
    return figure


def render_effect_sizes(overview: Overview) -> bytes:
    """Each spike run's relative step reduction (with its 95% interval where known), coloured by decision."""
    with _style():
        return _png(effect_sizes_figure(overview))


def effect_sizes_figure(overview: Overview) -> Figure:
    """``render_effect_sizes``'s chart as a figure on an Agg canvas, not yet drawn."""
    runs = [r for r in overview.effects if r["relative_step_reduction"] is not None]
    named = 0 < len(runs) <= NAMED_UP_TO
    figure = _figure(*OVERVIEW_SIZE)
    axes = figure.subplots()
    figure.subplots_adjust(left=0.07, right=0.76, top=0.9, bottom=0.4 if named else 0.14)
    with_interval = len(runs) <= INTERVALS_UP_TO
    by_decision: dict[str, list[int]] = {}
    for position, run in enumerate(runs):
        by_decision.setdefault(str(run["decision"]), []).append(position)
    for decision in sorted(by_decision, key=lambda d: (DECISIONS.index(d) if d in DECISIONS else len(DECISIONS), d)):
        colour = DECISION_COLOURS.get(decision, BASELINE)
        positions = by_decision[decision]
        ys = [100 * float(runs[i]["relative_step_reduction"]) for i in positions]
        _points(axes, positions, ys, colour, decision)
        known = [i for i in positions if None not in (runs[i]["relative_ci95_low"], runs[i]["relative_ci95_high"])]
        if with_interval and known:
            axes.vlines(
                known,
                [100 * float(runs[i]["relative_ci95_low"]) for i in known],
                [100 * float(runs[i]["relative_ci95_high"]) for i in known],
                color=colour,
                linewidth=2,
                alpha=0.6,
            )
    minimums = sorted(
        {float(r["min_relative_step_reduction"]) for r in runs if r["min_relative_step_reduction"] is not None}
    )
    for value in minimums[:3]:  # usually one policy minimum; payload overrides can add a few
        axes.axhline(100 * value, color=LIMIT, linestyle="--", linewidth=0.9)
        axes.annotate(
            f"minimum {fmt(100 * value)}%",
            (0, 100 * value),
            xycoords=("axes fraction", "data"),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7.5,
            color=LIMIT,
        )
    axes.axhline(0, color=LIMIT, linewidth=0.8)
    what = "with 95% intervals where known" if with_interval else f"intervals drawn up to {INTERVALS_UP_TO} runs"
    axes.set_title(f"Relative step reduction per spike run ({len(runs)} runs, {what})", fontsize=11)
    axes.set_ylabel("% of the baseline's mean steps", fontsize=9)
    axes.grid(axis="y", color="#E5E5E5", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.tick_params(labelsize=8)
    if named:
        axes.set_xticks(range(len(runs)), [_short(str(r["spike_run_id"])) for r in runs], rotation=90)
    else:
        axes.set_xlabel("spike runs in the order accepted", fontsize=9)
    if runs:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    else:
        axes.text(0.5, 0.5, "no spike runs yet", transform=axes.transAxes, ha="center", color=LIMIT)
    return figure


@dataclass(frozen=True)
class OverviewFiles:
    """The overview pictures written (name -> path) and the ones that could not be drawn (name -> error)."""

    overview: Overview
    folder: Path
    written: dict[str, Path]
    failed: dict[str, str]


def write_overview(store: EvidenceStore) -> OverviewFiles:
    """Read the store's views once, then write ``<home>/overview/decision_mix.png`` and ``effect_sizes.png``.

    Each picture is written atomically; one that cannot be drawn is logged and named in ``failed`` (an older
    file of it is removed, so what is there is never stale).
    """
    overview = read_overview(store)
    folder = store.home.root / OVERVIEW_DIR
    written: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for name, render in ((DECISION_MIX_FILE, render_decision_mix), (EFFECT_SIZES_FILE, render_effect_sizes)):
        path = folder / name
        try:
            atomic_write_bytes(path, render(overview))
            written[name] = path
        except Exception as exc:  # noqa: BLE001 - a picture never fails the run that refreshes it
            LOG.warning("overview picture %s not drawn", name, exc_info=True)
            failed[name] = f"{type(exc).__name__}: {exc}"
            path.unlink(missing_ok=True)
    return OverviewFiles(overview, folder, written, failed)


# --- shared ---------------------------------------------------------------------------------------------------


def markdown_image(path: Path, alt: str) -> str:
    """Markdown showing a PNG file inline as a ``data:`` URI (how the Dagster UI shows a picture in metadata).

    Every materialization keeps its metadata in Dagster's event log, so a file over ``MAX_EMBED_BYTES`` is named
    instead of embedded; a missing file (a picture that could not be drawn) is said to be missing.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return f"*{alt}: not drawn (see the run's log)*"
    if len(data) > MAX_EMBED_BYTES:
        return f"*{alt}: {len(data) // 1000} KB, too large to embed here; open `{path}`*"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


def _figure(width: int, height: int) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    """The figure drawn by Agg and saved as a 64-colour PNG (a third of the bytes, no visible difference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # set by _figure
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.convert("RGB").quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG")
    return buffer.getvalue()


def _style() -> contextlib.AbstractContextManager[None]:
    """Plain rcParams for every picture; no ``CN`` colour defaults (resolving them was a quarter of a chart's cost)."""
    import matplotlib as mpl
    from cycler import cycler

    return mpl.rc_context(
        {
            "axes.prop_cycle": cycler(color=[CANDIDATE]),
            "lines.color": LIMIT,
            "patch.facecolor": CANDIDATE,
            "boxplot.meanprops.color": LIMIT,
            "boxplot.medianprops.color": LIMIT,
        }
    )


def _title(axes: Axes, title: str, subtitle: str) -> None:
    axes.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=9.5, linespacing=1.5)


def _limit(axes: Axes, x: float, label: str, style: str, colour: str) -> None:
    """A threshold as a vertical line, labelled along it (no legend entry to match up)."""
    axes.axvline(x, color=colour, linestyle=style, linewidth=1.1)
    axes.annotate(
        label,
        (x, 1),
        xycoords=("data", "axes fraction"),
        xytext=(-3, -4),
        textcoords="offset points",
        rotation=90,
        ha="right",
        va="top",
        fontsize=7.5,
        color=colour,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
    )


def _date_axis(axes: Axes) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.tick_params(labelsize=8)


def _per_project(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((report.get("comparison") or {}).get("per_project") or [])


def _evidence(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The report's statistics (stores before issue 11 kept provenance under ``evidence``: not statistics)."""
    evidence = report.get("evidence")
    return evidence if isinstance(evidence, Mapping) and "grade" in evidence else {}


def _short(name: str) -> str:
    """A project name that fits the chart's left margin; the ends stay (names often differ only at the end)."""
    if len(name) <= MAX_LABEL:
        return name
    keep = MAX_LABEL - 1
    return name[: keep // 2] + "…" + name[-(keep - keep // 2) :]
