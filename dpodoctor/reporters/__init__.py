"""Reporters turn a :class:`dpodoctor.report.Report` into text for people or documents for machines.

They know presentation only: no reading, no statistics beyond what a table needs. Every format is rendered from the
same findings by :func:`render`, so the text report, the JSON, the annotations and the JUnit file cannot disagree,
and the exit code does not depend on the format.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

# `from json import loads`, not `import json`: importing the submodule reporters.json rebinds the name `json` here.
from json import loads
from typing import Any

from dpodoctor.report import Report
from dpodoctor.reporters.github import render_github
from dpodoctor.reporters.html import render_html
from dpodoctor.reporters.json import render_json, render_json_clean
from dpodoctor.reporters.jsonl import render_jsonl
from dpodoctor.reporters.junit import render_junit
from dpodoctor.reporters.markdown import render_markdown
from dpodoctor.reporters.text import ReportView, RunView, render_text, sparkline

RENDERERS: dict[str, Callable[[Report], str]] = {
    "text": render_text,
    "json": render_json_clean,
    "jsonl": render_jsonl,
    "markdown": render_markdown,
    "github": render_github,
    "junit": render_junit,
    "html": render_html,
}
FORMATS = tuple(RENDERERS)

SCHEMA_FILE = "report-v1.schema.json"


def render(report: Report, fmt: str) -> str:
    """The report in one of :data:`FORMATS`; text without colour at 100 columns (the CLI styles it for a terminal)."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(FORMATS)}") from None
    return renderer(report)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the ``--format json`` document (version 1), shipped inside the package."""
    return loads(resources.files("dpodoctor").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8"))


__all__ = [
    "FORMATS",
    "RENDERERS",
    "ReportView",
    "RunView",
    "load_schema",
    "render",
    "render_github",
    "render_html",
    "render_json",
    "render_jsonl",
    "render_junit",
    "render_markdown",
    "render_text",
    "sparkline",
]
