"""Rolling medians equal to pandas' to the bit, without pandas.

Why this module: the noise estimate of every long curve is a centred rolling median (window 101 over 10k points),
and pandas' ``rolling(...).median()`` was ~0.3 of the 2.5 CPU-s of a cold check of 6 runs x 10k steps, and one of
the reasons a diagnosis imported pandas. ``bottleneck.move_median`` (a C double heap, O(n log w))
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
    """pandas' ``Series(values).rolling(window, center=True, min_periods=min_periods).median()``, to the bit; of
    each row when ``values`` is a matrix (curves of the same length, one bottleneck call for all of them)."""
    rows = _prepared(values, window, min_periods)
    offset = (window - 1) // 2
    if offset:
        rows = np.concatenate([rows, np.full((len(rows), offset), np.nan)], axis=1)
    return _trailing(rows, window, min_periods)[:, offset:].reshape(np.shape(values))


def trailing_median(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """pandas' ``Series(values).rolling(window, min_periods=min_periods).median()`` (the window ending at each
    point), to the bit; of each row when ``values`` is a matrix."""
    rows = _prepared(values, window, min_periods)
    return _trailing(rows, window, min_periods).reshape(np.shape(values))


def _trailing(rows: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """The trailing median of each row of a float64 matrix (NaN not counted)."""
    n = rows.shape[1]
    min_count = max(min_periods, 1)  # a window with no number is NaN whatever min_periods says
    if n == 0 or min_count > n:
        return np.full(rows.shape, np.nan)
    window = min(window, n)  # a window longer than the curve holds the same points as one of its length
    out = _move_median(rows, window, min_count)
    for row in np.flatnonzero(np.any(np.signbit(rows) & (rows == 0), axis=1)):  # the rows holding a -0.0
        zeros = np.flatnonzero(out[row] == 0)
        if zeros.size:
            out[row, zeros] = _stable_medians(rows[row], window, zeros)
    return out


def _move_median(rows: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """The trailing median of each row up to the sign of a zero: bottleneck's double heap, else sorted windows."""
    try:
        import bottleneck  # a C extension, imported when a long curve first needs it
    except ImportError:
        return np.array([_sorted_windows_median(row, window, min_count) for row in rows]).reshape(rows.shape)
    return np.asarray(bottleneck.move_median(rows, window, min_count=min_count, axis=1), dtype=float)


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


def _stable_medians(values: np.ndarray, window: int, ends: np.ndarray) -> np.ndarray:
    """The trailing medians of the windows ending at ``ends``, from a stable sort of each window: pandas' order of
    equal values."""
    windows, counts = _windows(values, window), _window_counts(values, window)
    out = np.empty(len(ends))
    step = max(1, _SORTED_CELLS_PER_CHUNK // window)
    for start in range(0, len(ends), step):
        chunk = ends[start : start + step]
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


def _prepared(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """The curve(s) as a float64 matrix, one row a curve, with ±inf as NaN (pandas' rolling reads infinities as
    missing values); pandas' own argument errors, so a caller cannot ask for a window pandas would refuse."""
    values = np.asarray(values, dtype=float)
    if values.ndim not in (1, 2):
        raise ValueError(f"a rolling median takes a curve or a matrix of curves, not an array of shape {values.shape}")
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    if not 0 <= min_periods <= window:
        raise ValueError(f"min_periods {min_periods} must be between 0 and window {window}")
    if np.isinf(values).any():
        values = np.where(np.isinf(values), np.nan, values)
    return values[None, :] if values.ndim == 1 else values
