"""Robust statistics for noisy per-batch curves.

Why robust: with ``logging_steps=1`` a DPO metric jumps ±0.2 from one step to the next, so no rule may judge a
single point. Everything here works on medians, MAD and Theil–Sen slopes, which one bad batch cannot move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MAD_TO_SIGMA = 1.4826  # scales the median absolute deviation to σ for Gaussian noise
# Theil–Sen looks at every pair of points: n² work and memory (scipy builds n×n matrices: 3 GB and 30 s for the four
# trends of one 20k-step run). Longer series are thinned to this many evenly spaced points first; up to it the slope
# is exactly scipy.stats.theilslopes'.
THEIL_SEN_MAX_POINTS = 2000


def finite(series: pd.Series) -> pd.Series:
    """The series without NaN/±inf (those are DPO001's business, not a trend's)."""
    values = series.to_numpy(dtype=float)
    return series[np.isfinite(values)]


def window_for(n: int, fraction: float = 0.1, minimum: int = 3, maximum: int = 101) -> int:
    """An odd rolling-window length of about ``fraction`` of the series, clamped."""
    w = max(minimum, min(maximum, round(n * fraction)))
    return w if w % 2 == 1 else w + 1


def smooth(series: pd.Series, window: int | None = None) -> pd.Series:
    """Centred rolling median: keeps level shifts sharp but ignores single noisy batches."""
    s = finite(series)
    if len(s) == 0:
        return s
    w = window or window_for(len(s))
    return s.rolling(w, center=True, min_periods=1).median()


def noise_sigma(series: pd.Series, window: int | None = None) -> float:
    """Robust σ of the batch noise: MAD of the residuals around the smoothed curve."""
    s = finite(series)
    if len(s) < 3:
        return 0.0
    resid = s - smooth(s, window)
    return float(MAD_TO_SIGMA * np.median(np.abs(resid - np.median(resid))))


def late(series: pd.Series, skip: float = 0.1) -> pd.Series:
    """The part of the series after the first ``skip`` fraction of its step span (warm-up excluded)."""
    s = finite(series)
    if len(s) == 0:
        return s
    first, last = float(s.index[0]), float(s.index[-1])
    return s[s.index >= first + skip * (last - first)]


def head(series: pd.Series, points: int = 3) -> float:
    """The robust starting level: median of the first few finite points."""
    s = finite(series)
    return float(np.median(s.to_numpy()[:points])) if len(s) else float("nan")


def tail_level(series: pd.Series, fraction: float = 1 / 3) -> float:
    """The robust end level: median of the last ``fraction`` of the finite points."""
    s = finite(series)
    if len(s) == 0:
        return float("nan")
    k = max(1, round(len(s) * fraction))
    return float(np.median(s.to_numpy()[-k:]))


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


def trend(series: pd.Series) -> Trend:
    """Theil–Sen slope and Mann–Kendall test (Kendall's tau of value against step) of the finite points."""
    s = finite(series)
    n = len(s)
    if n < 3 or float(np.ptp(s.to_numpy())) == 0.0:
        return Trend(0.0, 0.0, 0.0, 1.0, n)
    from scipy import stats as _sp  # imported here: 0.7 s that a check whose diagnoses are cached never pays

    x = s.index.to_numpy(dtype=float)
    y = s.to_numpy(dtype=float)
    slope = theil_sen_slope(x, y)
    tau, p = _sp.kendalltau(x, y)
    tau = 0.0 if np.isnan(tau) else float(tau)
    p = 1.0 if np.isnan(p) else float(p)
    return Trend(slope, slope * float(x[-1] - x[0]), tau, p, n)


def theil_sen_slope(x: np.ndarray, y: np.ndarray, max_points: int = THEIL_SEN_MAX_POINTS) -> float:
    """The median of the slopes of all point pairs with distinct x: scipy.stats.theilslopes' ``slope``, to the bit
    (same pairs, same subtraction and division, same median), without its n×n matrices.

    A series longer than ``max_points`` is thinned to that many evenly spaced points (the first and last kept):
    the estimate of a 20k-step curve from 2,000 of its points is as robust, and costs 1% of the pairs.
    """
    n = len(x)
    if n > max_points:
        keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
        x, y, n = x[keep], y[keep], len(keep)
    # Blocks of rows: the pairs inside a block (its upper triangle) and from the block to every later point (a
    # rectangle), each one vectorised expression; far less memory than scipy's n×n matrices and no per-row loop.
    # Pairs with the same x have no slope and are left out, as in scipy. Order does not matter to a median.
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
    slopes = slopes[:pos]
    m = len(slopes)
    if m == 0 or np.isnan(slopes).any():
        return float("nan")
    # np.median's value, from one partition instead of its two-index one (4x faster on millions of slopes): the
    # upper middle element, and for an even count the mean of it and the largest element below it.
    k = m // 2
    part = np.partition(slopes, k)
    if m % 2:
        return float(part[k])
    return float(np.mean(np.array([part[:k].max(), part[k]])))


def share(mask: np.ndarray | pd.Series) -> float:
    """Fraction of True in a boolean array (0 for an empty one)."""
    arr = np.asarray(mask, dtype=bool)
    return float(arr.mean()) if arr.size else 0.0
