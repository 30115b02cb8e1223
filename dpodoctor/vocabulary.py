"""The curve vocabulary that the rules, the table, ``compare`` and every reporter share.

Why one module: the seed's quick-reference table (what a healthy curve of each core metric does, and which way it
moves), the metric labels, which metrics are rewards (β × log-ratio) and which split a metric is judged on were
written in several places (the table, the plot helpers, ``compare``, the rules' context). Kept here, below all of
them, a label or a direction cannot differ between a finding, a table row and a figure, and ``compare`` no longer
reaches into the reporters for them. The gate's threshold lives beside :class:`~dpodoctor.results.Severity`
(:func:`dpodoctor.results.gate_threshold`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from dpodoctor import stats
from dpodoctor.metrics import Split
from dpodoctor.model import Run

if TYPE_CHECKING:
    import pandas as pd

# The seed's metric labels, for table rows, single-metric panels (compare) and legends.
METRIC_LABELS: Final[dict[str, str]] = {
    "loss": "loss",
    "margins": "rewards/margins",
    "accuracy": "rewards/accuracies",
    "chosen": "rewards/chosen",
    "rejected": "rewards/rejected",
    "logps_chosen": "logps/chosen",
    "logps_rejected": "logps/rejected",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
}

# The seed's quick-reference table: what a healthy curve does, per core metric (canonical name -> label, behaviour).
HEALTHY: Final[dict[str, tuple[str, str]]] = {
    "loss": (METRIC_LABELS["loss"], "≈ ln 2 (0.693), falls, levels > 0"),
    "margins": (METRIC_LABELS["margins"], "rises from ~0, then levels off"),
    "accuracy": (METRIC_LABELS["accuracy"], "~0.5, rises toward 0.8–0.95"),
    "chosen": (METRIC_LABELS["chosen"], "increases"),
    "rejected": (METRIC_LABELS["rejected"], "decreases"),
}
# The seed's metrics, in table order: the rows of the check report's and the comparison's table.
SEED_METRICS: Final[tuple[str, ...]] = tuple(HEALTHY)

# Which way a healthy curve of each seed metric moves (the seed's table): -1 falls, +1 rises. A row with no finding
# whose curve moved the other way by more than its batch noise is marked ⚠ ("against its healthy direction"), never ✓.
DIRECTION: Final[dict[str, int]] = {"loss": -1, "margins": 1, "accuracy": 1, "chosen": 1, "rejected": -1}

# Rewards are β × log-ratio: these are the metrics `compare --normalize-beta` divides by β.
REWARD_METRICS: Final = frozenset({"margins", "chosen", "rejected"})

# Values beyond this are not drawn: no DPO metric is meaningfully that large, and axis arithmetic near the float range
# overflows (matplotlib's transforms turn singular, plotext converts NaN ticks to int). The table and findings still
# show them; DPO001 reports NaN/inf.
PLOTTABLE: Final = 1e100


def primary_split(run: Run, metric: str) -> Split:
    """The split a metric is judged on: train when the run logs it there, else eval (a run that logs a metric only
    at eval is judged on eval)."""
    return "train" if run.has(metric, "train") else "eval"


def points(run: Run, metric: str, split: str) -> pd.Series:
    """The plottable values of one metric in one split, indexed by step: finite and below :data:`PLOTTABLE`."""
    s = stats.finite(run.series(metric, split))  # type: ignore[arg-type]
    return s[s.abs() < PLOTTABLE]
