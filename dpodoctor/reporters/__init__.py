"""Reporters turn a :class:`dpodoctor.report.Report` into text for people or documents for machines.

They know presentation only: no reading, no statistics beyond what a table needs. Every format is rendered from the
same findings by :func:`render`, so the text report, the JSON, the annotations and the JUnit file cannot disagree,
and the exit code does not depend on the format.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpodoctor.report import Report
    from dpodoctor.reporters.github import render_github
    from dpodoctor.reporters.html import render_html
    from dpodoctor.reporters.json import render_json
    from dpodoctor.reporters.jsonl import render_jsonl
    from dpodoctor.reporters.junit import render_junit
    from dpodoctor.reporters.markdown import render_markdown
    from dpodoctor.reporters.text import ReportView, RunView, render_text, sparkline

# Each format's renderer as (module, function). A renderer's module is imported when that format is rendered, not
# when the package is: a JSON check imports neither rich (the text report) nor the XML library (JUnit). The names
# below are imported on first use (PEP 562), as `dpodoctor`'s own are.
_RENDERER_HOMES: dict[str, tuple[str, str]] = {
    "text": ("text", "render_text"),
    "json": ("json", "render_json_clean"),
    "jsonl": ("jsonl", "render_jsonl"),
    "markdown": ("markdown", "render_markdown"),
    "github": ("github", "render_github"),
    "junit": ("junit", "render_junit"),
    "html": ("html", "render_html"),
}
FORMATS = tuple(_RENDERER_HOMES)
_NAME_HOMES: dict[str, str] = {
    "render_github": "github",
    "render_html": "html",
    "render_json": "json",
    "render_json_clean": "json",
    "render_jsonl": "jsonl",
    "render_junit": "junit",
    "render_markdown": "markdown",
    "render_text": "text",
    "ReportView": "text",
    "RunView": "text",
    "sparkline": "text",
}

SCHEMA_FILE = "report-v1.schema.json"


def _module(name: str) -> ModuleType:
    """The reporter module ``name`` (one of this package's), imported now if not yet."""
    if name == "text":
        from dpodoctor.reporters import text as home
    elif name == "json":
        from dpodoctor.reporters import json as home  # type: ignore[no-redef]
    elif name == "jsonl":
        from dpodoctor.reporters import jsonl as home  # type: ignore[no-redef]
    elif name == "markdown":
        from dpodoctor.reporters import markdown as home  # type: ignore[no-redef]
    elif name == "github":
        from dpodoctor.reporters import github as home  # type: ignore[no-redef]
    elif name == "junit":
        from dpodoctor.reporters import junit as home  # type: ignore[no-redef]
    elif name == "html":
        from dpodoctor.reporters import html as home  # type: ignore[no-redef]
    else:
        raise ValueError(f"no reporter module {name!r}")
    return home


def renderer(fmt: str) -> Callable[[Report], str]:
    """The function that renders format ``fmt`` (one of :data:`FORMATS`), its module imported now if not yet."""
    try:
        module, name = _RENDERER_HOMES[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r}; one of {', '.join(FORMATS)}") from None
    found: Callable[[Report], str] = getattr(_module(module), name)
    return found


def render(report: Report, fmt: str) -> str:
    """The report in one of :data:`FORMATS`; text without colour at 100 columns (the CLI styles it for a terminal)."""
    return renderer(fmt)(report)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the ``--format json`` document (version 1), shipped inside the package."""
    from importlib import resources

    # `from json import loads`, not `import json`: the submodule reporters.json is this package's `json`.
    from json import loads

    return loads(resources.files("dpodoctor").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8"))


def __getattr__(name: str) -> Any:
    if name == "RENDERERS":  # every format's renderer: imports them all
        value: Any = {fmt: renderer(fmt) for fmt in FORMATS}
    elif name in _NAME_HOMES:
        value = getattr(_module(_NAME_HOMES[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_NAME_HOMES))


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
    "renderer",
    "sparkline",
]
