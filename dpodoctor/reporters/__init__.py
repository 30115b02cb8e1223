"""Reporters turn a :class:`dpodoctor.results.Report` into text for people or documents for machines.

They know presentation only: no reading, no statistics beyond what a table needs.
"""

from __future__ import annotations

from dpodoctor.reporters.json import render_json
from dpodoctor.reporters.text import ReportView, RunView, sparkline

FORMATS = ("text", "json")

__all__ = ["FORMATS", "ReportView", "RunView", "render_json", "sparkline"]
