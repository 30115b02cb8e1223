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


@settings(max_examples=200, deadline=None)
@given(points)
def test_last_per_step_keeps_what_pandas_keeps_last(pts: list[tuple[int, float]]) -> None:
    curve, series = _curve_and_series(pts)
    want = series[~series.index.duplicated(keep="last")]
    got = curve.last_per_step()
    assert np.array_equal(got.steps, want.index.to_numpy())
    assert np.array_equal(got.values, want.to_numpy(), equal_nan=True)


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


def test_a_hand_built_frame_with_a_repeated_step_is_aligned_as_pandas_aligns_it() -> None:
    """DPO004 on a frame built by hand (not in make_frame's order, a step logged twice by all three metrics) compares
    each step once, with its last value, as a reader's run keeps it (0424252 raised an IndexError here: pandas' label
    look-up returned both values of the repeated step beside one step label)."""
    from pathlib import Path

    from dpodoctor.checks import diagnose_run
    from dpodoctor.model import Run

    rng = np.random.default_rng(3)
    steps = np.r_[np.arange(1, 31), 12]  # step 12 logged twice, the second time last
    chosen = rng.normal(0.2, 0.05, len(steps))
    rejected = rng.normal(-0.2, 0.05, len(steps))
    margins = (chosen - rejected) * np.where(np.arange(len(steps)) % 3 == 0, 1.5, 1.0)  # a third inconsistent
    rows = [("train", name, int(st), float(v)) for name, vals in (("margins", margins), ("chosen", chosen),
            ("rejected", rejected)) for st, v in zip(steps, vals, strict=True)]  # fmt: skip
    frame = pd.DataFrame(rows[::-1], columns=["split", "metric", "step", "value"]).assign(wall_time=np.nan)
    run = Run(name="hand-built", path=Path("hand-built"), source="test", frame=frame)
    series = {m: run.series(m) for m in ("margins", "chosen", "rejected")}
    series = {m: s[~s.index.duplicated(keep="last")] for m, s in series.items()}
    common = series["margins"].index.intersection(series["chosen"].index).intersection(series["rejected"].index)
    m, c, r = (series[k][common].to_numpy() for k in ("margins", "chosen", "rejected"))
    bad = np.abs(m - (c - r)) > 5e-3 * np.maximum.reduce([np.abs(m), np.abs(c), np.abs(r)]) + 1e-9
    finding = next(f for f in diagnose_run(run).findings if f.code == "DPO004")
    assert len(common) == 30 and 5 <= bad.sum() <= 15
    assert finding.evidence == {"inconsistent_steps": int(bad.sum()), "steps_compared": len(common)}
