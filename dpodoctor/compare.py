"""Several runs side by side: their curves on a common x axis, their final values and their findings.

Why in the API and not in the CLI: a sweep script wants the same numbers the ``compare`` command prints (to pick a
β, to rank runs), so the alignment (step, or epoch interpolated from the run's own ``epoch`` metric) and the β
normalisation are computed here once, and the CLI and the figures only present a :class:`Comparison`.

Why ``normalize_beta``: DPO's rewards are β × log(π/π_ref), so a run at β = 0.01 shows margins a hundred times
smaller than one at β = 1.0 for the same change of the policy. Dividing the rewards by each run's β compares the
log-ratios themselves, which is what "compare the margin curves" of two β values means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dpodoctor import api
from dpodoctor.errors import DpoDoctorError
from dpodoctor.loading import Paths
from dpodoctor.metrics import KEY_MAP
from dpodoctor.results import RunReport
from dpodoctor.table import metric_rows
from dpodoctor.vocabulary import HEALTHY, METRIC_LABELS, REWARD_METRICS, SEED_METRICS, points, primary_split

XAxis = Literal["step", "epoch"]
X_AXES: tuple[str, ...] = ("step", "epoch")


@dataclass(frozen=True)
class TableRow:
    """One row of the comparison table: a label and one cell per run (a number, or text for the findings row)."""

    label: str
    metric: str | None  # canonical metric, None for the β and findings rows
    values: tuple[float | str, ...]
    split: str | None = None  # the split of a metric row
    marks: tuple[str, ...] = ()  # per run the verdict mark of a metric row, as the check report's table shows it


@dataclass
class Comparison:
    """Runs to compare and how: which metrics to overlay, the x axis, whether rewards are divided by β."""

    runs: list[RunReport]
    metrics: tuple[str, ...] = SEED_METRICS
    x: XAxis = "step"
    normalize_beta: bool = False
    problems: list[str] = field(default_factory=list)  # "file: reason" for inputs that could not be read

    @property
    def labels(self) -> list[str]:
        """One column name per run: its name, or its path where two runs share a name (two sweeps' ``healthy``)."""
        names = [rr.run.name for rr in self.runs]
        return [str(rr.run.path) if names.count(rr.run.name) > 1 else rr.run.name for rr in self.runs]

    def run(self, name: str) -> RunReport:
        """The run with this name (or column label)."""
        for rr, label in zip(self.runs, self.labels, strict=True):
            if name in (rr.run.name, label):
                return rr
        raise KeyError(name)

    def scale(self, rr: RunReport, metric: str) -> float:
        """What a metric's values are multiplied by: 1/β for rewards when normalising, else 1."""
        return 1.0 / rr.beta_used if self.normalize_beta and metric in REWARD_METRICS else 1.0

    def curve(self, rr: RunReport, metric: str, split: str = "train") -> pd.Series:
        """One run's finite values of a metric, scaled, indexed by the comparison's x (step or epoch)."""
        series = points(rr.run, metric, split) * self.scale(rr, metric)
        if self.x == "epoch" and len(series):
            series.index = pd.Index(steps_to_epochs(rr, series.index.to_numpy(dtype=float)), name="epoch")
        return series

    def final(self, rr: RunReport | str, metric: str, split: str | None = None) -> float:
        """Where a run's metric ended: the end level of its curve summary (the same number the check report's
        ``first → end`` shows), train split when logged there else eval unless ``split`` is given, scaled like its
        curve; NaN when not logged."""
        rr = self.run(rr) if isinstance(rr, str) else rr
        split = split or primary_split(rr.run, metric)
        curve = rr.curves.get((split, metric))
        if curve is None or not curve.logged:
            return float("nan")
        return curve.end * self.scale(rr, metric)

    @staticmethod
    def codes(rr: RunReport) -> list[str]:
        """A run's finding codes, most severe first, each once."""
        return list(dict.fromkeys(f.code for f in rr.findings))

    def axis_label(self, metric: str) -> str:
        """The y label of a metric: says when rewards were divided by β, so nobody reads them as rewards."""
        label = METRIC_LABELS.get(metric, metric)
        if self.normalize_beta and metric in REWARD_METRICS:
            return f"{label} ÷ β (log-ratio, nats)"
        return label

    def table(self) -> list[TableRow]:
        """The comparison table: the rows of the check report's table (the seed's five metrics, then the eval ones
        any run logs) with each run's end level and verdict mark, then β and the finding codes, one column per run
        in the order given."""
        per_run = [{(row.split or "train", row.metric): row for row in metric_rows(rr)} for rr in self.runs]
        keys = [("train", m) for m in HEALTHY] + [
            ("eval", m) for m in HEALTHY if any(("eval", m) in r for r in per_run)
        ]
        rows = []
        for split, m in keys:
            label = self.axis_label(m) if m in REWARD_METRICS else HEALTHY[m][0]
            label = label if split == "train" else f"eval/{label}"
            cells = [r.get((split, m)) for r in per_run]
            values = tuple(
                self.final(rr, m, split) if c is not None else float("nan")
                for rr, c in zip(self.runs, cells, strict=True)
            )
            marks = tuple(c.mark if c is not None else "–" for c in cells)
            rows.append(TableRow(label, m, values, split, marks))
        rows.append(TableRow("β", None, tuple(rr.beta_used for rr in self.runs)))
        rows.append(TableRow("findings", None, tuple(", ".join(self.codes(rr)) or "none" for rr in self.runs)))
        return rows


def steps_to_epochs(rr: RunReport, steps: np.ndarray) -> np.ndarray:
    """Epochs at the given steps, interpolated linearly from the run's logged ``epoch`` metric (anchored at step 0 =
    epoch 0; past the last logged step, extrapolated at the run's average rate). Eval points carry no epoch of their
    own in TRL's logs, so this is how they are placed on an epoch axis."""
    epoch = points(rr.run, "epoch", "train")
    if epoch.empty:
        epoch = points(rr.run, "epoch", "eval")
    if epoch.empty:
        raise DpoDoctorError(f"--x epoch: run {rr.run.name} does not log epoch (compare it with --x step)")
    xs = epoch.index.to_numpy(dtype=float)
    ys = epoch.to_numpy(dtype=float)
    if xs[0] > 0:
        xs, ys = np.concatenate([[0.0], xs]), np.concatenate([[0.0], ys])
    out = np.interp(steps, xs, ys)
    rate = ys[-1] / xs[-1] if xs[-1] > 0 else 0.0
    beyond = steps > xs[-1]
    out[beyond] = ys[-1] + (steps[beyond] - xs[-1]) * rate
    return out


def compare(
    paths: Paths,
    *,
    metrics: Sequence[str] | None = None,
    x: XAxis = "step",
    normalize_beta: bool = False,
    beta: float | None = None,
    config: Path | str | None = None,
    use_config: bool = True,
    metric_map: dict[str, str] | None = None,
) -> Comparison:
    """Check every run under ``paths`` (as :func:`dpodoctor.check` does, so the findings are the same) and line
    them up for comparison. ``metrics``: canonical names to overlay (default: the seed's five); ``x``: ``"step"``
    or ``"epoch"``; ``normalize_beta``: divide margins, chosen and rejected by each run's β. Raises
    :class:`DpoDoctorError` for an unknown metric or x axis, or a run without ``epoch`` when ``x="epoch"``."""
    if x not in X_AXES:
        raise DpoDoctorError(f"--x must be one of {', '.join(X_AXES)}, not {x!r}")
    chosen = tuple(dict.fromkeys(metrics)) if metrics else SEED_METRICS
    known = set(KEY_MAP.values())
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise DpoDoctorError(
            f"--metric: unknown metric {', '.join(unknown)} (canonical names: loss, margins, accuracy, chosen, "
            "rejected, logps_chosen, logps_rejected, grad_norm, ...)"
        )
    report = api.check(paths, beta=beta, fail_on="never", config=config, use_config=use_config, metric_map=metric_map)
    comparison = Comparison(
        runs=report.runs, metrics=chosen, x=x, normalize_beta=normalize_beta, problems=report.problems
    )
    if x == "epoch":
        for rr in comparison.runs:
            steps_to_epochs(rr, np.zeros(1))  # fail now, naming the run, rather than halfway through a figure
    return comparison
