"""What every reporter shares: the seed-style metric rows, finding labels, and cleaning text that came from logs.

Why one module: the text, Markdown and (later) HTML reports must show the same ✓/⚠/✗ for the same run, so the row
computation lives here once; and every machine format must strip the same terminal escapes before its own escaping,
so a log cannot smuggle colour codes or hyperlinks into an annotation, a PR comment or an XML report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dpodoctor import stats
from dpodoctor.results import Finding, Report, RunReport, Severity
from dpodoctor.rules import RULES

# The seed's quick-reference table: what a healthy curve does, per core metric (canonical name -> label, behaviour).
HEALTHY: dict[str, tuple[str, str]] = {
    "loss": ("loss", "≈ ln 2 (0.693), falls, levels > 0"),
    "margins": ("rewards/margins", "rises from ~0, then levels off"),
    "accuracy": ("rewards/accuracies", "~0.5, rises toward 0.8–0.95"),
    "chosen": ("rewards/chosen", "increases"),
    "rejected": ("rewards/rejected", "decreases"),
}

MARK: dict[Severity, str] = {Severity.ERROR: "✗", Severity.WARNING: "⚠", Severity.INFO: "ℹ"}
PASS_MARK = "✓"
NOT_LOGGED_MARK = "–"

# Terminal escape sequences, longest forms first: OSC/DCS/SOS/PM/APC strings (ESC ] ... BEL or ESC \, e.g. the OSC 8
# hyperlink), CSI (ESC [ ... final byte, and its 8-bit form 0x9B), then any other two-byte escape such as ESC ( B.
# An unterminated string keeps its text: only its ESC is dropped below, so a stray ESC cannot swallow a message.
# A string's body stops at the next introducer too: otherwise a log line of many unterminated introducers would make
# every one of them scan to the end of the text (quadratic time, minutes for a 1 MB key).
_ANSI = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\x90\x98\x9d\x9e\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-~]"
)
# What XML 1.0 cannot carry (C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF), plus DEL and the C1
# controls, which terminals may act on. Stripped from every machine format, not only XML, so all formats agree.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean(text: object) -> str:
    """Log text made safe to embed: terminal escape sequences and characters no format can carry removed."""
    return _UNSAFE.sub("", _ANSI.sub("", str(text)))


def clean_data(value: Any) -> Any:
    """:func:`clean` applied to every string (keys too) of a JSON-like document; numbers and None unchanged."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(k): clean_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_data(v) for v in value]
    return value


def fmt_number(x: float) -> str:
    """Three significant digits, scientific below 1e-3: rewards at small β are tiny but still meaningful."""
    if not np.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


def end_level(series: pd.Series) -> float:
    """The level a curve ended at: the median of its last tenth (at least 3 points), not its noisy last point."""
    s = stats.finite(series)
    k = max(3, len(s) // 10)
    return float(np.median(s.to_numpy()[-k:])) if len(s) else float("nan")


def row_severity(metric: str, findings: Sequence[Finding]) -> Severity | None:
    """The worst finding touching this metric, directly or as corroborating evidence (a folded symptom still marks
    its own row, so the table shows every curve that looks wrong)."""
    worst: Severity | None = None
    for f in findings:
        metrics = {f.metric}
        for text in f.corroborating:
            rule = RULES.get(text.split(" ", 1)[0])
            if rule and rule.metrics:
                metrics.add(rule.metrics[0])
        if metric in metrics and (worst is None or f.severity.rank > worst.rank):
            worst = f.severity
    return worst


@dataclass(frozen=True)
class MetricRow:
    """One row of the seed-style table: a core metric, how a healthy run behaves, where this run went, verdict."""

    metric: str  # canonical name
    label: str  # the TRL key, with " (eval)" when only the eval split logs it
    healthy: str
    split: str | None  # None: not logged in either split
    start: float
    end: float
    severity: Severity | None  # the worst finding on this metric; None when it passed
    values: np.ndarray  # the finite values, for a sparkline

    @property
    def logged(self) -> bool:
        return self.split is not None

    @property
    def span(self) -> str:
        """``start → end`` as the text report prints it, or ``not logged``."""
        return f"{fmt_number(self.start)} → {fmt_number(self.end)}" if self.logged else "not logged"

    @property
    def mark(self) -> str:
        if not self.logged:
            return NOT_LOGGED_MARK
        return PASS_MARK if self.severity is None else MARK[self.severity]


def metric_rows(report: RunReport) -> list[MetricRow]:
    """The seed-style table of one run: train split when logged there, else eval (the split the rules judge)."""
    run = report.run
    rows = []
    for metric, (label, healthy) in HEALTHY.items():
        split = "train" if run.has(metric, "train") else "eval"
        series = stats.finite(run.series(metric, split))  # type: ignore[arg-type]
        if len(series) == 0:
            nan = float("nan")
            rows.append(MetricRow(metric, label, healthy, None, nan, nan, None, np.empty(0)))
            continue
        rows.append(
            MetricRow(
                metric=metric,
                label=label if split == "train" else f"{label} (eval)",
                healthy=healthy,
                split=split,
                start=stats.head(series),
                end=end_level(series),
                severity=row_severity(metric, report.findings),
                values=series.to_numpy(),
            )
        )
    return rows


def steps_text(f: Finding) -> str:
    """``step 12`` or ``steps 45–400``; empty when the finding is not tied to steps."""
    if f.first_step is None:
        return ""
    return f"step {f.first_step}" if f.first_step == f.last_step else f"steps {f.first_step}–{f.last_step}"


def where_text(f: Finding) -> str:
    """``train loss, steps 45–400``: the split, metric and steps a finding is about."""
    where = steps_text(f)
    return f"{f.split} {f.metric}" + (f", {where}" if where else "")


def title(code: str) -> str:
    """``DPO101 loss-stuck-ln2``: the name CI systems show for a rule (annotation title, JUnit test case)."""
    rule = RULES.get(code)
    return f"{code} {rule.name}" if rule else code


def at_or_above(report: Report, severity: Severity) -> bool:
    """Whether a finding of this severity trips the gate (``--fail-on``); never with ``--fail-on never``."""
    return report.fail_on != "never" and severity.rank >= Severity(report.fail_on).rank


def details(f: Finding) -> list[str]:
    """The lines after a finding's message: folded symptoms, likely cause, what to try (raw, not yet cleaned)."""
    lines = [f"also: {extra}" for extra in f.corroborating]
    if f.cause:
        lines.append(f"likely cause: {f.cause}")
    if f.fix:
        lines.append(f"what to try: {f.fix}")
    return lines


def summary_line(report: Report) -> str:
    """The one-line verdict, worded as the text report's last line."""
    errors, warnings, infos = (report.count(s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO))
    failing = sum(1 for rr in report.runs if any(at_or_above(report, f.severity) for f in rr.findings))
    text = f"{len(report.runs)} run(s) checked: {errors} error(s), {warnings} warning(s), {infos} info"
    if report.problems:
        text += f", {len(report.problems)} unreadable input(s)"
    return text + f" · {failing} run(s) at or above --fail-on {report.fail_on} · exit {report.exit_code}"
