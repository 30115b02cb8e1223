"""Robust statistics for noisy per-batch curves.

Why robust: with ``logging_steps=1`` a DPO metric jumps ±0.2 from one step to the next, so no rule may judge a
single point. Everything here works on medians, MAD and Theil–Sen slopes, which one bad batch cannot move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar

from dpodoctor.curveseries import Curve

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    from dpodoctor._lazy import np, pd

# What the curve functions below take: the rules' :class:`~dpodoctor.curveseries.Curve` (pandas-free), or a pandas
# Series indexed by step (the plots' points). Functions that return a curve return the type they were given.
CurveLike = TypeVar("CurveLike", Curve, "pd.Series")


def curve_arrays(series: Curve | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Steps and float values of a Curve or a Series indexed by step (read without pandas for a Curve)."""
    if isinstance(series, Curve):
        return series.steps, series.values.astype(float, copy=False)
    return series.index.to_numpy(), series.to_numpy(dtype=float)


def finite_arrays(series: Curve | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """:func:`curve_arrays` of the finite points (NaN/±inf dropped), the arrays themselves when all are finite."""
    steps, values = curve_arrays(series)
    keep = np.isfinite(values)
    return (steps, values) if keep.all() else (steps[keep], values[keep])


MAD_TO_SIGMA = 1.4826  # scales the median absolute deviation to σ for Gaussian noise
# Theil–Sen looks at every pair of points: n² work and memory (scipy builds n×n matrices: 3 GB and 30 s for the four
# trends of one 20k-step run). Longer series are thinned to this many evenly spaced points first; up to it the slope
# is exactly scipy.stats.theilslopes'. 500 points (125k pairs, ~1 ms) rather than 2,000 (2M pairs, ~11 ms even with
# the bracketed median): a long run's rules take about six trends, and 500 evenly spaced points of a noisy curve give
# the same verdicts (the 159 goldens and the accuracy scoreboard unchanged when it was lowered).
THEIL_SEN_MAX_POINTS = 500


# Up to this many values a median is taken in plain Python (a sorted list): np.median costs ~25 µs of call overhead
# on any array, and a run's rules and curve summaries take hundreds of medians of a few dozen points.
_PYTHON_MEDIAN_MAX = 256


def median(values: np.ndarray | list[float]) -> float:
    """``float(np.median(values))``, to the bit, at a fraction of its cost on the short arrays the rules take.

    np.median takes the middle order statistic, or for an even count the mean of the two middle ones, which numpy
    computes as their sum divided by 2: the same IEEE operations as Python's ``(a + b) / 2`` on the same floats. A
    NaN anywhere gives NaN and an empty array NaN, as np.median gives (without its warning).
    """
    if not isinstance(values, np.ndarray):
        values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return float("nan")
    if n > _PYTHON_MEDIAN_MAX:
        return _median_of_slopes(np.asarray(values, dtype=float))
    ordered = sorted(values.tolist())
    # A NaN makes the sum NaN (so does +inf beside -inf: then look closer); sorted() would put a NaN anywhere.
    if values.dtype.kind == "f" and math.isnan(sum(ordered)) and any(v != v for v in ordered):
        return float("nan")
    k = n // 2
    return float(ordered[k]) if n % 2 else (float(ordered[k - 1]) + float(ordered[k])) / 2


def finite(series: CurveLike) -> CurveLike:
    """The series without NaN/±inf (those are DPO001's business, not a trend's).

    A series with nothing to drop is returned as it is (a boolean mask over it would copy it, at a few tens of µs
    per call and hundreds of calls per run); callers never modify what they get."""
    if isinstance(series, Curve):
        return series.finite()
    values = series.to_numpy(dtype=float)
    keep = np.isfinite(values)
    return series if keep.all() else series[keep]


def window_for(n: int, fraction: float = 0.1, minimum: int = 3, maximum: int = 101) -> int:
    """An odd rolling-window length of about ``fraction`` of the series, clamped."""
    w = max(minimum, min(maximum, round(n * fraction)))
    return w if w % 2 == 1 else w + 1


def smooth(series: CurveLike, window: int | None = None) -> CurveLike:
    """Centred rolling median: keeps level shifts sharp but ignores single noisy batches."""
    s = finite(series)
    if len(s) == 0:
        return s
    w = window or window_for(len(s))
    if isinstance(s, Curve):
        return Curve(s.steps, rolling_median(s.values, w))
    return pd.Series(rolling_median(s.to_numpy(dtype=float), w), index=s.index, name=s.name)


def noise_sigma(series: Curve | pd.Series, window: int | None = None) -> float:
    """Robust σ of the batch noise: MAD of the residuals around the smoothed curve."""
    values = finite_arrays(series)[1]
    if len(values) < 3:
        return 0.0
    return noise_sigma_of(values, window)


def noise_sigma_of(values: np.ndarray, window: int | None = None) -> float:
    """:func:`noise_sigma` of finite values in step order (the array the curve summaries already hold)."""
    if len(values) < 3:
        return 0.0
    return noise_sigma_around(values, rolling_median(values, window or window_for(len(values))))


def noise_sigma_around(values: np.ndarray, smoothed: np.ndarray) -> float:
    """:func:`noise_sigma_of` of finite values (at least 3) whose rolling median ``smoothed`` is already known.

    Why apart: a diagnosis smooths the same curve for a rule and takes its noise for another; the rolling median is
    most of the cost (~0.5 ms at 10k points), so the rules' context computes it once per run and hands it here.
    """
    resid = values - smoothed
    return float(MAD_TO_SIGMA * median(np.abs(resid - median(resid))))


def noise_sigmas_of(rows: np.ndarray) -> np.ndarray:
    """:func:`noise_sigma_of` of each row of a matrix (curves of the same length, at least 3 points), to the bit.

    Why: a run's curves logged at the same steps are summarised together (:func:`dpodoctor.curve.summarize_many`);
    the rolling median and the two medians are then one expression each for all of them.
    """
    n = rows.shape[1]
    window = window_for(n)
    if window % 2 == 0:
        return np.array([noise_sigma_of(row) for row in rows])
    resid = rows - rolling_medians(rows, window)
    # np.median along a row takes the same order statistics and the same (a + b) / 2 as np.median of the row
    centred = np.abs(resid - np.median(resid, axis=1)[:, None])
    return MAD_TO_SIGMA * np.median(centred, axis=1)


def rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    """pandas' ``rolling(window, center=True, min_periods=1).median()`` of finite values, to the bit.

    Why not pandas: a Series and its rolling object cost ~100 µs of overhead per call, a run's rules smooth dozens
    of curves, and a diagnosis imports no pandas. :mod:`dpodoctor.rolling` computes it (bottleneck's double heap,
    ties and signed zeros as pandas orders them) for short and long curves alike: a numpy sort of every window was
    ~10x slower on 1,000 points and put ``-0.0`` where pandas puts ``0.0``.
    """
    if len(values) == 0:
        return values.astype(float)
    from dpodoctor.rolling import centred_median  # bottleneck imported on first use (~5 ms)

    return centred_median(values, window)


def trailing_median(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """pandas' ``rolling(window, min_periods=min_periods).median()`` (the window ending at each point) of finite
    values, to the bit (:func:`dpodoctor.rolling.trailing_median`, as :func:`rolling_median`). NaN where the window
    holds fewer than ``min_periods`` points, as pandas gives."""
    if len(values) == 0:
        return values.astype(float)
    from dpodoctor.rolling import trailing_median as rolling_trailing_median

    return rolling_trailing_median(values, window, min_periods)


def rolling_medians(rows: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_median` of each row of a matrix (curves of the same length), to the bit: one bottleneck call
    along the rows."""
    from dpodoctor.rolling import centred_median

    return centred_median(rows, window)


def late(series: Curve, skip: float = 0.1) -> Curve:
    """The part of the curve after the first ``skip`` fraction of its step span (warm-up excluded)."""
    s = finite(series)
    if len(s) == 0:
        return s
    steps = s.steps
    first, last = float(steps[0]), float(steps[-1])
    cut = first + skip * (last - first)
    if len(steps) < 2 or bool((steps[1:] >= steps[:-1]).all()):  # the usual case: the late part is a tail
        return s[int(np.searchsorted(steps, cut, side="left")) :]
    return s[steps >= cut]


def head(series: Curve | pd.Series, points: int = 3) -> float:
    """The robust starting level: median of the first few finite points."""
    values = finite_arrays(series)[1]
    return median(values[:points]) if len(values) else float("nan")


def tail_level(series: Curve | pd.Series, fraction: float = 1 / 3) -> float:
    """The robust end level: median of the last ``fraction`` of the finite points."""
    values = finite_arrays(series)[1]
    if len(values) == 0:
        return float("nan")
    k = max(1, round(len(values) * fraction))
    return median(values[-k:])


@dataclass(frozen=True)
class Trend:
    """A monotone trend estimate: Theil–Sen slope per step, its total over the span, and Kendall's tau test."""

    slope: float
    change: float
    tau: float
    p_value: float
    n: int

    def significant(self, alpha: float = 0.01) -> bool:
        return self.n >= 8 and self.p_value < alpha


def trend(series: Curve | pd.Series) -> Trend:
    """Theil–Sen slope and Mann–Kendall test (Kendall's tau of value against step) of the finite points."""
    steps, y = finite_arrays(series)
    n = len(y)
    if n < 3 or float(np.ptp(y)) == 0.0:
        return Trend(0.0, 0.0, 0.0, 1.0, n)
    x = steps.astype(float)
    slope = theil_sen_slope(x, y)
    tau, p = kendall_tau(x, y)
    tau = 0.0 if np.isnan(tau) else tau
    p = 1.0 if np.isnan(p) else p
    return Trend(slope, slope * float(x[-1] - x[0]), tau, p, n)


def theil_sen_slope(x: np.ndarray, y: np.ndarray, max_points: int = THEIL_SEN_MAX_POINTS) -> float:
    """The median of the slopes of all point pairs with distinct x: scipy.stats.theilslopes' ``slope``, to the bit
    (same pairs, same subtraction and division, same median), without its n×n matrices.

    A series longer than ``max_points`` is thinned to that many evenly spaced points (the first and last kept):
    the estimate of a 20k-step curve from 500 of its points is as robust, and costs 0.06% of the pairs.
    """
    n = len(x)
    if n > max_points:
        keep = _thinned_positions(n, max_points)
        x, y, n = x[keep], y[keep], len(keep)
    if n >= _FOLD_MIN_POINTS:
        folded = _folded_median_slope(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        if folded is not None:
            return folded
    # Blocks of rows: the pairs inside a block (its upper triangle) and from the block to every later point (a
    # rectangle), each one vectorised expression; far less memory than scipy's n×n matrices and no per-row loop.
    # Pairs with the same x have no slope and are left out, as in scipy. Order does not matter to a median.
    if n <= _ONE_BLOCK:  # every pair in one vectorised expression (most curves of a short run)
        dx, nonzero = _step_pair_differences(np.asarray(x, dtype=float).tobytes())
        dy = _pair_differences(y) if nonzero is None else _pair_differences(y)[nonzero]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _median_of_slopes(dy / dx, scratch=True)
    distinct = len(np.unique(x)) == n
    slopes = np.empty(n * (n - 1) // 2)
    pos = 0
    block = 64
    tri_i, tri_j = np.triu_indices(block, 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i0 in range(0, n, block):
            i1 = min(n, i0 + block)
            if i1 - i0 < block:
                tri_i, tri_j = np.triu_indices(i1 - i0, 1)
            pieces = [
                (x[i0 + tri_j] - x[i0 + tri_i], y[i0 + tri_j] - y[i0 + tri_i]),
                ((x[None, i1:] - x[i0:i1, None]).ravel(), (y[None, i1:] - y[i0:i1, None]).ravel()),
            ]
            for dx, dy in pieces:
                if not distinct:
                    keep = dx != 0
                    dx, dy = dx[keep], dy[keep]
                np.divide(dy, dx, out=slopes[pos : pos + len(dx)])
                pos += len(dx)
    return _median_of_slopes(slopes[:pos], scratch=True)


_ONE_BLOCK = 512  # up to here every pair index is kept (2 MB at 512 points): one fancy-indexed expression


@lru_cache(maxsize=32)
def _thinned_positions(n: int, max_points: int) -> np.ndarray:
    """The ``max_points`` evenly spaced positions (first and last kept) a curve of ``n`` points is thinned to.
    Cached, read-only: a run's long curves share their lengths, and these cost ~25 µs a call to build."""
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    keep.flags.writeable = False
    return keep


# From this many points on, the pair slopes are laid out by lag (:func:`_folded_slopes`) rather than gathered from the
# n×n matrix (measured: equal at ~150 points, 2x faster at 400 and 500; slower at 100).
_FOLD_MIN_POINTS = 160


def _folded_median_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    """:func:`theil_sen_slope` of distinct steps from the slopes laid out by lag, or None when this way cannot
    promise scipy's bits: repeated steps (their pairs are left out), or a median that is zero.

    Why a zero is left to the pair-order path: half the pairs come out here as (y_i - y_j) / (x_i - x_j) with i
    before j, the same float as (y_j - y_i) / (x_j - x_i) (IEEE subtraction and division round symmetrically)
    except for a zero, whose sign flips with the order: equal values give +0.0 over a positive step and -0.0 over a
    negative one. Values equal to the bit otherwise, the order statistics of the same multiset are the same floats.
    """
    dx = _folded_step_differences(x.tobytes())
    if dx is None:
        return None
    slopes = _folded_slopes(y, dx)
    m = len(slopes)
    # NaN slopes come from a NaN or infinite y, or from differences that overflow (ptp is the largest of them)
    if not (np.isfinite(y).all() and math.isfinite(float(np.ptp(y)))) and np.isnan(slopes).any():
        return float("nan")
    k = m // 2
    lower, upper = _middle_order_statistics(slopes, k - 1 if m % 2 == 0 else k, k, scratch=True)
    value = upper if m % 2 else (lower + upper) / 2
    return None if value == 0 else value


def _folded_slopes(y: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """The slope of every pair of points, laid out by lag (:func:`_folded_differences`): the values' differences
    divided by the steps' differences laid out the same way (:func:`_folded_step_differences`)."""
    slopes = _folded_differences(y)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(slopes, dx, out=slopes)
    return slopes


@lru_cache(maxsize=8)
def _folded_step_differences(steps: bytes) -> np.ndarray | None:
    """The steps' (float64 bytes) pair differences laid out as :func:`_folded_slopes` lays out the values', or None
    when two steps are equal (those pairs have no slope) or a difference is not finite. Cached and read-only, as
    :func:`_step_pair_differences`: a run's long curves are thinned to the same steps."""
    x = np.frombuffer(steps, dtype=float)
    dx = _folded_differences(x)
    if not bool(np.isfinite(dx).all()) or not bool((dx != 0).all()):
        return None
    dx.flags.writeable = False
    return dx


def _folded_differences(values: np.ndarray) -> np.ndarray:
    """``values[j] - values[i]`` of every pair of points, laid out by lag: row ``d - 1`` holds point ``i`` paired with
    point ``(i + d) mod n`` for the lags d = 1 … (n - 1) // 2 (each row covers the lags d and n - d once), then for an
    even n the n / 2 pairs of lag n / 2. Every pair once, in one order or the other, with no pair index: a broadcast
    subtraction over a sliding view of the values repeated twice (the n×n matrix and its gather cost twice as much).
    """
    n = len(values)
    half = (n - 1) // 2
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.empty(n * (n - 1) // 2)
        twice = np.concatenate([values, values]).astype(float, copy=False)
        # rows[d - 1] = twice[d : d + n]: a strided view, built directly (sliding_window_view costs ~10 µs a call)
        rows = np.ndarray((half, n), dtype=float, buffer=twice, offset=twice.itemsize, strides=(twice.itemsize,) * 2)
        np.subtract(rows, values, out=out[: half * n].reshape(half, n))
        if n % 2 == 0:
            np.subtract(values[n // 2 :], values[: n // 2], out=out[half * n :])
    return out


@lru_cache(maxsize=8)
def _step_pair_differences(steps: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """The pair differences of the steps (float64 bytes) with no zero among them, and which pairs those are (None:
    all of them): :func:`_pair_differences` of ``x`` as theil_sen_slope uses it, kept for the next curve.

    Why cached: a run's curves logged at the same steps share them (every train metric of a long run is thinned to
    the same 500 steps, its first and last thirds too), and they were a quarter of each 500-point Theil-Sen (the
    other differences are the values'). Read-only, since every later call with the same steps gets the same arrays;
    keyed by the bytes, so equal steps hit whichever array holds them. At most 8 kept (~1 MB each at 500 points)."""
    dx = _pair_differences(np.frombuffer(steps, dtype=float))
    nonzero = None if bool((dx != 0).all()) else dx != 0
    if nonzero is not None:
        dx = dx[nonzero]
        nonzero.flags.writeable = False
    dx.flags.writeable = False
    return dx, nonzero


def theil_sen_slopes(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """:func:`theil_sen_slope` of each row of ``rows`` against the same ``x`` (at most 256 points), to the bit.

    One matrix of pair slopes (rows × pairs) and one partition along its rows: the same pairs, differences and
    divisions as each row alone, and a partition yields the same order statistics whatever else is partitioned
    beside them. A row with a NaN slope gets NaN, as :func:`_median_of_slopes` gives.
    """
    n = len(x)
    if n > _ONE_BLOCK:
        raise ValueError(f"theil_sen_slopes takes at most {_ONE_BLOCK} points, got {n}")
    dx, nonzero = _step_pair_differences(np.asarray(x, dtype=float).tobytes())
    dy = _pair_differences(rows) if nonzero is None else _pair_differences(rows)[:, nonzero]
    pairs = len(dx)
    if pairs == 0:
        return np.full(len(rows), np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slopes = dy / dx
    k = pairs // 2
    if pairs % 2:
        out = np.partition(slopes, k, axis=1)[:, k]
    else:
        part = np.partition(slopes, (k - 1, k), axis=1)
        out = (part[:, k - 1] + part[:, k]) / 2
    out[np.isnan(slopes).any(axis=1)] = np.nan
    return out


@lru_cache(maxsize=16)
def _pairs(n: int) -> np.ndarray:
    """Flat indices ``i * n + j`` of every pair i < j of n points into an n×n matrix, in row order (cached: a run's
    curves share lengths)."""
    i, j = np.triu_indices(n, 1)
    return i * n + j


def _pair_differences(values: np.ndarray) -> np.ndarray:
    """``values[j] - values[i]`` for every pair i < j (of each row, for a matrix), in row order.

    Why through the n×n matrix of all differences: one broadcast subtraction and one ``take`` of the upper
    triangle cost a third of gathering both ends of every pair by fancy indexing, for the same floats."""
    n = values.shape[-1]
    every = values[..., None, :] - values[..., :, None]  # [.., i, j] = values[j] - values[i]
    return np.take(every.reshape(*values.shape[:-1], n * n), _pairs(n), axis=-1)


def _median_of_slopes(slopes: np.ndarray, scratch: bool = False) -> float:
    """np.median of ``slopes``, to the bit (NaN when any is NaN or there are none).

    ``scratch``: the array is the caller's own buffer and may be reordered (no copy of millions of slopes).
    """
    m = len(slopes)
    if m == 0 or np.isnan(slopes).any():
        return float("nan")
    # np.median's value: the middle order statistic, and for an even count the mean of it and the one below it,
    # which numpy computes as their sum over 2.
    k = m // 2
    lower, upper = _middle_order_statistics(slopes, k - 1 if m % 2 == 0 else k, k, scratch)
    if m % 2:
        return upper
    return (lower + upper) / 2  # np.mean of the two: their sum over 2, as IEEE computes it


# Above this many values, the middle order statistics are found among the values of a narrow bracket around them
# (a partition of a few % of the array) instead of by partitioning all of them.
_BRACKET_MIN = 20_000  # below it one partition is as fast (measured: 10k values 28 µs vs 32, 20k 75 -> 48 µs)


def _bracket_sample_size(m: int) -> int:
    """How many values the bracket is taken from: about 1 in 25, between 500 and 5,000 (measured fastest at 20k
    to 125k values: a larger sample narrows the bracket less than its own partition costs)."""
    return min(5_000, max(500, m // 25))


@lru_cache(maxsize=16)
def _bracket_sample(m: int) -> np.ndarray:
    """Where the bracket's sample is read in an array of ``m`` values: a fixed pseudo-random set of positions, sorted.

    Why random and not strided: a Theil-Sen pair matrix folded by lag (:func:`_folded_slopes`) holds the noisy
    short-lag slopes and the steady long-lag ones in a pattern a stride can resonate with, and a sample that misses
    the middle only costs a full partition. Fixed (seeded by ``m``) so the time of a check does not vary between
    runs; the values found never depend on it."""
    size = _bracket_sample_size(m)
    picked = np.random.default_rng(m).choice(m, size, replace=False)
    picked.sort()
    picked.flags.writeable = False
    return picked


def _middle_order_statistics(values: np.ndarray, low: int, high: int, scratch: bool) -> tuple[float, float]:
    """The ``low``-th and ``high``-th smallest of ``values`` (no NaN), exactly; the values are left as they are
    unless the whole array has to be partitioned (then in place when ``scratch``).

    Why not one partition: a 500-point Theil–Sen has 125k slopes, and partitioning them (1.3 ms) was most of a
    long run's diagnosis. A sample of the values gives a bracket [lo, hi] that almost surely holds both order
    statistics (4 standard deviations of a sample quantile's rank each side); counting the values below ``lo`` and
    partitioning only those inside the bracket gives the same two values (~0.15 ms), since every value below the
    bracket ranks before every value in it. When the sample misleads (the count shows the ranks fall outside the
    bracket), the whole array is partitioned: the answer never depends on the sample, only the time does.

    A zero needs the old way: ``0.0`` and ``-0.0`` compare equal, so which of them a partition puts at a rank
    depends on the order of the values it partitions, and a different bracket partitions a different array. When
    either order statistic is a zero, :func:`_middle_order_statistics_strided` (the selection this replaced) takes
    them from the untouched values, so a zero comes out with the sign it always had.
    """
    m = len(values)
    if m >= _BRACKET_MIN:
        sample = values[_bracket_sample(m)]
        size = len(sample)
        margin = int(2 * math.sqrt(size)) + 8  # 4 standard deviations (0.5 sqrt(size)) of a sample median's rank
        first, last = max(0, low * size // m - margin), min(size - 1, high * size // m + margin)
        sample.partition((first, last))
        lo, hi = sample[first], sample[last]
        from_lo = values >= lo
        below = m - int(np.count_nonzero(from_lo))  # no NaN: every value is either below lo or from it on
        from_lo &= values <= hi
        inside = np.compress(from_lo, values)  # ~1/3 faster than a boolean index here
        if below <= low and high < below + len(inside):
            part = np.partition(inside, (low - below, high - below))
            lower, upper = float(part[low - below]), float(part[high - below])
            if lower != 0 and upper != 0:
                return lower, upper
            zero = _sign_of_every_zero(values)  # zeros of one sign: any partition puts that zero there
            if zero is not None:
                return (zero if lower == 0 else lower), (zero if upper == 0 else upper)
    return _middle_order_statistics_strided(values, low, high, scratch)


def _sign_of_every_zero(values: np.ndarray) -> float | None:
    """``0.0`` when every zero among ``values`` is ``0.0``, ``-0.0`` when every one is ``-0.0``, None when both are
    there. Why: a rolling median's residuals hold many exact zeros (a point that is its window's median), all
    ``+0.0`` (``x - x`` is), and the median of them is often one of those zeros."""
    zeros = values == 0
    negative = int(np.count_nonzero(np.signbit(values) & zeros))
    if negative == 0:
        return 0.0
    return -0.0 if negative == int(np.count_nonzero(zeros)) else None


# The selection before the random-sample bracket, kept verbatim for the order statistics that are zeros (see
# _middle_order_statistics): the same strided sample, the same bracket, the same partitions, so the same zero.
_STRIDED_BRACKET_MIN = 50_000


def _strided_bracket_sample_size(m: int) -> int:
    return min(20_000, max(2_000, m // 25))


def _middle_order_statistics_strided(values: np.ndarray, low: int, high: int, scratch: bool) -> tuple[float, float]:
    """The ``low``-th and ``high``-th smallest of ``values`` (no NaN) from a strided sample's bracket, else one
    partition of all of them (in place when ``scratch``)."""
    m = len(values)
    if m >= _STRIDED_BRACKET_MIN:
        sample = np.sort(values[:: max(1, m // _strided_bracket_sample_size(m))])
        size = len(sample)
        margin = int(4 * math.sqrt(size)) + 8  # ~8 standard deviations of a sample quantile's rank
        lo = sample[max(0, low * size // m - margin)]
        hi = sample[min(size - 1, high * size // m + margin)]
        below = int(np.count_nonzero(values < lo))
        inside = values[(values >= lo) & (values <= hi)]
        if below <= low and high < below + len(inside):
            part = np.partition(inside, (low - below, high - below))
            return float(part[low - below]), float(part[high - below])
    part = values if scratch else values.copy()
    part.partition((low, high) if low != high else high)
    return float(part[low]), float(part[high])


def kendall_tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Kendall's tau-b of ``y`` against ``x`` and its two-sided p-value: ``scipy.stats.kendalltau``'s, without
    importing scipy (0.7 s per process, and 1.6 ms per call of array-API overhead, where this takes tens of µs).

    The tau is scipy's to the bit: the same integer pair counts (concordant minus discordant, ties in x, in y and in
    both) and the same floating-point expression. The p-value takes scipy's choices (the exact null distribution
    when nothing is tied and n ≤ 33 or at most one pair is out of order, else the normal approximation with the
    tie-corrected variance) and agrees with it to a few units in the last place: the normal tail comes from the C
    library's erfc and the exact one from integer counts, where scipy uses Cephes and floating-point sums. No
    answer here hinges on the last digit (rules compare p with 0.01 or 0.05 and print two digits). Returns
    (nan, nan) when x or y is constant, as scipy does, so the caller decides what no trend means.
    """
    n = len(x)
    if n < 2:
        return float("nan"), float("nan")
    y_rank = np.unique(y, return_inverse=True)[1].ravel()
    if bool((x[1:] > x[:-1]).all()):
        # Strictly increasing steps (every series of a run): already in x order, no pair tied in x, so none tied in
        # both; the same integer counts as the general path below, without ranking and sorting x.
        discordant = _inversions(y_rank)
        tied_both = tied_x = x_v0 = x_v1 = 0
    else:
        x_rank = np.unique(x, return_inverse=True)[1].ravel()
        order = np.lexsort((y_rank, x_rank))  # by x, then y: pairs tied in x are never counted as discordant
        x_rank, y_rank = x_rank[order], y_rank[order]
        discordant = _inversions(y_rank)
        starts = np.r_[True, (x_rank[1:] != x_rank[:-1]) | (y_rank[1:] != y_rank[:-1]), True]
        joint = np.diff(np.flatnonzero(starts)).astype(np.int64)
        tied_both = int((joint * (joint - 1) // 2).sum())
        tied_x, x_v0, x_v1 = _tie_counts(x_rank)
    tied_y, y_v0, y_v1 = _tie_counts(y_rank)
    total = n * (n - 1) // 2
    if tied_x == total or tied_y == total:
        return float("nan"), float("nan")
    con_minus_dis = total - tied_x - tied_y + tied_both - 2 * discordant
    tau = float(np.float64(con_minus_dis) / np.sqrt(total - tied_x) / np.sqrt(total - tied_y))
    tau = min(1.0, max(-1.0, tau))
    if tied_x == 0 and tied_y == 0 and (n <= 33 or min(discordant, total - discordant) <= 1):
        return tau, _kendall_exact_p(n, min(discordant, total - discordant))
    m = n * (n - 1.0)
    var = (m * (2 * n + 5) - x_v1 - y_v1) / 18 + (2 * tied_x * tied_y) / m + x_v0 * y_v0 / (9 * m * (n - 2))
    z = con_minus_dis / math.sqrt(var)
    return tau, math.erfc(abs(z) / math.sqrt(2.0))  # both tails of the standard normal


def _tie_counts(ranks: np.ndarray) -> tuple[int, int, int]:
    """Pairs tied within one variable, and the two tie terms of the null variance (Kendall 1945)."""
    count = np.bincount(ranks).astype(np.int64)
    count = count[count > 1]
    return (
        int((count * (count - 1) // 2).sum()),
        int((count * (count - 1.0) * (count - 2)).sum()),
        int((count * (count - 1.0) * (2 * count + 5)).sum()),
    )


def _inversions(values: np.ndarray) -> int:
    """The number of pairs i < j with values[i] > values[j] (non-negative integer ranks).

    Short arrays compare every pair at once. Longer ones: blocks of 32 count their own pairs the same way and are
    sorted, then sorted blocks are merged bottom-up, every pair of blocks of a level in one stable argsort: a
    right-block element lands as many places earlier as its left neighbour holds greater elements (equal ones stay
    before it), so the level's count is how far the right elements moved. n log n numpy work, no Python loop per
    element (10k values: ~1.5 ms; the binary searches this replaced took ~4.5 ms).
    """
    n = len(values)
    if n <= 256:
        return int(np.count_nonzero(np.triu(values[:, None] > values[None, :], 1)))
    block = 32
    a = values.astype(np.int64)
    top = int(a.max()) + 1
    a = np.concatenate([a, np.full(-n % block, top)])  # padding: greater than all, after all, so in no inversion
    size = len(a)
    rows = a.reshape(-1, block)
    total = int(np.count_nonzero(np.triu(rows[:, :, None] > rows[:, None, :], 1)))
    a = np.sort(rows, axis=1).ravel()
    span = top + 1
    position = np.arange(size)
    width = block
    while width < size:
        pair = position // (2 * width)
        is_right = (position // width & 1).astype(bool)
        # a pair's keys stay within its positions, so one stable argsort merges every pair (timsort finds the two
        # sorted runs of each pair and merges them)
        order = np.argsort(pair * span + a, kind="stable")
        landed = np.empty(size, dtype=np.int64)
        landed[order] = position
        total += int((position[is_right] - landed[is_right]).sum())
        a = a[order]
        width *= 2
    return total


@lru_cache(maxsize=64)
def _mahonian_cumulative(n: int) -> tuple[int, ...]:
    """How many permutations of n items have at most k inversions, for k = 0 … n(n-1)/4 (exact integers).

    Built one item at a time: inserting the j-th item adds 0 … j-1 inversions, a sliding-window sum over the
    previous counts. Cached: a sweep's runs share their lengths.
    """
    top = n * (n - 1) // 4
    counts = [1] + [0] * top
    for j in range(2, n + 1):
        window = 0
        nxt = []
        for k in range(top + 1):
            window += counts[k]
            if k >= j:
                window -= counts[k - j]
            nxt.append(window)
        counts = nxt
    cumulative, running = [], 0
    for c in counts:
        running += c
        cumulative.append(running)
    return tuple(cumulative)


def _kendall_exact_p(n: int, fewer: int) -> float:
    """Two-sided p of ``fewer`` (the smaller of the discordant and concordant counts) under the exact null of no
    ties: twice the chance of a permutation having at most that many inversions."""
    if n <= 2 or 4 * fewer == n * (n - 1):
        return 1.0
    if fewer == 0:
        return 2.0 / math.factorial(n) if n < 171 else 0.0
    if fewer == 1:
        return 2.0 / math.factorial(n - 1) if n < 172 else 0.0
    return min(1.0, 2 * _mahonian_cumulative(n)[fewer] / math.factorial(n))


def share(mask: np.ndarray) -> float:
    """Fraction of True in a boolean array (0 for an empty one)."""
    arr = np.asarray(mask, dtype=bool)
    return float(arr.mean()) if arr.size else 0.0
