"""The machine-readable report (``--format json``): the document of :meth:`Report.to_dict`, strict JSON, encoded by
:mod:`dpodoctor.jsondoc` (the standard library's bytes, at orjson's speed)."""

from __future__ import annotations

from typing import Final

from dpodoctor.jsondoc import dumps_indented, run_fragment
from dpodoctor.report import Report

_RUNS_LINE: Final = '\n  "runs": []'


def render_json_clean(report: Report) -> str:
    """The version-1 JSON document of :func:`render_json`, with terminal escapes and characters no format can carry
    removed from log text, as in every other machine format.

    Written as the standard library writes the whole document, in parts: the document around an empty run list,
    then each run's entry (:func:`run_fragment`) indented to its place. Cleaning and the NaN rule apply to each
    value alone, so the parts are the whole (the golden reports check it). The key line is found by its place: a
    line that starts with two spaces and ``"runs"`` is a key of the top level (JSON strings hold no raw newline).
    """
    head = dumps_indented(report.document_with([]), clean=True)
    if not report.runs:
        return head + "\n"
    where = head.index(_RUNS_LINE)
    runs = ",\n    ".join(run_fragment(r) for r in report.runs)  # each already indented to its place
    return f'{head[:where]}\n  "runs": [\n    {runs}\n  ]{head[where + len(_RUNS_LINE) :]}\n'


def render_json(report: Report) -> str:
    """The version-1 JSON document, strict (NaN and ±inf as null), log text as logged."""
    return dumps_indented(report.to_dict()) + "\n"
