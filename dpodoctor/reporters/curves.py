"""What every chart shows, whatever draws it: the panels, their reference lines, the curves and the finding spans.

Why one module without any plotting library: the terminal charts (plotext), the PNG/SVG figures (matplotlib) and the
HTML report must put the same finding on the same panel and draw the same reference lines as the seed's table (ln 2
for the loss, 0.5 for accuracy, 0 for margins and rewards), so that choice is made once here. Keeping plotting
libraries out of it keeps ``import dpodoctor`` fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dpodoctor import stats
from dpodoctor.results import Finding, Severity

LN2 = math.log(2)


@dataclass(frozen=True)
class Reference:
    """A horizontal line a healthy curve is read against (the seed's table)."""

    value: float
    label: str


@dataclass(frozen=True)
class Panel:
    """One chart: the canonical metrics it overlays (several for chosen beside rejected) and its reference line."""

    key: str
    title: str
    metrics: tuple[str, ...]
    reference: Reference | None = None


LN2_LINE = Reference(LN2, "ln 2 = 0.693")
ZERO_LINE = Reference(0.0, "0")
CHANCE_LINE = Reference(0.5, "chance = 0.5")

LOSS = Panel("loss", "loss", ("loss",), LN2_LINE)
MARGINS = Panel("margins", "rewards/margins", ("margins",), ZERO_LINE)
ACCURACY = Panel("accuracy", "rewards/accuracies", ("accuracy",), CHANCE_LINE)
REWARDS = Panel("rewards", "rewards/chosen · rewards/rejected", ("chosen", "rejected"), ZERO_LINE)
LOGPS = Panel("logps", "logps/chosen · logps/rejected", ("logps_chosen", "logps_rejected"))
GRAD_NORM = Panel("grad_norm", "grad_norm", ("grad_norm",))

# The terminal has room for the seed's four curves; a figure adds the policy log-probabilities and the gradient norm.
TERMINAL_PANELS: tuple[Panel, ...] = (LOSS, MARGINS, ACCURACY, REWARDS)
FIGURE_PANELS: tuple[Panel, ...] = (LOSS, MARGINS, ACCURACY, REWARDS, LOGPS, GRAD_NORM)

REFERENCES: dict[str, Reference] = {
    "loss": LN2_LINE,
    "margins": ZERO_LINE,
    "accuracy": CHANCE_LINE,
    "chosen": ZERO_LINE,
    "rejected": ZERO_LINE,
}

# The Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008): eight colours that stay distinct for the
# common colour-vision deficiencies, red–green included. Colour is never the only cue: curves also differ by line
# glyph (terminal) or line style and marker (figures), and are named next to them.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
# One colour per role, shared by the terminal and the figures, so a reader who learnt one reads the other.
COLORS: dict[str, str] = {"chosen": OKABE_ITO["blue"], "rejected": OKABE_ITO["vermillion"]}
DEFAULT_COLOR = OKABE_ITO["blue"]
EVAL_COLOR = OKABE_ITO["orange"]
SEVERITY_COLORS: dict[Severity, str] = {
    Severity.ERROR: OKABE_ITO["vermillion"],
    Severity.WARNING: OKABE_ITO["orange"],
    Severity.INFO: OKABE_ITO["sky blue"],
}
# Compared runs, in order (yellow last: faint on white).
RUN_COLORS: tuple[str, ...] = tuple(
    OKABE_ITO[name]
    for name in ("blue", "vermillion", "bluish green", "reddish purple", "orange", "sky blue", "black", "yellow")
)
# How each role is drawn in the figures besides its colour (matplotlib line style, marker).
STYLES: dict[str, tuple[str, str]] = {"chosen": ("-", "^"), "rejected": ("--", "v")}
RUN_STYLES: tuple[tuple[str, str], ...] = (("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ("-", "v"), ("--", "P"))


def panel_for(metric: str, panels: Sequence[Panel]) -> Panel:
    """The panel a finding about ``metric`` is drawn on: its own, else the loss panel (the first), so a finding on
    a metric without a chart (learning_rate, entropy) is still marked somewhere a reader looks."""
    for panel in panels:
        if metric in panel.metrics:
            return panel
    return panels[0]


def findings_by_panel(findings: Iterable[Finding], panels: Sequence[Panel]) -> dict[str, list[Finding]]:
    """Findings grouped by the key of the panel they are marked on (every panel key present, maybe empty)."""
    grouped: dict[str, list[Finding]] = {p.key: [] for p in panels}
    for f in findings:
        grouped[panel_for(f.metric, panels).key].append(f)
    return grouped


def folded_by_panel(findings: Iterable[Finding], panels: Sequence[Panel]) -> dict[str, list[str]]:
    """``"DPO301 (in DPO101)"`` notes per panel key: symptoms folded into another finding as corroborating
    evidence, shown on their own metric's panel, so a flat margin explained by DPO101 is still pointed at."""
    from dpodoctor.checks import RULES

    notes: dict[str, list[str]] = {p.key: [] for p in panels}
    for f in findings:
        for folded in f.corroborating:
            code = folded.code
            rule = RULES.get(code)
            if rule is not None and rule.metrics:
                notes[panel_for(rule.metrics[0], panels).key].append(f"{code} (in {f.code})")
    return notes


def y_floor(panel_key: str, beta: float) -> float:
    """The smallest y range a panel may zoom to. Why: a loss stuck at ln 2 varies by 1e-5, and autoscaling would
    blow that noise up to fill the panel, so a stuck run would look busy. A floor (0.1 for the loss, 0.05·β for
    rewards, i.e. 0.05 nats, 1 nat for log-probabilities) keeps a flat curve flat; 0 means no floor."""
    return {"loss": 0.1, "margins": 0.05 * beta, "rewards": 0.05 * beta, "logps": 1.0}.get(panel_key, 0.0)


def span(f: Finding) -> tuple[float, float] | None:
    """The step range of a finding, or None when it is not tied to steps."""
    if f.first_step is None:
        return None
    last = f.last_step if f.last_step is not None else f.first_step
    return float(f.first_step), float(last)


def smoothed(series: pd.Series) -> pd.Series:
    """The rolling-median curve drawn over the raw points: the same smoothing the rules judge, so the line a
    reader sees is the one a finding describes."""
    return stats.smooth(series) if len(series) >= 3 else series


def nice_ticks(lo: float, hi: float, *, count: int = 5) -> list[float]:
    """About ``count`` round tick positions (1, 2 or 5 × 10^k apart) covering [lo, hi]; steps read as 0, 100, 200
    rather than 0, 66.7, 133.3."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))

    def ticks(step: float) -> list[float]:
        start = math.ceil(lo / step - 1e-9) * step
        return [round(float(v), 12) for v in np.arange(start, hi + step * 1e-9, step)]

    # the round step whose tick count is closest to `count`, the larger step on a tie (fewer labels to crowd)
    candidates = [ticks(m * magnitude) for m in (10, 5, 2, 1)]
    return min(candidates, key=lambda t: abs(len(t) - count))


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120


def safe_filename(name: str, taken: set[str] | None = None) -> str:
    """A run name as a file name stem that cannot leave its directory: anything but letters, digits, ``.``, ``_``
    and ``-`` becomes ``_`` (a sweep's ``a/b`` becomes ``a_b``; ``..`` and ``/`` cannot survive), no leading dot,
    at most 120 characters. With ``taken``, a stem already used gets ``-2``, ``-3``... and is added to it, so two
    runs never overwrite each other's plot."""
    stem = _UNSAFE_NAME.sub("_", name).strip("._-")[:MAX_NAME].rstrip("._-") or "run"
    if taken is None:
        return stem
    candidate, n = stem, 1
    while candidate.lower() in taken:  # case-insensitive: macOS and Windows file systems are
        n += 1
        candidate = f"{stem}-{n}"
    taken.add(candidate.lower())
    return candidate
