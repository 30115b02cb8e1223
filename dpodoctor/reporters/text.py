"""The rich terminal report: per run a header, the seed-style metric table, and the findings; then a summary.

Text from logs (run names, messages built from keys) goes into :class:`rich.text.Text` objects, never into markup
strings, so a run called ``[red]x`` prints as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from dpodoctor import stats
from dpodoctor.results import Finding, Report, RunReport, Severity
from dpodoctor.rules import RULES

BARS = "▁▂▃▄▅▆▇█"

# The seed's quick-reference table: what a healthy curve does, per core metric.
HEALTHY = {
    "loss": ("loss", "≈ ln 2 (0.693), falls, levels > 0"),
    "margins": ("rewards/margins", "rises from ~0, then levels off"),
    "accuracy": ("rewards/accuracies", "~0.5, rises toward 0.8–0.95"),
    "chosen": ("rewards/chosen", "increases"),
    "rejected": ("rewards/rejected", "decreases"),
}

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MARK = {Severity.ERROR: "✗", Severity.WARNING: "⚠", Severity.INFO: "ℹ"}


def _mark(severity: Severity) -> str:
    return MARK[severity]


def sparkline(values: Sequence[float] | np.ndarray, *, width: int = 24) -> str:
    """A unicode sparkline of the finite values, binned by median to at most ``width`` characters."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return ""
    bins = [b for b in np.array_split(arr, min(width, arr.size)) if b.size]
    levels = np.array([np.median(b) for b in bins])
    lo, hi = float(levels.min()), float(levels.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return BARS[3] * len(levels)
    idx = np.clip(((levels - lo) / (hi - lo) * (len(BARS) - 1)).round().astype(int), 0, len(BARS) - 1)
    return "".join(BARS[i] for i in idx)


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


def _end(series: pd.Series) -> float:
    s = stats.finite(series)
    k = max(3, len(s) // 10)
    return float(np.median(s.to_numpy()[-k:])) if len(s) else float("nan")


def _row_severity(metric: str, findings: Sequence[Finding]) -> Severity | None:
    """The worst finding touching this metric, directly or as corroborating evidence."""
    worst: Severity | None = None
    for f in findings:
        metrics = {f.metric}
        for text in f.corroborating:
            rule = RULES.get(text.split(" ", 1)[0])
            if rule and rule.metrics:
                metrics.add(rule.metrics[0])
        if metric in metrics and (worst is None or f.severity.rank > worst.rank):
            worst = f.severity
    return worst


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _steps(f: Finding) -> str:
    if f.first_step is None:
        return ""
    return f"step {f.first_step}" if f.first_step == f.last_step else f"steps {f.first_step}–{f.last_step}"


class RunView:
    """One run: header, metric table and findings."""

    def __init__(self, report: RunReport, *, spark_width: int = 20) -> None:
        self.report = report
        self.spark_width = spark_width

    def header(self) -> Text:
        run = self.report.run
        text = Text()
        text.append(run.name, style="bold")
        text.append(f"  ({run.source}: {run.path})", style="dim")
        text.append(f"\n  {run.steps} steps")
        if run.steps_derived:
            text.append(" (derived: the log carries no step numbers)", style="dim")
        text.append(f" · ended: {run.ended.value}")
        text.append(f"\n  β = {self.report.beta_used:g}, {self.report.beta_note}")
        for note in run.notes:
            text.append("\n  note: ", style="dim")
            text.append(note, style="dim")
        if run.other_sources:
            names = ", ".join(_relative(p, run.path) for p in run.other_sources[:4])
            more = f" (+{len(run.other_sources) - 4} more)" if len(run.other_sources) > 4 else ""
            text.append(f"\n  also found, not read: {names}{more}", style="dim")
        return text

    def table(self) -> Table:
        run = self.report.run
        table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False)
        table.add_column("", no_wrap=True, width=1)
        table.add_column("metric", no_wrap=True, min_width=18)
        table.add_column("healthy behaviour", style="dim", no_wrap=True, overflow="ellipsis", max_width=34)
        table.add_column("start → end", no_wrap=True)
        table.add_column("trend", no_wrap=True)
        for metric, (label, healthy) in HEALTHY.items():
            split = "train" if run.has(metric, "train") else "eval"
            series = stats.finite(run.series(metric, split))
            if len(series) == 0:
                table.add_row(Text("–", style="dim"), label, healthy, Text("not logged", style="dim"), "")
                continue
            severity = _row_severity(metric, self.report.findings)
            mark = Text("✓", style="green") if severity is None else Text(_mark(severity), style=STYLE[severity])
            span = f"{_fmt(stats.head(series))} → {_fmt(_end(series))}"
            label_text = label if split == "train" else f"{label} (eval)"
            table.add_row(mark, label_text, healthy, span, sparkline(series.to_numpy(), width=self.spark_width))
        return table

    def findings(self) -> list[RenderableType]:
        out: list[RenderableType] = []
        for f in self.report.findings:
            title = Text("  ")
            title.append(f"{_mark(f.severity)} {f.code} {f.name}", STYLE[f.severity])
            title.append(f" [{f.severity.value}] ", style=STYLE[f.severity])
            where = _steps(f)
            title.append(f"{f.split} {f.metric}" + (f", {where}" if where else ""), style="bold")
            body = Text(f.message)
            for extra in f.corroborating:
                body.append("\nalso: ", style="dim")
                body.append(extra)
            if f.cause:
                body.append("\nlikely cause: ", style="dim")
                body.append(f.cause)
            if f.fix:
                body.append("\nwhat to try: ", style="dim")
                body.append(f.fix)
            out.append(Group(title, Padding(body, (0, 0, 0, 4), expand=False)))
        checked = Text()
        for metric, sentence in self.report.health.items():
            severity = _row_severity(metric, self.report.findings)
            if severity is not None and severity is not Severity.INFO:
                continue
            checked.append("\n✓ ", style="green")
            checked.append(sentence)
        if checked:
            out.append(Text("  checked:", style="dim"))
            out.append(Padding(checked[1:], (0, 0, 0, 4), expand=False))
        if not self.report.findings:
            out.append(Text("  no findings: every rule that could run passed", style="green"))
        if self.report.skipped:
            skipped = ", ".join(f"{code} (needs {', '.join(m)})" for code, m in self.report.skipped.items())
            out.append(
                Padding(Text(f"not checked, metric missing: {skipped}", style="dim"), (0, 0, 0, 2), expand=False)
            )
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.header()
        yield self.table()
        yield from self.findings()
        yield Text("")


class ReportView:
    """The whole report: every run, problems with inputs, and one summary line."""

    def __init__(self, report: Report, *, spark_width: int = 20) -> None:
        self.report = report
        self.spark_width = spark_width

    def summary(self) -> Text:
        r = self.report
        errors, warnings, infos = (r.count(s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO))
        failing = sum(
            1
            for rr in r.runs
            if r.fail_on != "never" and any(f.severity.rank >= Severity(r.fail_on).rank for f in rr.findings)
        )
        text = Text()
        text.append(f"{len(r.runs)} run(s) checked: ")
        text.append(f"{errors} error(s)", style=STYLE[Severity.ERROR] if errors else "")
        text.append(", ")
        text.append(f"{warnings} warning(s)", style=STYLE[Severity.WARNING] if warnings else "")
        text.append(f", {infos} info")
        if r.problems:
            text.append(f", {len(r.problems)} unreadable input(s)", style="bold red")
        text.append(f" · {failing} run(s) at or above --fail-on {r.fail_on} · exit {r.exit_code}")
        return text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for run in self.report.runs:
            yield RunView(run, spark_width=self.spark_width)
        for problem in self.report.problems:
            yield Text(f"error: {problem}", style="bold red", no_wrap=True, overflow="ignore")
        for warning in self.report.warnings:
            yield Text(f"warning: {warning}", style="yellow", no_wrap=True, overflow="ignore")
        for ignored in self.report.ignored:
            yield Text(f"ignored: {ignored}", style="dim")
        yield self.summary()


def render_text(report: Report, *, width: int = 100, color: bool = False) -> str:
    """The report as plain (or ANSI-coloured) text, for files and tests."""
    import io

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system="standard" if color else None, highlight=False)
    console.print(Group(ReportView(report)))
    # rich pads wrapped, indented lines to the full width; a file or a pipe should not carry that padding
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
