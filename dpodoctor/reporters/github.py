"""GitHub Actions workflow-command annotations (``--format github``), and the job step summary.

Each finding becomes one ``::error``/``::warning``/``::notice`` line, which GitHub shows on the workflow run and, with
``file=``, next to the file in a pull request. Why the escaping: a workflow command ends at the first newline and its
properties at ``,`` or ``::``, so a run name or message from a log could otherwise end the annotation early or forge
another command. The escaping is GitHub's own (``escapeData``/``escapeProperty`` in @actions/core).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dpodoctor.report import Report
from dpodoctor.reporters.common import clean, details, title, where_text
from dpodoctor.reporters.markdown import render_markdown
from dpodoctor.results import Severity

COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
# GitHub shows at most 10 annotations of each type per step and drops the rest silently; past that, say so in one
# line, because a silently shortened list reads as "that was all".
MAX_PER_SEVERITY = 10


def escape_data(text: object) -> str:
    """The message of a workflow command: ``%``, CR and LF percent-encoded, as @actions/core ``escapeData``."""
    return clean(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: object) -> str:
    """A property value (``title=``, ``file=``): as :func:`escape_data`, plus ``:`` and ``,`` (``escapeProperty``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **properties: str) -> str:
    """One workflow command line: ``::kind prop=value,...::message``, every part escaped."""
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{kind}{' ' + props if props else ''}::{escape_data(message)}"


def render_github(report: Report) -> str:
    """One annotation per finding and per unreadable input, at most :data:`MAX_PER_SEVERITY` of each type."""
    annotations: list[tuple[Severity, str]] = [
        (Severity.ERROR, command("error", problem, title="dpodoctor unreadable input")) for problem in report.problems
    ]
    for rr in report.runs:
        path = Path(rr.run.path)
        where = {"file": str(path)} if path.is_file() else {}
        for f in rr.findings:
            message = "\n".join([f"{rr.run.name}: {f.message}", f"({where_text(f)})", *details(f)])
            annotations.append((f.severity, command(COMMAND[f.severity], message, title=title(f.code), **where)))
    lines: list[str] = []
    omitted: dict[Severity, int] = {}
    shown: dict[Severity, int] = {}
    for severity, line in annotations:
        if shown.get(severity, 0) < MAX_PER_SEVERITY:
            shown[severity] = shown.get(severity, 0) + 1
            lines.append(line)
        else:
            omitted[severity] = omitted.get(severity, 0) + 1
    if omitted:
        counts = ", ".join(f"{n} {COMMAND[s]}" for s, n in sorted(omitted.items(), key=lambda kv: -kv[0].rank))
        # A plain log line, not an annotation: an annotation of a type already at its limit would be dropped too.
        lines.append(
            f"dpodoctor: {counts} annotation(s) omitted (GitHub shows at most {MAX_PER_SEVERITY} of each type per "
            "step); the step summary and --format json list every finding"
        )
    return "".join(line + "\n" for line in lines)


def append_step_summary(report: Report, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append the Markdown report to ``$GITHUB_STEP_SUMMARY`` when it is set; return the file written, if any.

    Why append: the file is shared by every step of the job, and GitHub renders all of it on the run's page.
    """
    target = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(render_markdown(report) + "\n")
    return path
