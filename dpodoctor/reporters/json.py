"""The machine-readable report (``--format json``): the document of :meth:`Report.to_dict`, strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from dpodoctor.report import Report


def _strict(value: Any) -> Any:
    """NaN and ±inf are not JSON: write them as null so strict parsers (jq, JS) accept the document."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def render_json(report: Report) -> str:
    return json.dumps(_strict(report.to_dict()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
