"""One summary per logged curve, computed once, that every rule and reporter reads.

Why one module: a report that computes "the end value" in three places shows three different end values (the table
took the median of the last tenth, a rule the last third, a message the smoothed point). Here each (split, metric)
curve is summarised once: the robust start and end levels, the raw first and last logged values with their steps,
the minimum and maximum with their steps, the batch-noise scale, the Theil–Sen slope and whether the curve has
levelled off. Rules quote these numbers; reporters print them; nobody recomputes them.

Robust vs raw: per-batch DPO metrics jump ±0.2 between logged steps, so a level is the median of a few points
(:attr:`CurveSummary.start` / :attr:`CurveSummary.end`). A message that quotes such a level must say so, and one that
cites a step must quote the value logged at that step (:meth:`CurveSummary.value_at`). :meth:`CurveSummary.level_text`
and :meth:`CurveSummary.point_text` word both, so that every message says the same thing the same way.

API (stable; the reporters build on it)::

    from dpodoctor.curve import CurveSummary, summarize, summarize_run

    curves = summarize_run(run)                 # {(split, metric): CurveSummary}, every metric the run logged
    c = curves[("train", "loss")]
    c.start, c.end                              # robust levels (median of c.start_points / c.end_points points)
    c.first_step, c.first_value                 # raw first finite point; c.last_step, c.last_value the last
    c.min_step, c.min_value, c.max_step, c.max_value
    c.noise, c.slope, c.change, c.levelled, c.interval
    c.value_at(step)                            # the raw logged value at a step (None when not logged there)
    c.span_text()                               # "0.693 (step 1) → 0.41 (median of the last 40, steps 361–400)"
    c.to_dict()                                 # JSON-ready, for the per-metric table of the JSON report

A rule reads the same objects through ``Context.curve(metric, split)``; a :class:`~dpodoctor.results.RunReport`
carries them as ``curves``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from dpodoctor import stats
from dpodoctor.curveseries import Curve
from dpodoctor.model import Run

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    from dpodoctor._lazy import np, pd

# The slope and the levelling test describe a curve; they need not be exact to the last pair. Thinning long curves
# to this many points keeps the summaries of a 20k-step run with 30 metrics well under a second.
SUMMARY_TREND_POINTS = 400


def level_points(n: int) -> int:
    """How many points a robust start or end level is the median of: about a tenth of the curve, at least 3 once
    there are 6 points (a median of 3 ignores one bad batch), never more than a third, and 1 for a very short curve
    (then the level is the raw point and is quoted as such)."""
    if n <= 0:
        return 0
    return max(1, min(n // 3, max(3, round(n * 0.1))))


def fmt(x: float | None) -> str:
    """A logged value for a message: 4 significant digits, no ``-0.00``, ``nan``/``inf`` spelled as logged."""
    if x is None:
        return "n/a"
    if not np.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    text = f"{x:.4g}"
    return "0" if float(text) == 0 else text


def fixed(x: float, digits: int = 2) -> str:
    """``x`` with a fixed number of decimals, as nats are quoted (``0.22``), but never ``-0.00``."""
    if not np.isfinite(x):
        return str(x)
    text = f"{x:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


@dataclass(frozen=True)
class CurveSummary:
    """What one logged curve did, in numbers every report quotes identically.

    Levels (``start``, ``end``) are medians of ``start_points``/``end_points`` finite points; the ``first_*`` and
    ``last_*`` fields are the raw logged points. ``noise`` is the robust σ of the step-to-step batch noise;
    ``slope`` the Theil–Sen slope per step over the whole curve and ``change`` that slope times the step span;
    ``levelled`` is True when the last third moves much less than the first third did. ``interval`` is the median
    number of steps between two logged points (the logging interval), 0 for a single point.
    """

    split: str
    metric: str
    n: int
    n_nonfinite: int
    first_step: int | None
    first_value: float
    last_step: int | None
    last_value: float
    start: float
    start_points: int
    end: float
    end_points: int
    min_step: int | None
    min_value: float
    max_step: int | None
    max_value: float
    noise: float
    slope: float
    change: float
    levelled: bool
    interval: int
    # the finite points themselves (steps, values), for value_at and for reporters that draw the curve
    steps: np.ndarray
    values: np.ndarray

    @property
    def logged(self) -> bool:
        """True when the curve has at least one finite point."""
        return self.n > 0

    @property
    def start_smoothed(self) -> bool:
        return self.start_points > 1

    @property
    def end_smoothed(self) -> bool:
        return self.end_points > 1

    @property
    def end_steps(self) -> tuple[int, int] | None:
        """First and last step of the points the end level is the median of."""
        if not self.n:
            return None
        return int(self.steps[-self.end_points]), int(self.steps[-1])

    @property
    def start_steps(self) -> tuple[int, int] | None:
        if not self.n:
            return None
        return int(self.steps[0]), int(self.steps[self.start_points - 1])

    def value_at(self, step: int) -> float | None:
        """The raw value logged at ``step`` (the last finite one if repeated), or None when none was logged there."""
        idx = np.searchsorted(self.steps, step)
        if idx < len(self.steps) and int(self.steps[idx]) == int(step):
            return float(self.values[idx])
        return None

    def nearest(self, step: int) -> tuple[int, float] | None:
        """The logged point closest to ``step`` (for a message that cites a step the metric was not logged at)."""
        if not self.n:
            return None
        idx = int(np.argmin(np.abs(self.steps - step)))
        return int(self.steps[idx]), float(self.values[idx])

    def point_text(self, step: int) -> str:
        """``0.3556 at step 180``: the raw logged value at a step, as messages cite it."""
        value = self.value_at(step)
        if value is None:
            near = self.nearest(step)
            if near is None:
                return f"nothing logged at step {step}"
            return f"{fmt(near[1])} at step {near[0]}"
        return f"{fmt(value)} at step {step}"

    def level_text(self, which: str) -> str:
        """``0.41 (median of the last 40 points, steps 361–400)`` or ``0.41 at step 400``: a level, saying when it
        is a median and of what."""
        if which not in ("start", "end"):
            raise ValueError(which)
        if not self.n:
            return "not logged"
        value, k = (self.start, self.start_points) if which == "start" else (self.end, self.end_points)
        steps = self.start_steps if which == "start" else self.end_steps
        assert steps is not None
        if k <= 1:
            return f"{fmt(value)} at step {steps[0] if which == 'start' else steps[1]}"
        part = "first" if which == "start" else "last"
        return f"{fmt(value)} (median of the {part} {k} points, steps {steps[0]}–{steps[1]})"

    def span_text(self) -> str:
        """Raw first and last point and the robust end: ``0.693 (step 1) → 0.41 (median of the last 40 …)``."""
        if not self.n:
            return "not logged"
        first = f"{fmt(self.first_value)} (step {self.first_step})"
        return f"{first} → {self.level_text('end')}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no arrays): the per-metric table of a JSON report."""
        return curve_documents([self])[0]


def curve_documents(curves: list[CurveSummary]) -> list[dict[str, Any]]:
    """:meth:`CurveSummary.to_dict` of each curve, equal dict for dict, with the numbers of all of them rounded by
    one ``%`` formatting and one ``map(float)`` (a run's report entry holds two dozen curves of nine numbers).

    The rounded numbers are kept on each summary (they are fixed, as the summary is): the report's per-metric table
    quotes the same curves again (:meth:`CurveSummary.to_dict`), and reads them from there."""
    fresh = [c for c in curves if "_json_numbers" not in c.__dict__]
    if fresh:
        numbers = [
            x
            for c in fresh
            for x in (c.first_value, c.last_value, c.start, c.end, c.min_value, c.max_value, c.noise, c.slope, c.change)
        ]
        rounded = _json_numbers(tuple(numbers))
        for i, c in enumerate(fresh):
            c.__dict__["_json_numbers"] = tuple(rounded[9 * i : 9 * i + 9])
    out = []
    for c in curves:
        first, last, start, end, low, high, noise, slope, change = c.__dict__["_json_numbers"]
        out.append(
            {
                "split": c.split,
                "metric": c.metric,
                "points": c.n,
                "nonfinite": c.n_nonfinite,
                "first": {"step": c.first_step, "value": first},
                "last": {"step": c.last_step, "value": last},
                "start": {"value": start, "points": c.start_points},
                "end": {"value": end, "points": c.end_points},
                "min": {"step": c.min_step, "value": low},
                "max": {"step": c.max_step, "value": high},
                "noise": noise,
                "slope": slope,
                "change": change,
                "levelled": c.levelled,
                "interval": c.interval,
            }
        )
    return out


def _json_number(x: float) -> float | None:
    """A value as the JSON report prints it: 6 significant digits, None for NaN/inf. ``math.isfinite``, not
    numpy's: this runs for 14 fields of every curve of every run (a ufunc call on a Python float costs ~2 µs)."""
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _json_numbers(values: tuple[float, ...]) -> list[float | None]:
    """:func:`_json_number` of each value, with one ``%`` formatting for all of them and one ``map(float)``: the
    per-value calls were most of encoding a short run's report entry (600 runs x 35 curves x 9 numbers)."""
    text = ("%.6g " * len(values)) % values
    if "n" in text:  # "nan", "inf": a finite number's %g has digits, ".", "e", "+" and "-" only
        return [None if word in _NOT_FINITE else float(word) for word in text.split()]
    return list(map(float, text.split()))


_NOT_FINITE: Final = frozenset({"nan", "-nan", "inf", "-inf"})  # what %g writes for NaN and ±inf


def _thin(steps: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    if len(values) <= max_points:
        return steps, values
    # stats' cached positions (the same expression, built once per length): a long run's curves, their first and
    # last thirds share their lengths, and each build cost ~25 µs, three times a curve
    keep = stats._thinned_positions(len(values), max_points)
    return steps[keep], values[keep]


def _slope(steps: np.ndarray, values: np.ndarray) -> float:
    if len(values) < 3 or float(np.ptp(values)) == 0.0:
        return 0.0
    x, y = _thin(steps, values, SUMMARY_TREND_POINTS)
    value = stats.theil_sen_slope(x.astype(float), y.astype(float))
    return 0.0 if not np.isfinite(value) else float(value)


def levelled_off(s: pd.Series) -> bool:
    """True when the last third of a curve moves much less than its first third did (or not significantly at all):
    the curve has flattened. Needs 9 points; shorter curves are never called levelled."""
    return _levelled_off(s.index.to_numpy(), s.to_numpy(dtype=float))


def _levelled_off(steps: np.ndarray, values: np.ndarray, noise: float | None = None) -> bool:
    """:func:`levelled_off` of a curve's steps and finite values (``noise``: its noise σ when already known)."""
    third = len(values) // 3
    if third < 3:
        return False
    early = abs(_slope(steps[:third], values[:third]))
    late_steps = steps[-third:]
    late_slope = abs(_slope(late_steps, values[-third:]))
    if early == 0:
        return late_slope == 0
    if late_slope < 0.3 * early:
        return True
    # a late slope that the batch noise could produce over the late span is no slope
    span = float(late_steps[-1] - late_steps[0]) or 1.0
    return late_slope * span < (stats.noise_sigma_of(values) if noise is None else noise)


def summarize(series: pd.Series, split: str = "train", metric: str | None = None) -> CurveSummary:
    """Summarise one curve (values indexed by step; NaN/inf are counted, not summarised).

    Works on the series' arrays, not on pandas objects: a run has dozens of curves and each pandas operation costs
    tens of µs of overhead, which made these summaries most of a short run's diagnosis."""
    raw_steps = series.index.to_numpy()
    raw_values = series.to_numpy(dtype=float)
    if len(raw_steps) > 1 and not bool((raw_steps[1:] >= raw_steps[:-1]).all()):
        ordered = series.sort_index()
        raw_steps, raw_values = ordered.index.to_numpy(), ordered.to_numpy(dtype=float)
    return summarize_arrays(raw_steps, raw_values, split, metric if metric is not None else str(series.name))


def summarize_arrays(raw_steps: np.ndarray, raw_values: np.ndarray, split: str, name: str) -> CurveSummary:
    """:func:`summarize` of a curve's steps and values, already in step order (NaN/inf counted, not summarised)."""
    return summarize_many([(split, name, raw_steps, raw_values)])[0]


def _finite_points(raw_steps: np.ndarray, raw_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A curve's finite points, one per step (the last one logged at a repeated step), and how many were not
    finite."""
    raw_values = raw_values.astype(float, copy=False)
    keep = np.isfinite(raw_values)
    if keep.all():  # the usual case: the input itself, no copy (a 600k-point curve is ~10 MB a copy)
        n_nonfinite, steps, values = 0, raw_steps, raw_values
    else:
        n_nonfinite = int(len(raw_values) - np.count_nonzero(keep))
        steps, values = raw_steps[keep], raw_values[keep]
    if len(steps) > 1:
        new_step = steps[1:] != steps[:-1]
        if not new_step.all():
            last_of_step = np.append(new_step, True)
            steps, values = steps[last_of_step], values[last_of_step]
    # read-only views: a summary may share memory with its input (the run's frame), so nothing may write through it
    steps, values = steps.astype(np.int64, copy=False).view(), values.view()
    steps.flags.writeable = False
    values.flags.writeable = False
    return steps, values, n_nonfinite


# Curves up to this many points that share their steps are summarised together, one numpy expression per statistic
# for all of them (every pair slope in one matrix): a short run's two dozen curves otherwise pay numpy's call
# overhead two dozen times over. Longer curves cost their work, not their calls, and are summarised one by one.
_BATCH_MAX_POINTS = 256


def summarize_many(
    curves: list[tuple[str, str, np.ndarray, np.ndarray]],
    smoothed: dict[tuple[str, str], tuple[int, np.ndarray]] | None = None,
) -> list[CurveSummary]:
    """:func:`summarize_arrays` of each (split, name, steps, values) curve, to the bit, in the same order.

    ``smoothed``, when given, receives the rolling median each curve longer than 256 points was smoothed with for
    its noise scale, as ``(split, name) -> (window, rolling median of its finite points)``: the rules' context of
    the run (:class:`dpodoctor.rules.Context`) passes its own dict so a rule that smooths the same curve with the
    same window reuses it, and drops it with the run (a summary does not keep it: a report keeps its summaries).

    Why together: the slope, the levelling test and the noise scale are the same few numpy expressions for every
    curve, and curves logged at the same steps (every train metric of a run) can share each expression: one pair
    matrix, one partition, one sort of the rolling windows, row by row. Every row gets exactly the numbers its own
    summary would (the same order statistics, sums and divisions; :func:`~dpodoctor.stats.theil_sen_slopes`).
    """
    points = [_finite_points(steps, values) for _, _, steps, values in curves]
    shared: dict[bytes, list[int]] = {}
    for index, (steps, _, _) in enumerate(points):
        if 1 <= len(steps) <= _BATCH_MAX_POINTS:
            shared.setdefault(steps.tobytes(), []).append(index)
    out: list[CurveSummary | None] = [None] * len(curves)
    # the logging interval of the long curves' steps: a run's curves are logged at the same steps, and a 10k-step
    # median of differences costs ~0.1 ms a curve where comparing the steps with the previous curve's costs ~5 µs
    # (an exact comparison, within this call: nothing is kept once the run is summarised)
    known_steps: np.ndarray | None = None
    known_interval = 0
    for members in shared.values():
        steps = points[members[0]][0]
        rows = np.stack([points[i][1] for i in members])
        row_curves = [(curves[i][0], curves[i][1], points[i][1], points[i][2]) for i in members]
        for index, summary in zip(members, _summaries_of_rows(steps, rows, row_curves), strict=True):
            out[index] = summary
    for index, ((split, name, _, raw_values), (steps, values, n_nonfinite)) in enumerate(
        zip(curves, points, strict=True)
    ):
        if out[index] is not None:
            continue
        judged = None
        if len(values):
            n = len(values)
            noise = 0.0
            if n >= 3:  # stats.noise_sigma_of(values), its rolling median kept for the caller
                window = stats.window_for(n)
                rolling = stats.rolling_median(values, window)
                noise = stats.noise_sigma_around(values, rolling)
                if smoothed is not None:
                    smoothed[(split, name)] = (window, rolling)
            judged = (_slope(steps, values), noise, _levelled_off(steps, values, noise if n >= 3 else None))
        interval = None
        if len(steps) > 1:
            if known_steps is None or not np.array_equal(steps, known_steps):
                known_steps, known_interval = steps, int(stats.median(np.diff(steps)))
            interval = known_interval
        out[index] = _summary(split, name, steps, values, n_nonfinite, len(raw_values), judged, interval)
    return out  # type: ignore[return-value]  # every index was filled above


def _row_medians(block: np.ndarray) -> list[float]:
    """:func:`stats.median` of each row of a matrix of finite values (sorted rows, the middle value or the two middle
    ones' sum over 2: the same floats), one numpy sort for all rows instead of a sorted() per row."""
    k = block.shape[1]
    ordered = np.sort(block, axis=1)
    middle = ordered[:, k // 2] if k % 2 else (ordered[:, k // 2 - 1] + ordered[:, k // 2]) / 2
    return middle.tolist()


def _summaries_of_rows(
    steps: np.ndarray, rows: np.ndarray, row_curves: list[tuple[str, str, np.ndarray, int]]
) -> list[CurveSummary]:
    """:func:`_summary` of each row of ``rows`` (finite curves of 1 to 256 points logged at ``steps``; ``row_curves``:
    each row's split, name, values and non-finite count), to the bit: the levels, extremes and the
    logging interval are one numpy expression for all rows instead of a dozen calls per curve."""
    n = len(steps)
    k = level_points(n)
    # fewer than 3 points carry no slope, noise or levelling (what _slope, noise_sigma_of and _levelled_off say)
    thirds: list[tuple[float, float]] = []
    judged = _trend_rows(steps, rows, thirds) if n >= 3 else [(0.0, 0.0, False)] * len(rows)
    starts, ends = _row_medians(rows[:, :k]), _row_medians(rows[:, -k:])
    imins, imaxs = rows.argmin(axis=1).tolist(), rows.argmax(axis=1).tolist()  # first occurrence, as list.index
    step_list = steps.tolist()
    mins, maxs = rows[np.arange(len(rows)), imins].tolist(), rows[np.arange(len(rows)), imaxs].tolist()
    firsts, lasts = rows[:, 0].tolist(), rows[:, -1].tolist()
    first_step, last_step = step_list[0], step_list[-1]
    span = float(steps[-1] - steps[0])
    interval = int(stats.median(np.diff(steps))) if n > 1 else 0
    out = []
    for r, (split, name, values, n_nonfinite) in enumerate(row_curves):
        slope, noise, levelled = judged[r]
        summary = object.__new__(CurveSummary)  # a frozen dataclass's __init__ sets 23 fields one by one (~3 µs)
        summary.__dict__.update(
            split=split,
            metric=name,
            n=n,
            n_nonfinite=n_nonfinite,
            first_step=first_step,
            first_value=firsts[r],
            last_step=last_step,
            last_value=lasts[r],
            start=starts[r],
            start_points=k,
            end=ends[r],
            end_points=k,
            min_step=step_list[imins[r]],
            min_value=mins[r],
            max_step=step_list[imaxs[r]],
            max_value=maxs[r],
            noise=noise,
            slope=slope,
            change=slope * span,
            levelled=levelled,
            interval=interval,
            steps=steps,
            values=values,
        )
        # not a field (no report shows it): the Theil–Sen slopes of the first and last third, for trend_slopes
        summary.__dict__["_third_slopes"] = thirds[r] if thirds else None
        out.append(summary)
    return out


def _trend_rows(
    steps: np.ndarray, rows: np.ndarray, thirds: list[tuple[float, float]] | None = None
) -> list[tuple[float, float, bool]]:
    """(slope, noise, levelled) of each row of ``rows``, curves of 3 to 256 finite points logged at ``steps``: what
    :func:`_slope`, :func:`stats.noise_sigma_of` and :func:`_levelled_off` give each row alone. ``thirds``, when
    given and the rows have 9 points or more, receives each row's :func:`_slope` of its first and last third (what
    the levelling test compared)."""
    m, n = rows.shape
    flat = np.ptp(rows, axis=1) == 0.0  # a constant curve has slope 0, as _slope says
    slopes = _row_slopes(steps, rows, flat)
    noise = stats.noise_sigmas_of(rows)
    third = n // 3
    if third < 3:
        return [(float(slopes[r]), float(noise[r]), False) for r in range(m)]
    early_signed = _row_slopes(steps[:third], rows[:, :third], np.ptp(rows[:, :third], axis=1) == 0.0)
    late_steps = steps[-third:]
    late_signed = _row_slopes(late_steps, rows[:, -third:], np.ptp(rows[:, -third:], axis=1) == 0.0)
    early, late = np.abs(early_signed), np.abs(late_signed)
    span = float(late_steps[-1] - late_steps[0]) or 1.0
    out = []
    for r in range(m):
        e, lt, sigma = float(early[r]), float(late[r]), float(noise[r])
        levelled = (lt == 0) if e == 0 else (lt < 0.3 * e or lt * span < sigma)
        out.append((float(slopes[r]), sigma, levelled))
    if thirds is not None:
        thirds.extend(zip(early_signed.tolist(), late_signed.tolist(), strict=True))
    return out


def _row_slopes(steps: np.ndarray, rows: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """:func:`_slope` of each row (3 to 256 points, no thinning needed): 0 for a flat row or a non-finite slope."""
    slopes = stats.theil_sen_slopes(steps.astype(float), rows)
    slopes[flat | ~np.isfinite(slopes)] = 0.0
    return slopes


def _summary(
    split: str,
    name: str,
    steps: np.ndarray,
    values: np.ndarray,
    n_nonfinite: int,
    n_raw: int,
    judged: tuple[float, float, bool] | None,
    interval: int | None = None,
) -> CurveSummary:
    """The summary of one curve's finite points, with its (slope, noise, levelled) already judged (and its logging
    interval, ``int(stats.median(np.diff(steps)))``, when the caller already knows it)."""
    n = len(values)
    if n == 0 or judged is None:
        nan = float("nan")
        return CurveSummary(
            split, name, 0, n_raw, None, nan, None, nan, nan, 0, nan, 0, None, nan, None, nan, 0.0, 0.0,
            0.0, False, 0, steps, values,
        )  # fmt: skip
    slope, noise, levelled = judged
    k = level_points(n)
    if n <= _BATCH_MAX_POINTS:  # a short curve: Python's min/max/index (first occurrence, as argmin) beat numpy's calls
        listed = values.tolist()
        imin, imax = listed.index(min(listed)), listed.index(max(listed))
    else:
        imin, imax = int(np.argmin(values)), int(np.argmax(values))
    return CurveSummary(
        split=split,
        metric=name,
        n=n,
        n_nonfinite=n_nonfinite,
        first_step=int(steps[0]),
        first_value=float(values[0]),
        last_step=int(steps[-1]),
        last_value=float(values[-1]),
        start=stats.median(values[:k]),
        start_points=k,
        end=stats.median(values[-k:]),
        end_points=k,
        min_step=int(steps[imin]),
        min_value=float(values[imin]),
        max_step=int(steps[imax]),
        max_value=float(values[imax]),
        noise=noise,
        slope=slope,
        change=slope * float(steps[-1] - steps[0]),
        levelled=levelled,
        interval=(interval if interval is not None else int(stats.median(np.diff(steps)))) if n > 1 else 0,
        steps=steps,
        values=values,
    )


def summarize_run(
    run: Run, smoothed: dict[tuple[str, str], tuple[int, np.ndarray]] | None = None
) -> dict[tuple[str, str], CurveSummary]:
    """Every (split, metric) curve of a run, summarised once (together: :func:`summarize_many`; ``smoothed``: its)."""
    keys = run.metrics
    curves = [(split, metric, *run.arrays(metric, split)) for split, metric in keys]  # type: ignore[arg-type]
    return dict(zip(keys, summarize_many(curves, smoothed), strict=True))


# Up to this many points a trend (stats.trend: Theil–Sen slope and Kendall's tau) is taken from one matrix of pair
# differences: the short curves of a short run, where numpy's call overhead, not the pairs, was the cost.
_SHORT_TREND_MAX_POINTS = 256


@functools.lru_cache(maxsize=16)
def _upper_pairs(n: int) -> np.ndarray:
    """Flat indices ``i * n + j`` of every pair i < j of n points into an n×n matrix (cached: a run's slices repeat
    their lengths)."""
    i, j = np.triu_indices(n, 1)
    return i * n + j


def known_slope(curve: CurveSummary, part: str) -> float | None:
    """The Theil–Sen slope the summary already took of the whole curve (``part="all"``), of its first third
    (``"early"``: the first ``n // 3`` points) or of its last third (``"late"``), when it is the one :func:`trend`
    would take of the same points; None when it is not known exactly (a long curve the summary thinned, a curve
    summarised alone, a slope the summary set to 0 for a flat or non-finite one)."""
    if curve.n > _SHORT_TREND_MAX_POINTS:
        return None
    if part == "all":
        slope: float | None = curve.slope
    else:
        thirds = curve.__dict__.get("_third_slopes")
        slope = None if thirds is None else thirds[0 if part == "early" else 1]
    return slope if slope and math.isfinite(slope) else None


def trend(series: Curve | pd.Series, slope: float | None = None) -> stats.Trend:
    """:func:`stats.trend` of a curve, to the bit, cheaper on a short curve logged at increasing steps.

    Why: the rules take half a dozen trends of 30–100-point curves per run, and each costs ~120 µs in a dozen numpy
    calls (the Theil–Sen pairs, then Kendall's ranking, tie counts and inversion count on their own). Both read the
    same pair differences: with strictly increasing steps, a pair is discordant exactly when its value difference is
    negative, and tied in the values exactly when it is zero. So one matrix of differences gives the slope (the
    median of the pair slopes: the same pairs, subtraction and division, and a median is one number whatever finds
    it) and the integer counts Kendall's tau and its p-value are computed from, with the same expressions as
    :func:`stats.kendall_tau` when nothing is tied. Anything else (ties in the values, a repeated step, a long or
    flat curve) is :func:`stats.trend` itself.

    ``slope``: the Theil–Sen slope of these very points when already known (:func:`known_slope`): then only
    Kendall's counts are taken.
    """
    steps, y = stats.finite_arrays(series)
    n = len(y)
    if n < 3 or n > _SHORT_TREND_MAX_POINTS or not bool((steps[1:] > steps[:-1]).all()):
        return stats.trend(series)
    x = steps.astype(float)
    pairs = _upper_pairs(n)
    with np.errstate(over="ignore"):
        dy = (y[None, :] - y[:, None]).ravel().take(pairs)  # [i, j] = y[j] - y[i], every pair i < j in row order
    discordant = int(np.count_nonzero(dy < 0))
    total = len(dy)
    if total - discordant - int(np.count_nonzero(dy > 0)):  # a tie in the values, or a flat curve: the general path
        return stats.trend(series)
    if slope is None:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            slopes = dy / (x[None, :] - x[:, None]).ravel().take(pairs)
        k = total // 2
        if total % 2:
            slope = float(np.partition(slopes, k)[k])
        else:
            middle = np.partition(slopes, (k - 1, k))
            slope = (float(middle[k - 1]) + float(middle[k])) / 2
        if math.isnan(slope) or bool(np.isnan(slopes).any()):
            slope = float("nan")
    # Kendall's tau-b with no tie (stats.kendall_tau's expressions with every tie count 0)
    con_minus_dis = total - 2 * discordant
    tau = float(np.float64(con_minus_dis) / np.sqrt(total) / np.sqrt(total))
    tau = min(1.0, max(-1.0, tau))
    fewer = min(discordant, total - discordant)
    if n <= 33 or fewer <= 1:
        p = stats._kendall_exact_p(n, fewer)
    else:
        m = n * (n - 1.0)
        z = con_minus_dis / math.sqrt(m * (2 * n + 5) / 18)
        p = math.erfc(abs(z) / math.sqrt(2.0))
    tau = 0.0 if math.isnan(tau) else tau
    p = 1.0 if math.isnan(p) else p
    return stats.Trend(slope, slope * float(x[-1] - x[0]), tau, p, n)
