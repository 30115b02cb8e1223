"""The terminal view of ``dpodoctor compare``: the table of final values and findings, then the overlaid charts.

Why a reporter of its own: the comparison's numbers come from :class:`dpodoctor.compare.Comparison` (the API), and
this module only lays them out, the same way :mod:`dpodoctor.reporters.text` lays out a check. Run names come from
logs, so they go into :class:`rich.text.Text` cleaned, never into markup.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from dpodoctor.compare import Comparison, TableRow
from dpodoctor.reporters.common import clean, fmt_number


def cell(value: float, row: TableRow, index: int) -> str:
    """A metric cell: the end level as the check report prints it, and that report's verdict mark for the row
    (``0.4339 ✓``, ``-0.985 ⚠``); β and other numbers alone."""
    text = fmt_number(value) if value == value else "–"  # NaN: not logged
    return f"{text} {row.marks[index]}" if row.marks and value == value else text


def comparison_table(comparison: Comparison) -> Table:
    """Rows: the seed's five metrics (where each run ended), β and the finding codes; one column per run."""
    table = Table(box=None, pad_edge=False, padding=(0, 2), show_edge=False)
    table.add_column("", no_wrap=True)
    for label in comparison.labels:
        table.add_column(Text(clean(label), style="bold"), justify="right", overflow="fold")
    for row in comparison.table():
        cells = [
            Text(v, style="dim" if v == "none" else "yellow") if isinstance(v, str) else Text(cell(v, row, i))
            for i, v in enumerate(row.values)
        ]
        table.add_row(Text(row.label), *cells)
    return table


class ComparisonView:
    """The table, then with ``plots`` one chart per compared metric with a colour legend of the runs."""

    def __init__(self, comparison: Comparison, *, plots: bool = False) -> None:
        self.comparison = comparison
        self.plots = plots

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        c = self.comparison
        how = f"aligned by {c.x}" + (", rewards ÷ β (log-ratios)" if c.normalize_beta else "")
        yield Text(
            f"{len(c.runs)} run(s) compared, {how}; values: each curve's end level and verdict, as check shows them",
            style="dim",
        )
        yield comparison_table(c)
        if self.plots:
            from dpodoctor.reporters.terminal_plots import comparison_charts, run_legend  # plotext loads here

            yield Text("")
            yield run_legend(c.labels)
            yield comparison_charts(c)
