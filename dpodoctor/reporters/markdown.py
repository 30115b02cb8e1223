"""The Markdown report (``--format markdown``): for pull-request comments and GitHub's job step summary.

Why its own escaping: GitHub renders Markdown *and* inline HTML in comments and step summaries, so text from a log
(run names, metric keys, messages built from them) could otherwise inject HTML, break a table with ``|`` or restyle
the report. Every such string goes through :func:`md`; the report's own markup never
uses raw HTML, so the output holds no ``<`` at all.
"""

from __future__ import annotations

import re

from dpodoctor.report import Report
from dpodoctor.reporters.common import (
    MARK,
    PASS_MARK,
    SPAN_HEADER,
    against_legend,
    clean,
    details,
    metric_rows,
    span_legend,
    summary_line,
    title,
    where_text,
)
from dpodoctor.results import Finding, RunReport, Severity

# Inline Markdown syntax a log could use to restyle the report or add a link: backslash first, so the escapes added
# for the other characters cannot be undone by a backslash in the input. `_` only at a word boundary: intraword
# underscores (max_grad_norm, lr_too_low) never emphasise in GitHub-flavoured Markdown and stay readable.
_MD_SPECIAL = re.compile(r"([\\`*\[\]~|])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def md(text: object) -> str:
    """Log text as inline Markdown, safe in a table cell too: one line, no markup, and no HTML: ``&`` and ``<``
    become entities (without ``<`` no tag can open; ``>`` stays readable), ``|`` cannot split a table row."""
    one_line = " ".join(clean(text).split())
    escaped = one_line.replace("&", "&amp;").replace("<", "&lt;")
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), escaped)


def _finding(f: Finding) -> list[str]:
    lines = [f"**{MARK[f.severity]} {md(title(f.code))}** ({f.severity.value}) · {md(where_text(f))}  ", md(f.message)]
    extra = details(f)
    if extra:
        lines.append("")
        lines += [f"- {md(line)}" for line in extra]
    return [*lines, ""]


def _run(rr: RunReport) -> list[str]:
    run = rr.run
    worst = rr.worst()
    head = PASS_MARK if worst is None else MARK[worst]
    ended = f"ended: {run.ended.value}"
    steps = f"{run.steps} steps" + (" (derived)" if run.steps_derived else "")
    lines = [
        f"### {head} {md(run.name)}",
        "",
        f"{md(run.source)}: {md(run.path)} · {steps} · {ended} · β = {rr.beta_used:g}, {md(rr.beta_note)}",
        "",
        f"| metric | healthy behaviour | {SPAN_HEADER} | verdict |",
        "|---|---|---|:---:|",
    ]
    rows = metric_rows(rr)
    for row in rows:
        lines.append(f"| {md(row.label)} | {md(row.healthy)} | {row.span} | {row.mark} |")
    lines.append("")
    legend = [md(line) for line in (span_legend(rows), against_legend(rows)) if line]
    if legend:
        lines += ["  \n".join(legend), ""]
    for f in rr.findings:
        lines += _finding(f)
    if not rr.findings:
        lines += ["No findings: every rule that could run passed.", ""]
    if rr.skipped:
        skipped = ", ".join(f"{code} (needs {', '.join(m)})" for code, m in rr.skipped.items())
        lines += [f"Not checked, metric missing: {md(skipped)}", ""]
    return lines


def render_markdown(report: Report) -> str:
    """The whole report as GitHub-flavoured Markdown, headed by the verdict so a collapsed summary says it all."""
    worst = max((f.severity for rr in report.runs for f in rr.findings), key=lambda s: s.rank, default=None)
    head = "✗" if report.problems else (PASS_MARK if worst is None else MARK[worst])
    lines = [f"## {head} dpodoctor: {md(summary_line(report))}", ""]
    for problem in report.problems:
        lines.append(f"- **{MARK[Severity.ERROR]} unreadable input:** {md(problem)}")
    if report.problems:
        lines.append("")
    for rr in report.runs:
        lines += _run(rr)
    return "\n".join(lines).rstrip("\n") + "\n"
