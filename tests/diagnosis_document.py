"""One run's diagnosis as plain JSON-ready data, for tests that compare two diagnoses of the same run.

Why a module of its own, importing nothing but what it is given: tests/test_diagnosis_pandas_free.py computes it in
a child process where pandas cannot be imported, and in the test itself, and the two must be the same function.
"""

from __future__ import annotations

from typing import Any

from dpodoctor.results import Finding, RunReport


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "name": f.name,
        "severity": f.severity.value,
        "split": f.split,
        "metric": f.metric,
        "first_step": f.first_step,
        "last_step": f.last_step,
        "message": f.message,
        "evidence": f.evidence,
        "cause": f.cause,
        "fix": f.fix,
        "corroborating": [[c.code, c.name, c.message] for c in f.corroborating],
    }


def document(report: RunReport) -> dict[str, Any]:
    """Every finding, the skipped and checked rules, β, the health sentences, every curve summary and the
    expectations the run was judged against."""
    return {
        "findings": [_finding(f) for f in report.findings],
        "skipped": report.skipped,
        "checked": report.checked,
        "beta": [report.beta_used, report.beta_note],
        "health": report.health,
        "curves": {f"{s}/{m}": c.to_dict() for (s, m), c in sorted(report.curves.items())},
        "expectations": repr(report.expectations),
    }
