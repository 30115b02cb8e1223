"""Small line charts in the terminal report (plotext), embedded in rich as :class:`rich.text.Text`.

Why plotext: it draws braille-resolution line charts with axes and tick labels into a string with ANSI colours,
which ``Text.from_ansi`` turns into a rich renderable; rich then keeps or drops the colours like the rest of the
report (no colour in a file or a pipe). plotext is imported inside the functions, so a report without charts does
not pay for it.

Why each chart is built on its own and the grid is a rich table: every chart then has the size its cell gives it
(two side by side on a wide terminal, stacked on a narrow one), whatever plotext thinks the terminal is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from dpodoctor.reporters.common import MARK, clean
from dpodoctor.reporters.curves import (
    COLORS,
    DEFAULT_COLOR,
    EVAL_COLOR,
    REFERENCES,
    RUN_COLORS,
    SEVERITY_COLORS,
    TERMINAL_PANELS,
    Panel,
    Reference,
    findings_by_panel,
    nice_ticks,
    smoothed,
    span,
    y_floor,
)
from dpodoctor.results import Finding, RunReport
from dpodoctor.vocabulary import points

if TYPE_CHECKING:
    from dpodoctor.compare import Comparison

CHART_HEIGHT = 13  # rows: a title, 10 rows of canvas, the axis and its tick labels
MIN_SIDE_BY_SIDE = 84  # below this width two charts per row get too narrow to read: stack them
RAW_COLOR = "#8a8a8a"  # raw points in grey under the coloured smoothed curve
# The character each curve is drawn with, so overlaid curves differ without colour (NO_COLOR, a pipe with --plots,
# a colour-blind reader): the first in braille (a fine line), the others in plain characters (xxxx, ++++).
RUN_MARKERS: tuple[str, ...] = ("braille", "x", "+", "o", "*", "=")
METRIC_MARKERS = {"chosen": "braille", "rejected": "x"}


def glyph(marker: str) -> str:
    """How a curve drawn with ``marker`` looks, for a legend or a title: ``⠒⠒`` for braille, ``xx`` for x."""
    return "⠒⠒" if marker == "braille" else marker * 2


# Short titles: a chart is ~48 columns and its title must keep room for the findings' codes and steps. They name
# each curve by its glyph, not by a colour.
CHART_TITLES = {"rewards": f"chosen {glyph(METRIC_MARKERS['chosen'])} · rejected {glyph(METRIC_MARKERS['rejected'])}"}


@dataclass(frozen=True)
class Line:
    """One curve of a chart: points (x ascending), a colour, and whether to connect them (else markers only)."""

    series: pd.Series
    color: str
    connect: bool = True
    marker: str = "braille"


@dataclass(frozen=True)
class Chart:
    """What one terminal chart shows: its title, its curves, a reference line and the findings to mark."""

    title: str
    lines: list[Line] = field(default_factory=list)
    reference: Reference | None = None
    findings: Sequence[Finding] = ()
    x_range: tuple[float, float] | None = None
    y_floor: float = 0.0  # the smallest y range to zoom to (see curves.y_floor)
    y_range: tuple[float, float] | None = None  # a fixed y range (accuracy: 0 to 1)


def _rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def _curves(series: dict[str, pd.Series], color: str, *, eval_color: str, marker: str = "braille") -> list[Line]:
    """Raw train points in grey, the smoothed train curve over them in colour (drawn with ``marker``), eval points
    as dots."""
    lines = []
    train, evals = series.get("train"), series.get("eval")
    if train is not None and len(train):
        lines.append(Line(train, RAW_COLOR, connect=False))
        lines.append(Line(smoothed(train), color, marker=marker))
    if evals is not None and len(evals):
        lines.append(Line(evals, eval_color, connect=False, marker="•"))
    return lines


def _marks(findings: Sequence[Finding]) -> str:
    """`` · ✗ DPO101 45–400``: each finding's mark, code and step range, for a chart's title."""
    marks = []
    for f in findings:
        where = span(f)
        steps = "" if where is None else f" {where[0]:g}" + ("" if where[0] == where[1] else f"–{where[1]:g}")
        marks.append(f" · {MARK[f.severity]} {f.code}{steps}")
    return "".join(marks)


def run_charts(rr: RunReport, *, panels: Sequence[Panel] = TERMINAL_PANELS) -> list[Chart]:
    """The charts of one run: loss, margins, accuracy, and chosen beside rejected (two glyphs), each with the
    seed's reference line and the findings on its metric (the loss chart for metrics without a chart)."""
    run = rr.run
    grouped = findings_by_panel(rr.findings, panels)
    charts = []
    for panel in panels:
        lines: list[Line] = []
        for metric in panel.metrics:
            series = {split: points(run, metric, split) for split in ("train", "eval")}
            color = COLORS.get(metric, DEFAULT_COLOR)
            lines += _curves(
                series,
                color,
                eval_color=color if len(panel.metrics) > 1 else EVAL_COLOR,
                marker=METRIC_MARKERS.get(metric, "braille"),
            )
        title = CHART_TITLES.get(panel.key, panel.title)
        charts.append(
            Chart(
                title=title + _marks(grouped[panel.key]),
                lines=lines,
                reference=panel.reference,
                findings=grouped[panel.key],
                x_range=(0.0, float(max(1, run.steps))),
                y_floor=y_floor(panel.key, rr.beta_used),
                y_range=(0.0, 1.0) if panel.key == "accuracy" else None,
            )
        )
    return charts


def build_chart(chart: Chart, *, width: int, height: int = CHART_HEIGHT) -> Text:
    """One chart drawn by plotext into ``width`` × ``height`` cells, as rich Text (ANSI colours kept).

    plotext draws on one module-level figure; it is cleared before each chart and sized explicitly, and the
    terminal limit is lifted so plotext never shrinks a chart to what it guesses the terminal is (a pipe, a test).
    """
    import plotext

    plotext.terminal.limit(False, False)
    fig = plotext.figure
    fig.clear()
    fig.theme("simple")  # no background colours: the chart sits on the terminal's own background
    fig.plot_size(width, height)
    fig.title(clean(chart.title))
    fig.legend(False)
    if not any(len(line.series) for line in chart.lines):
        return Text(f"{clean(chart.title)}\n  not logged\n", style="dim")
    ys: list[float] = []
    for line in chart.lines:
        if not len(line.series):
            continue
        xs = [float(v) for v in line.series.index]
        values = [float(v) for v in line.series.to_numpy()]
        ys += values
        signal = fig.signal(xs, values, marker=plotext.marker(line.marker, plotext.pixel(_rgb(line.color))))
        if line.connect and len(xs) > 1:
            signal.lines()
        fig.draw(signal)
    if chart.reference is not None:
        fig.line(chart.reference.value, pixel=plotext.pixel(_rgb("#9e9e9e")), style="dotted")
        ys.append(chart.reference.value)
    drawn = [line.series for line in chart.lines if len(line.series)]
    lo, hi = chart.x_range or (min(float(d.index.min()) for d in drawn), max(float(d.index.max()) for d in drawn))
    for f in chart.findings:
        where = span(f)
        if where is None:
            continue
        pixel = plotext.pixel(_rgb(SEVERITY_COLORS[f.severity]))
        fig.line(where[0], orientation="v", pixel=pixel)
        if where[1] != where[0]:
            fig.line(where[1], orientation="v", pixel=pixel, style="dotted")
    if hi > lo:
        fig.ruler("x").lim(lo, hi)
        ticks = nice_ticks(lo, hi, count=max(3, width // 8))
        fig.ruler("x").ticks(ticks, [f"{t:g}" for t in ticks])
    finite = [y for y in ys if math.isfinite(y)]
    if chart.y_range is not None:
        fig.ruler("y").lim(min([*finite, chart.y_range[0]]), max([*finite, chart.y_range[1]]))
    elif finite and max(finite) - min(finite) < max(chart.y_floor, 1e-12):
        # a flat curve stays flat: batch noise of 1e-5 around ln 2 must not fill the chart (see curves.y_floor)
        mid, half = (max(finite) + min(finite)) / 2, (chart.y_floor or 1.0) / 2
        fig.ruler("y").lim(mid - half, mid + half)
    return Text.from_ansi(fig.build().string(), no_wrap=True, overflow="crop")


class ChartGrid:
    """Charts in a grid: two per row when the console is wide enough, else one per row, each as wide as its cell."""

    def __init__(self, charts: Sequence[Chart], *, height: int = CHART_HEIGHT) -> None:
        self.charts = list(charts)
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        cols = 2 if width >= MIN_SIDE_BY_SIDE and len(self.charts) > 1 else 1
        gap = 2
        cell = (width - gap * (cols - 1)) // cols
        grid = Table.grid(padding=(0, gap, 0, 0) if cols > 1 else 0)
        for _ in range(cols):
            grid.add_column(width=cell, no_wrap=True)
        built = [build_chart(c, width=cell, height=self.height) for c in self.charts]
        for i in range(0, len(built), cols):
            row = built[i : i + cols]
            grid.add_row(*row, *([""] * (cols - len(row))))
        yield grid


def run_chart_grid(rr: RunReport) -> ChartGrid:
    """The 2×2 (or stacked) charts of one run, for the text report."""
    return ChartGrid(run_charts(rr))


def run_color(i: int) -> str:
    """The colour of the i-th compared run, the same in its charts and its legend (Okabe–Ito)."""
    return RUN_COLORS[i % len(RUN_COLORS)]


def run_marker(i: int) -> str:
    """The glyph the i-th compared run is drawn with, the same in its charts and its legend."""
    return RUN_MARKERS[i % len(RUN_MARKERS)]


def comparison_charts(comparison: Comparison) -> ChartGrid:
    """One chart per compared metric with every run overlaid in its own colour and glyph (smoothed train curve, eval
    dots), on the comparison's x axis, rewards divided by β when it normalises."""
    charts = []
    for metric in comparison.metrics:
        lines: list[Line] = []
        for i, rr in enumerate(comparison.runs):
            train, evals = (comparison.curve(rr, metric, split) for split in ("train", "eval"))
            if len(train):
                lines.append(Line(smoothed(train), run_color(i), marker=run_marker(i)))
            if len(evals):
                lines.append(
                    Line(evals, run_color(i), connect=not len(train), marker="•" if len(train) else run_marker(i))
                )
        right = max((float(line.series.index.max()) for line in lines), default=1.0)
        charts.append(
            Chart(
                title=comparison.axis_label(metric),
                lines=lines,
                reference=REFERENCES.get(metric),
                x_range=(0.0, max(right, 1e-9)),
            )
        )
    return ChartGrid(charts)


def run_legend(labels: Sequence[str]) -> Text:
    """``⠒⠒ run-a   xx run-b``: which glyph and colour is which run (a legend inside a small chart would hide its
    curves); the glyph alone tells the runs apart without colour."""
    text = Text()
    for i, label in enumerate(labels):
        text.append(f"{glyph(run_marker(i))} ", style=f"bold {run_color(i)}")
        text.append(clean(label))
        text.append("   ")
    return text
