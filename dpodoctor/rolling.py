"""Rolling medians equal to pandas' to the bit, without pandas.

Why this module: the noise estimate of every long curve is a centred rolling median (window 101 over 10k points),
and pandas' ``rolling(...).median()`` was ~0.3 of the 2.5 CPU-s of a cold check of 6 runs x 10k steps, besides
being the reason a diagnosis imported pandas at all. ``bottleneck.move_median`` (a C double heap, O(n log w))
gives the same numbers ~5x faster, and a numpy sort of the windows does when bottleneck is missing.

What "the same numbers" takes (pandas' ``roll_median_c`` over its skiplist, read against the source):

- pandas inserts each value after the equal ones already in the window and removes the first equal one, so its
  sorted window is a *stable* sort of the window (ties in step order); the median is the middle value, or
  ``(a + b) / 2`` of the two middle ones, NaN when fewer than ``min_periods`` values are not NaN. bottleneck
  computes ``(a + b) / 2`` of the same two order statistics, and so does a sorted window.
- Equal numbers have equal bits, except ``0.0`` and ``-0.0``: which of them sits at the middle depends on the
  order of the ties, which a heap or an unstable sort does not keep. So when the curve holds a ``-0.0``, every
  median that came out zero is taken again from a stable sort of its window (the only results that can differ:
  ``x + 0.0 == x + -0.0`` for any other ``x``).
- pandas reads ``±inf`` as missing (``_prep_values``), so they are NaN here too.
- The centred window at ``i`` is pandas' ``[i + 1 + (w - 1) // 2 - w, i + 1 + (w - 1) // 2)``, cut at the curve's
  ends: the trailing window ending ``(w - 1) // 2`` points later over the curve padded with NaN at its end.
"""

from __future__ import annotations

import numpy as np

# The fallback sorts this many window cells at a time (8 MB of float64), so a long curve's windows are never all in
# memory at once.
_SORTED_CELLS_PER_CHUNK = 1 << 20


def centred_median(values: np.ndarray, window: int, min_periods: int = 1) -> np.ndarray:
    """pandas' ``Series(values).rolling(window, center=True, min_periods=min_periods).median()``, to the bit."""
    values = _prepared(values)
    _check(window, min_periods)
    offset = (window - 1) // 2
    if offset == 0:
        return _trailing(values, window, min_periods)
    return _trailing(np.concatenate([values, np.full(offset, np.nan)]), window, min_periods)[offset:]


def trailing_median(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """pandas' ``Series(values).rolling(window, min_periods=min_periods).median()`` (the window ending at each
    point), to the bit."""
    values = _prepared(values)
    _check(window, min_periods)
    return _trailing(values, window, min_periods)


def _trailing(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    n = len(values)
    min_count = max(min_periods, 1)  # a window with no number is NaN whatever min_periods says
    if n == 0 or min_count > n:
        return np.full(n, np.nan)
    window = min(window, n)  # a window longer than the curve holds the same points as one of its length
    out = _move_median(values, window, min_count)
    if _has_negative_zero(values):
        zeros = np.flatnonzero(out == 0)
        if zeros.size:
            out[zeros] = _stable_medians(values, window, zeros)
    return out


def _move_median(values: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """The trailing median up to the sign of a zero: bottleneck's double heap, else sorted windows."""
    try:
        import bottleneck  # a C extension, imported when a long curve first needs it
    except ImportError:
        return _sorted_windows_median(values, window, min_count)
    return np.asarray(bottleneck.move_median(values, window, min_count=min_count), dtype=float)


def _sorted_windows_median(values: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """The trailing median of every point from one numpy sort of its window (NaN padding at the start, sorted
    last, not counted), a chunk of windows at a time; ties in any order (see :func:`_stable_medians`)."""
    n = len(values)
    windows, counts = _windows(values, window), _window_counts(values, window)
    out = np.empty(n)
    step = max(1, _SORTED_CELLS_PER_CHUNK // window)
    for start in range(0, n, step):
        chunk = slice(start, start + step)
        out[chunk] = _window_medians(windows[chunk], counts[chunk], kind="quicksort")
    out[counts < min_count] = np.nan
    return out


def _stable_medians(values: np.ndarray, window: int, rows: np.ndarray) -> np.ndarray:
    """The trailing medians at ``rows`` from a stable sort of each window: pandas' order of equal values."""
    windows, counts = _windows(values, window), _window_counts(values, window)
    out = np.empty(len(rows))
    step = max(1, _SORTED_CELLS_PER_CHUNK // window)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        out[start : start + step] = _window_medians(windows[chunk], counts[chunk], kind="stable")
    return out


def _windows(values: np.ndarray, window: int) -> np.ndarray:
    """A read-only view whose row ``i`` is the window ending at point ``i``, NaN before the curve's start."""
    padded = np.concatenate([np.full(window - 1, np.nan), values])
    return np.lib.stride_tricks.sliding_window_view(padded, window)


def _window_medians(windows: np.ndarray, count: np.ndarray, kind: str) -> np.ndarray:
    """The median of the ``count`` real values of each row (NaN sorts last): the middle one, or the half-sum of the
    two middle ones in pandas' ``(a + b) / 2``; NaN for a row of NaN only. ``kind="stable"`` keeps equal values in
    step order."""
    windows = np.sort(windows, axis=1, kind=kind)  # type: ignore[call-overload]
    mid = count // 2
    index = np.arange(len(windows))
    upper = windows[index, mid]
    lower = windows[index, np.maximum(mid - 1, 0)]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN rows; two huge middles overflow to inf, as in pandas
        out = np.where(count % 2 == 1, upper, (upper + lower) / 2)
    out[count == 0] = np.nan
    return out


def _window_counts(values: np.ndarray, window: int) -> np.ndarray:
    """How many values of the window ending at each point are not NaN."""
    seen = np.concatenate([[0], np.cumsum(~np.isnan(values))])
    ends = np.arange(1, len(values) + 1)
    return seen[ends] - seen[np.maximum(ends - window, 0)]


def _has_negative_zero(values: np.ndarray) -> bool:
    return bool(np.any(np.signbit(values) & (values == 0)))


def _prepared(values: np.ndarray) -> np.ndarray:
    """float64, with ±inf as NaN (pandas' rolling reads infinities as missing values)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"a rolling median takes one curve, not an array of shape {values.shape}")
    if np.isinf(values).any():
        values = np.where(np.isinf(values), np.nan, values)
    return values


def _check(window: int, min_periods: int) -> None:
    """pandas' own argument errors, so a caller cannot ask for a window pandas would refuse."""
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    if not 0 <= min_periods <= window:
        raise ValueError(f"min_periods {min_periods} must be between 0 and window {window}")
