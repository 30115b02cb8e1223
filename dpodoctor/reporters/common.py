"""What every reporter shares: the seed-style metric rows (from :mod:`dpodoctor.table`, re-exported here), finding
labels, and cleaning text that came from logs.

Why one module: the text, Markdown and HTML reports must show the same ✓/⚠/✗ for the same run, so they all take
the rows of :mod:`dpodoctor.table`; and every machine format must strip the same terminal escapes before its own
escaping, so a log cannot smuggle colour codes or hyperlinks into an annotation, a PR comment or an XML report.
"""

from __future__ import annotations

from dpodoctor.checks import RULES
from dpodoctor.cleaning import clean, clean_data
from dpodoctor.report import Report
from dpodoctor.results import Finding, Severity, trips_gate
from dpodoctor.table import (
    DIRECTION,
    HEALTHY,
    MARK,
    NOT_LOGGED_MARK,
    PASS_MARK,
    SPAN_HEADER,
    VERDICT_MARK,
    VERDICTS,
    MetricRow,
    against_direction,
    against_legend,
    fmt_number,
    metric_rows,
    row_severity,
    span_legend,
)


def steps_text(f: Finding) -> str:
    """``step 12`` or ``steps 45–400``; empty when the finding is not tied to steps."""
    if f.first_step is None:
        return ""
    return f"step {f.first_step}" if f.first_step == f.last_step else f"steps {f.first_step}–{f.last_step}"


def where_text(f: Finding) -> str:
    """``train loss, steps 45–400``: the split, metric and steps a finding is about."""
    where = steps_text(f)
    return f"{f.split} {f.metric}" + (f", {where}" if where else "")


def title(code: str) -> str:
    """``DPO101 loss-stuck-ln2``: the name CI systems show for a rule (annotation title, JUnit test case)."""
    rule = RULES.get(code)
    return f"{code} {rule.name}" if rule else code


def at_or_above(report: Report, severity: Severity) -> bool:
    """Whether a finding of this severity trips the gate (``--fail-on``); never with ``--fail-on never``."""
    return trips_gate(severity, report.fail_on)


def details(f: Finding) -> list[str]:
    """The lines after a finding's message: folded symptoms, likely cause, what to try (raw, not yet cleaned)."""
    lines = [f"also: {extra}" for extra in f.corroborating]
    if f.cause:
        lines.append(f"likely cause: {f.cause}")
    if f.fix:
        lines.append(f"what to try: {f.fix}")
    return lines


def summary_line(report: Report) -> str:
    """The one-line verdict, worded as the text report's last line."""
    errors, warnings, infos = (report.count(s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO))
    failing = sum(1 for rr in report.runs if any(at_or_above(report, f.severity) for f in rr.findings))
    text = f"{len(report.runs)} run(s) checked: {errors} error(s), {warnings} warning(s), {infos} info"
    if report.problems:
        text += f", {len(report.problems)} unreadable input(s)"
    return text + f" · {failing} run(s) at or above --fail-on {report.fail_on} · exit {report.exit_code}"


def summary_style(report: Report) -> str:
    """The rich style of :func:`summary_line`: bold red when the gate fails, green when it passes, none without runs.

    Here, not in the text reporter, so the CLI can style the line on stderr without importing rich."""
    if not report.runs:
        return ""
    return "bold red" if report.exit_code else "green"


__all__ = [
    "DIRECTION",
    "HEALTHY",
    "MARK",
    "NOT_LOGGED_MARK",
    "PASS_MARK",
    "SPAN_HEADER",
    "VERDICTS",
    "VERDICT_MARK",
    "MetricRow",
    "against_direction",
    "against_legend",
    "at_or_above",
    "clean",
    "clean_data",
    "details",
    "fmt_number",
    "metric_rows",
    "row_severity",
    "span_legend",
    "steps_text",
    "summary_line",
    "summary_style",
    "title",
    "where_text",
]
