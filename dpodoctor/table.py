"""The per-metric table of a run: one row per seed metric and split, its numbers and its verdict.

Why its own module, below the reporters: the text, Markdown and HTML reports, ``compare`` and the JSON document
must show the same rows with the same end values and the same ✓/⚠/✗, so the rows are computed here once, from the
run's :class:`~dpodoctor.curve.CurveSummary` objects (:attr:`RunReport.curves`) and its findings; nobody recomputes
a start or an end. :meth:`dpodoctor.report.Report.to_dict` reads the rows too, so the JSON cannot disagree.

A row's verdict: the worst warning or error finding about that curve (directly, or as a symptom folded into a
cause); else ⚠ ``against`` when the curve's end level moved against the seed's healthy direction by more than its
batch noise (no rule flagged it, but it is not ✓); else ℹ with only an info finding; else ✓.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dpodoctor.checks import RULES
from dpodoctor.curve import CurveSummary
from dpodoctor.results import Finding, RunReport, Severity
from dpodoctor.rules import curve_move
from dpodoctor.rules import material_move as material_move  # the threshold rows are judged with, re-exported
from dpodoctor.vocabulary import DIRECTION, HEALTHY

if TYPE_CHECKING:
    import numpy as np

MARK: dict[Severity, str] = {Severity.ERROR: "✗", Severity.WARNING: "⚠", Severity.INFO: "ℹ"}
PASS_MARK = "✓"
NOT_LOGGED_MARK = "–"


def fmt_number(x: float) -> str:
    """Three significant digits, scientific below 1e-3: rewards at small β are tiny but still meaningful."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


# What each verdict of a table row means; the JSON report carries the word, the text reports the mark.
VERDICTS: dict[str, str] = {
    "pass": "no finding, and the curve did not move against its healthy direction by more than its noise",
    "error": "an error finding is about this curve (directly or as a folded symptom)",
    "warning": "a warning finding is about this curve (directly or as a folded symptom)",
    "info": "only an info finding is about this curve",
    "against": "no rule flagged it, but its end level moved against its healthy direction by more than its noise",
    "not_logged": "the run does not log this metric",
}
VERDICT_MARK: dict[str, str] = {
    "pass": PASS_MARK,
    "error": MARK[Severity.ERROR],
    "warning": MARK[Severity.WARNING],
    "info": MARK[Severity.INFO],
    "against": MARK[Severity.WARNING],
    "not_logged": NOT_LOGGED_MARK,
}
# The column that shows where a curve went: the raw first logged value, and the robust end level (a median of the
# last points, see :func:`span_legend`); the same wording in every format.
SPAN_HEADER = "first → end"


def _finding_codes(f: Finding) -> dict[tuple[str, str], list[str]]:
    """The (split, metric) curves a finding is about, each with the codes that are about it: the finding's own
    curve, and the curve of each symptom folded into it under the symptom's code (a folded symptom keeps marking its
    own row, so the table shows every curve that looks wrong; symptoms are folded within one split, so they carry
    the finding's split)."""
    keys: dict[tuple[str, str], list[str]] = {(f.split, f.metric): [f.code]}
    for folded in f.corroborating:
        code = folded.code
        rule = RULES.get(code)
        if rule and rule.metrics:
            keys.setdefault((f.split, rule.metrics[0]), []).append(code)
    return keys


def _finding_metrics(f: Finding) -> set[tuple[str, str]]:
    return set(_finding_codes(f))


def row_severity(metric: str, findings: Sequence[Finding], split: str = "train") -> Severity | None:
    """The worst finding touching this (split, metric) curve, directly or as corroborating evidence."""
    worst: Severity | None = None
    for f in findings:
        if (split, metric) in _finding_metrics(f) and (worst is None or f.severity.rank > worst.rank):
            worst = f.severity
    return worst


def against_direction(curve: CurveSummary, beta: float = 0.1) -> bool:
    """The curve moved against the seed's healthy direction by more than its batch noise and a material amount,
    from its start level or from the raw first value the table shows: :func:`dpodoctor.rules.curve_move`, the one
    judgement the "checked" line's rose/fell/stayed level reads too, so a ⚠ row never sits beside "stayed level"."""
    direction = DIRECTION.get(curve.metric, 0)
    return bool(direction) and curve_move(curve, beta).direction == -direction


@dataclass(frozen=True)
class MetricRow:
    """One row of the seed-style table: a seed metric in one split, how a healthy run behaves, where this run went
    (read from the run's :class:`~dpodoctor.curve.CurveSummary`, never recomputed), and the verdict."""

    metric: str  # canonical name
    label: str  # the TRL key, ``eval/`` in front for the eval split (as TensorBoard names it)
    healthy: str
    split: str | None  # None: not logged in either split
    curve: CurveSummary | None
    severity: Severity | None  # the worst finding on this curve; None when no finding is about it
    verdict: str  # a key of VERDICTS
    codes: tuple[str, ...] = ()  # the findings about this curve (a folded symptom by its own code)

    @property
    def logged(self) -> bool:
        return self.curve is not None and self.curve.logged

    @property
    def values(self) -> np.ndarray:
        """The finite values, for a sparkline."""
        if self.curve is not None:
            return self.curve.values
        import numpy as np  # here: a warm JSON check builds no row's sparkline, and numpy is ~0.1 s of its start

        return np.empty(0)

    @property
    def first(self) -> str:
        """The raw first logged value, to the table's 3 significant digits (sentences quote the same number to 4)."""
        return fmt_number(self.curve.first_value) if self.curve is not None and self.logged else ""

    @property
    def end(self) -> str:
        """The curve's end level (:attr:`CurveSummary.end`), to the table's 3 significant digits."""
        return fmt_number(self.curve.end) if self.curve is not None and self.logged else ""

    @property
    def span(self) -> str:
        """``first → end`` as every format prints it (raw first value, end level), or ``not logged``."""
        return f"{self.first} → {self.end}" if self.logged else "not logged"

    @property
    def mark(self) -> str:
        return VERDICT_MARK[self.verdict]

    @property
    def against(self) -> bool:
        """Marked ⚠ only because the curve moved against its healthy direction (no warning or error about it)."""
        return self.verdict == "against"

    def to_dict(self) -> dict[str, Any]:
        """The row for the JSON report: the verdict as a word and a mark, and the curve's summary."""
        return {
            "label": self.label,
            "split": self.split,
            "metric": self.metric,
            "healthy": self.healthy,
            "direction": {1: "rises", -1: "falls"}.get(DIRECTION.get(self.metric, 0)),
            "verdict": self.verdict,
            "mark": self.mark,
            "codes": list(self.codes),
            "curve": self.curve.to_dict() if self.curve is not None and self.logged else None,
        }


def _row(report: RunReport, metric: str, split: str, label: str, healthy: str) -> MetricRow:
    curve = report.curves.get((split, metric))
    shown = label if split == "train" else f"eval/{label}"
    if curve is None or not curve.logged:
        return MetricRow(metric, shown, healthy, None, None, None, "not_logged")
    severity = row_severity(metric, report.findings, split)
    codes = tuple(code for f in report.findings for code in _finding_codes(f).get((split, metric), []))
    if severity is not None and severity is not Severity.INFO:
        verdict = severity.value
    elif against_direction(curve, report.beta_used):
        verdict = "against"
    else:
        verdict = "pass" if severity is None else "info"
    return MetricRow(metric, shown, healthy, split, curve, severity, verdict, codes)


def metric_rows(report: RunReport) -> list[MetricRow]:
    """The seed-style table of one run: a row per seed metric of the train split, then one per seed metric the
    eval split logs (labelled ``eval/...``). A metric logged in neither split gets one ``not logged`` row."""
    rows = []
    for metric, (label, healthy) in HEALTHY.items():
        if ("train", metric) in report.curves or ("eval", metric) not in report.curves:
            rows.append(_row(report, metric, "train", label, healthy))
    for metric, (label, healthy) in HEALTHY.items():
        if ("eval", metric) in report.curves:
            rows.append(_row(report, metric, "eval", label, healthy))
    return rows


def span_legend(rows: Sequence[MetricRow]) -> str:
    """What ``first → end`` means for these rows, per split (``first: first logged value · end: median of the last 8
    points (steps 365–400); eval: of the last 3 (steps 360–400)``), so the column never hides that the end is a
    level and not the last point."""
    parts: list[str] = []
    for split in ("train", "eval"):
        windows = {(r.curve.end_points, r.curve.end_steps) for r in rows if r.split == split and r.curve is not None}
        if not windows:
            continue
        k, steps = max(windows, key=lambda w: w[0])
        prefix = "" if split == "train" else "eval: "
        if len(windows) > 1:
            parts.append(f"{prefix}median of the last ~10% of the points (per metric in the JSON report)")
        elif k <= 1:
            parts.append(f"{prefix}last logged value (too few points for a median)")
        else:
            assert steps is not None
            parts.append(f"{prefix}median of the last {k} points (steps {steps[0]}–{steps[1]})")
    if not parts:
        return ""
    return "first: first logged value · end: " + "; ".join(parts)


def against_legend(rows: Sequence[MetricRow]) -> str:
    """The sentence that explains a ⚠ no rule raised: which rows moved against their healthy direction."""
    labels = [r.label for r in rows if r.against]
    if not labels:
        return ""
    return f"⚠ without a finding: {', '.join(labels)} moved against its healthy direction by more than its noise"
