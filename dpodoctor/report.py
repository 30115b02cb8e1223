"""The report of one check across runs: the runs' reports, what could not be read, and the exit code of the gate.

Why a module of its own, above :mod:`dpodoctor.table`: its JSON document (:meth:`Report.to_dict`) carries each run's
table of verdicts, which the table derives from the findings of :mod:`dpodoctor.results` and the rule catalogue; kept
in ``results`` it made ``results`` and ``table`` import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dpodoctor.curve import curve_documents
from dpodoctor.results import SCHEMA_VERSION, RunReport, Severity, trips_gate
from dpodoctor.table import VERDICT_MARK, VERDICTS, metric_rows

__all__ = ["Report", "run_document"]


def run_document(r: RunReport) -> dict[str, Any]:
    """One run's entry of the JSON document (:meth:`Report.to_dict`), made once per report and kept on it.

    Why kept: the table and the curve summaries are most of the document, and deriving them needs every point of
    the run, so it is made once: the text report's table and the JSON document read the same entry, and the cache
    stores it encoded (:func:`dpodoctor.jsondoc.run_fragment`), so a warm ``--format json`` needs no point.
    """
    document = r.__dict__.get("_document")
    if document is None:
        # every logged curve's numbers rounded at once, before the table quotes some of them (curve_documents)
        curves = curve_documents([c for c in r.curves.values() if c.logged])
        document = r.__dict__["_document"] = {
            "name": r.run.name,
            "path": str(r.run.path),
            "source": r.run.source,
            "steps": r.run.steps,
            "beta": r.beta_used,
            "beta_source": r.beta_source,
            "beta_logged": r.run.beta,
            "beta_note": r.beta_note,
            "ended": r.run.ended.value,
            "findings": [f.to_dict() for f in r.findings],
            "table": [row.to_dict() for row in metric_rows(r)],
            "curves": curves,
        }
        # A console log above the stdout reader's point budget was read thinned: say so where a CI job reads (only
        # then, so every other report is unchanged). The phrase is the one readers.stdout.runs.thinning_note writes.
        thinned = [note for note in r.run.notes if "above the reader's bound of" in note]
        if thinned:
            document["thinned"] = thinned[0]
    return document


@dataclass
class Report:
    """Everything one `check` found, and the exit code the gate derives from it."""

    runs: list[RunReport]
    fail_on: str = "error"
    problems: list[str] = field(default_factory=list)  # "file: reason" for inputs that could not be read
    ignored: list[str] = field(default_factory=list)  # files met in a walk that held no DPO metrics
    warnings: list[str] = field(default_factory=list)  # files and folders the walk skipped ("path: why")
    exit_zero: bool = False  # report, but never exit 1 (--exit-zero)

    def count(self, severity: Severity) -> int:
        return sum(r.count(severity) for r in self.runs)

    @property
    def gate_failed(self) -> bool:
        """A finding is at or above ``fail_on``."""
        return any(trips_gate(f.severity, self.fail_on) for r in self.runs for f in r.findings)

    @property
    def exit_code(self) -> int:
        """2 when some input could not be read; else 1 when the gate failed (0 with exit_zero); else 0."""
        if self.problems:
            return 2
        return int(self.gate_failed and not self.exit_zero)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON document: version 1, schema 1.1 (additive: each run's per-metric table and curve
        summaries, and the β used with where it came from)."""
        return self.document_with([{**run_document(r)} for r in self.runs])

    def document_with(self, runs: list[Any]) -> dict[str, Any]:
        """:meth:`to_dict` with ``runs`` in place of the runs' entries (the JSON reporter splices in each run's
        entry, encoded once: :func:`dpodoctor.jsondoc.run_fragment`)."""
        return {
            "version": 1,
            "schema_version": SCHEMA_VERSION,
            "verdicts": {word: {"mark": VERDICT_MARK[word], "meaning": text} for word, text in VERDICTS.items()},
            "runs": runs,
            "problems": self.problems,
            "summary": {
                "runs": len(self.runs),
                "errors": self.count(Severity.ERROR),
                "warnings": self.count(Severity.WARNING),
                "infos": self.count(Severity.INFO),
                "exit_code": self.exit_code,
            },
        }
