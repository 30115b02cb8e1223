"""The rules' Curve and the stats that take it give what the pandas Series they replaced gave, to the bit.

Why: the diagnosis moved from pd.Series to :class:`dpodoctor.curveseries.Curve` with the promise that every report
stays byte-identical. The goldens pin the fixtures; these properties pin the pandas semantics the fixtures may not
reach: label alignment on a hand-built frame that repeats a step (``Index.intersection`` then a label look-up, which
keeps every value of a repeated step), NaN dropping, the late slice, and the float summaries.
"""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import stats
from dpodoctor.curveseries import Curve, common_steps

# sorted steps that may repeat (a hand-built frame's), each with a value that may be NaN or ±inf
points = st.lists(
    st.tuples(st.integers(0, 40), st.floats(-1e6, 1e6) | st.sampled_from([np.nan, np.inf, -np.inf])),
    max_size=60,
).map(lambda pts: sorted(pts, key=lambda p: p[0]))


def _curve_and_series(pts: list[tuple[int, float]]) -> tuple[Curve, pd.Series]:
    steps = np.array([p[0] for p in pts], dtype=np.int64)
    values = np.array([p[1] for p in pts], dtype=float)
    return Curve(steps, values), pd.Series(values, index=steps)


@settings(max_examples=300, deadline=None)
@given(st.lists(points, min_size=2, max_size=3))
def test_common_steps_and_at_steps_are_pandas_label_alignment(curves: list[list[tuple[int, float]]]) -> None:
    pairs = [_curve_and_series(pts) for pts in curves]
    common = common_steps(*(c for c, _ in pairs))
    index = pairs[0][1].index
    for _, s in pairs[1:]:
        index = index.intersection(s.index)
    assert np.array_equal(common, index.to_numpy())
    for curve, series in pairs:
        assert np.array_equal(curve.at_steps(common), series[index].to_numpy(), equal_nan=True)


def _late_pandas(series: pd.Series, skip: float = 0.1) -> pd.Series:
    """stats.late as it was written on a pandas Series (the reference the Curve version must equal)."""
    s = series[np.isfinite(series.to_numpy(dtype=float))]
    if len(s) == 0:
        return s
    steps = s.index.to_numpy()
    cut = float(steps[0]) + skip * (float(steps[-1]) - float(steps[0]))
    return s.iloc[int(np.searchsorted(steps, cut, side="left")) :]


@settings(max_examples=300, deadline=None)
@given(points)
def test_curve_stats_equal_the_series_stats(pts: list[tuple[int, float]]) -> None:
    curve, series = _curve_and_series(pts)
    finite = stats.finite(curve)
    want = stats.finite(series)
    assert np.array_equal(finite.steps, want.index.to_numpy())
    assert np.array_equal(finite.values, want.to_numpy())
    late, late_want = stats.late(curve), _late_pandas(series)
    assert np.array_equal(late.steps, late_want.index.to_numpy())
    assert np.array_equal(late.values, late_want.to_numpy())
    for f in (stats.head, stats.tail_level, stats.noise_sigma):
        assert np.array_equal(f(curve), f(series), equal_nan=True)  # type: ignore[operator]
    assert np.array_equal(astuple(stats.trend(curve)), astuple(stats.trend(series)), equal_nan=True)
    smoothed, smoothed_want = stats.smooth(curve), stats.smooth(series)
    assert np.array_equal(smoothed.steps, smoothed_want.index.to_numpy())
    assert np.array_equal(smoothed.values, smoothed_want.to_numpy())


def test_curve_selects_by_position_and_refuses_a_bare_integer() -> None:
    curve = Curve(np.array([10, 20, 30, 40]), np.array([0.5, np.nan, 0.7, 0.8]))
    assert len(curve) == 4 and curve.first_step == 10 and curve.last_step == 40
    tail = curve[2:]
    assert tail.steps.tolist() == [30, 40] and tail.values.tolist() == [0.7, 0.8]
    picked = curve[curve.steps >= 20]
    assert picked.steps.tolist() == [20, 30, 40]
    assert curve.finite().steps.tolist() == [10, 30, 40]
    with pytest.raises(TypeError, match="ambiguous"):
        curve[0]  # type: ignore[index]
    with pytest.raises(AttributeError, match="immutable"):
        curve.steps = np.array([1])  # type: ignore[misc]
    with pytest.raises(ValueError, match="3 steps but 2 values"):
        Curve(np.array([1, 2, 3]), np.array([0.1, 0.2]))
    empty = Curve(np.zeros(0, dtype=np.int64), np.zeros(0))
    assert empty.first_step is None and empty.last_step is None and len(empty.finite()) == 0
