"""The rich terminal report: per run a header, the seed-style metric table, and the findings; then a summary.

Text from logs (run names, paths, messages built from keys) goes into :class:`rich.text.Text` objects, never into
markup strings, so a run called ``[red]x`` prints as written, and it passes through :func:`common.clean` first, so
a log cannot move the cursor, change colours or plant a hyperlink in the terminal. The rows come from
:func:`common.metric_rows`, shared with the Markdown report, so both show the same verdicts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from dpodoctor.report import Report
from dpodoctor.reporters.common import (
    MARK,
    SPAN_HEADER,
    MetricRow,
    against_legend,
    clean,
    details,
    metric_rows,
    span_legend,
    summary_line,
    summary_style,
    where_text,
)
from dpodoctor.results import RunReport, Severity

BARS = "▁▂▃▄▅▆▇█"
STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def row_style(row: MetricRow) -> str:
    """The colour of a row's mark: green when it passed, else its verdict's (⚠ against its direction is yellow)."""
    if row.verdict == "pass":
        return "green"
    if row.verdict == "against":
        return STYLE[Severity.WARNING]
    return STYLE[row.severity] if row.severity is not None else "dim"


def sparkline(values: Sequence[float] | np.ndarray, *, width: int = 24) -> str:
    """A unicode sparkline of the finite values, binned by median to at most ``width`` characters."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return ""
    bins = [b for b in np.array_split(arr, min(width, arr.size)) if b.size]
    levels = np.array([np.median(b) for b in bins])
    lo, hi = float(levels.min()), float(levels.max())
    # Halves: the span of values near the float range (1e308 and -1e308) would overflow to inf.
    span = hi / 2 - lo / 2
    if span <= 0.5e-12 * max(1.0, abs(hi)):
        return BARS[3] * len(levels)
    idx = np.clip(((levels / 2 - lo / 2) / span * (len(BARS) - 1)).round().astype(int), 0, len(BARS) - 1)
    return "".join(BARS[i] for i in idx)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _top_entries(paths: Sequence[Path], root: Path, limit: int = 5) -> str:
    """The other sources by their top-level entry in the run folder (``swanlog/``, ``train.log``): a SwanLab folder
    holds dozens of files, and naming each would bury the header."""
    entries: dict[str, None] = {}
    for path in paths:
        rel = Path(_relative(path, root))
        entries[f"{rel.parts[0]}/" if len(rel.parts) > 1 else rel.name] = None
    names = list(entries)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _log_text(text: object, style: str = "") -> Text:
    """Text that came from a log, cleaned of terminal escapes, on one line.

    Why one line: every such field (a name, a path, a note, a message) is one line of the report, and a line break
    inside one (a run folder or CSV cell named ``x\n::error::...``) would start a line of the log's choosing, which a
    CI runner reading the report from stdout takes for a workflow command; a ``\r`` would overwrite the line shown.
    """
    return Text(" ".join(clean(text).splitlines()), style=style)


@dataclass(frozen=True)
class TableLayout:
    """Column widths of the metric table for one terminal width (0: the column is left out)."""

    label: int
    healthy: int  # the "healthy behaviour" column; 0 when it is shown under the metric instead
    healthy_full: int  # what it needs on one line
    span: int
    spark: int

    @property
    def healthy_below(self) -> bool:
        return self.healthy == 0


GAP = 2  # the table's padding between two columns
MIN_HEALTHY = 14  # narrower than this, the description reads better under the metric name
MIN_SPARK = 6


def table_layout(width: int, *, label: int, span: int, healthy: int, spark: int) -> TableLayout:
    """Who gives way on a narrow terminal, in order: the description (wrapped in its column, then moved under the
    metric name), then the sparkline (shortened), then the numbers and the metric name (cut with an ellipsis).

    Why this order: the ✓/⚠/✗ verdict and "start → end" are what a reader acts on; the healthy behaviour is the
    same reference text on every report. No row is ever wider than ``width``.
    """
    fixed = 1 + label + span  # mark, metric, numbers
    if fixed + healthy + spark + 4 * GAP <= width:
        return TableLayout(label, healthy, healthy, span, spark)
    room = width - fixed - 4 * GAP - spark  # for the description beside the numbers, at full trend width
    if room >= MIN_HEALTHY:
        return TableLayout(label, room, healthy, span, spark)
    spark_room = width - fixed - 3 * GAP
    if spark_room >= MIN_SPARK:
        return TableLayout(label, 0, healthy, span, min(spark, spark_room))
    # Very narrow: no trend; the numbers and the metric share what is left, the numbers first.
    rest = max(width - 1 - 2 * GAP, 2)
    span_width = min(span, max(rest - 8, rest // 2))
    return TableLayout(max(rest - span_width, 1), 0, healthy, span_width, 0)


class RunView:
    """One run: header, metric table, what was checked, the findings, and with ``plots`` the curves as charts."""

    def __init__(self, report: RunReport, *, spark_width: int = 20, plots: bool = False) -> None:
        self.report = report
        self.spark_width = spark_width
        self.plots = plots

    def header(self) -> Text:
        run = self.report.run
        text = Text()
        text.append_text(_log_text(run.name, "bold"))
        text.append_text(_log_text(f"  ({run.source}: {run.path})", "dim"))
        text.append(f"\n  {run.steps} steps")
        if run.steps_derived:
            text.append(" (derived: the log carries no step numbers)", style="dim")
        text.append(f" · ended: {run.ended.value}")
        text.append("\n  ")
        text.append_text(_log_text(f"β = {self.report.beta_used:g}, {self.report.beta_note}"))
        for note in run.notes:
            text.append("\n  note: ", style="dim")
            text.append_text(_log_text(note, "dim"))
        if run.other_sources:
            text.append("\n")
            text.append_text(_log_text(f"  also found, not read: {_top_entries(run.other_sources, run.path)}", "dim"))
        return text

    def table(self, width: int = 100) -> Table:
        """The metric table laid out for ``width`` columns (see :func:`table_layout`): the verdict mark and the
        numbers keep their room, the "healthy behaviour" text gives way (wraps, then moves under the metric)."""
        rows = metric_rows(self.report)
        layout = table_layout(
            width,
            label=max((cell_len(r.label) for r in rows), default=6),
            span=max((cell_len(r.span) for r in rows), default=11),
            healthy=max((cell_len(r.healthy) for r in rows), default=0),
            spark=self.spark_width,
        )
        table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False)
        table.add_column("", no_wrap=True, width=1, min_width=1)
        table.add_column("metric", no_wrap=not layout.healthy_below, width=layout.label, overflow="fold")
        if layout.healthy:
            wrap = layout.healthy < layout.healthy_full
            table.add_column("healthy behaviour", style="dim", no_wrap=not wrap, overflow="fold", width=layout.healthy)
        table.add_column(SPAN_HEADER, no_wrap=True, width=layout.span, overflow="ellipsis")
        if layout.spark:
            table.add_column("trend", no_wrap=True, width=layout.spark)
        for row in rows:
            label = Text(row.label)
            if layout.healthy_below:
                label.append("\n" + row.healthy, style="dim")
            cells: list[RenderableType] = [label]
            if layout.healthy:
                cells.append(row.healthy)
            if not row.logged:
                cells.append(Text(row.span, style="dim"))
                if layout.spark:
                    cells.append("")
                table.add_row(Text(row.mark, style="dim"), *cells)
                continue
            style = row_style(row)
            cells.append(row.span)
            if layout.spark:
                cells.append(sparkline(row.values, width=layout.spark))
            table.add_row(Text(row.mark, style=style), *cells)
        return table

    def legend(self) -> Padding | None:
        """What the table's numbers are (first value, end level) and why a row without a finding is ⚠."""
        rows = metric_rows(self.report)
        lines = [line for line in (span_legend(rows), against_legend(rows)) if line]
        if not lines:
            return None
        return Padding(Text("\n".join(lines), style="dim"), (0, 0, 0, 2), expand=False)

    def findings(self) -> list[RenderableType]:
        out: list[RenderableType] = []
        checked = Text()
        rows = {row.metric: row for row in metric_rows(self.report) if row.split == "train"}
        for metric, sentence in self.report.health.items():
            row = rows.get(metric)
            if row is None or row.verdict in ("error", "warning"):
                continue  # the finding about this curve says what it did
            style = row_style(row)
            checked.append(f"\n{row.mark} ", style=style)
            checked.append(sentence)
            if row.against:
                checked.append(f", against its healthy direction ({row.healthy}); no rule flagged it")
        if checked:
            out.append(Text("  checked:", style="dim"))
            out.append(Padding(checked[1:], (0, 0, 0, 4), expand=False))
        for f in self.report.findings:
            title = Text("  ")
            title.append(f"{MARK[f.severity]} {f.code} {f.name}", STYLE[f.severity])
            title.append(f" [{f.severity.value}] ", style=STYLE[f.severity])
            title.append_text(_log_text(where_text(f), "bold"))
            body = _log_text(f.message)
            for line in details(f):
                label, _, rest = line.partition(": ")
                body.append(f"\n{label}: ", style="dim")
                body.append_text(_log_text(rest))
            out.append(Group(title, Padding(body, (0, 0, 0, 4), expand=False)))
        if not self.report.findings:
            out.append(Text("  no findings: every rule that could run passed", style="green"))
        if self.report.skipped:
            skipped = ", ".join(f"{code} (needs {', '.join(m)})" for code, m in self.report.skipped.items())
            out.append(Padding(Text(f"not checked: {skipped}", style="dim"), (0, 0, 0, 2), expand=False))
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.header()
        yield self.table(options.max_width)
        legend = self.legend()
        if legend is not None:
            yield legend
        yield from self.findings()
        if self.plots:
            from dpodoctor.reporters.terminal_plots import run_chart_grid  # plotext loads only when charts are drawn

            yield Text("")
            yield run_chart_grid(self.report)
        yield Text("")


class ReportView:
    """The whole report: every run, problems with inputs, and one summary line."""

    def __init__(self, report: Report, *, spark_width: int = 20, plots: bool = False) -> None:
        self.report = report
        self.spark_width = spark_width
        self.plots = plots

    def summary(self) -> Text:
        return Text(summary_line(self.report), style=summary_style(self.report))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for run in self.report.runs:
            yield RunView(run, spark_width=self.spark_width, plots=self.plots)
        # Folded at the width, never cut: a console crops a no_wrap line at its width, and a long path or reason
        # would lose its end without a sign (most of all when the report is piped to a file or a CI log).
        for problem in self.report.problems:
            yield Text(f"error: {_log_text(problem)}", style="bold red", overflow="fold")
        for warning in self.report.warnings:
            yield Text(f"warning: {_log_text(warning)}", style="yellow", overflow="fold")
        for ignored in self.report.ignored:
            yield Text(f"ignored: {_log_text(ignored)}", style="dim", overflow="fold")
        yield self.summary()


def render_text(report: Report, *, width: int = 100, color: bool = False, plots: bool = False) -> str:
    """The report as plain (or ANSI-coloured) text, for files and tests; ``plots`` adds each run's charts."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system="standard" if color else None, highlight=False)
    console.print(Group(ReportView(report, plots=plots)))
    # rich pads wrapped, indented lines to the full width; a file or a pipe should not carry that padding
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
