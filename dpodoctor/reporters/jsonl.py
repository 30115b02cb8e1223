"""One finding per line (``--format jsonl``).

Why JSON Lines: log pipelines (jq, BigQuery, Loki, a sweep's results table) ingest one record per line, and each
line carries its run's name, path and source, so a line can be filtered, sorted or appended to another file alone.
Runs without findings and unreadable inputs write no line; the exit code and ``--format json`` say those.
"""

from __future__ import annotations

import json
from typing import Any

from dpodoctor.jsondoc import strict
from dpodoctor.report import Report
from dpodoctor.reporters.common import clean_data


def records(report: Report) -> list[dict[str, Any]]:
    """The finding records: run name, path and source, then the finding's fields of the JSON document."""
    return [
        {"run": r.run.name, "path": str(r.run.path), "source": r.run.source, **f.to_dict()}
        for r in report.runs
        for f in r.findings
    ]


def _dumps(value: Any) -> str:
    return json.dumps(strict(clean_data(value)), ensure_ascii=False, allow_nan=False)


def render_jsonl(report: Report) -> str:
    """Each finding as one compact JSON object on its own line (JSON escapes newlines inside strings)."""
    return "".join(_dumps(record) + "\n" for record in records(report))
