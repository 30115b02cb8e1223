"""The curve summary: one set of numbers per (split, metric), on a real TRL run and on property-tested series."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dpodoctor
from dpodoctor.curve import fmt, level_points, summarize, summarize_run

FIXTURES = Path(__file__).parent / "fixtures" / "trl"


def test_real_run_summary_quotes_raw_points_and_robust_levels() -> None:
    report = dpodoctor.check([FIXTURES / "healthy"])
    rr = report.runs[0]
    loss = rr.curves[("train", "loss")]
    raw = rr.run.series("loss", "train")
    assert loss.first_step == int(raw.index[0]) and loss.first_value == float(raw.iloc[0])
    assert loss.last_step == int(raw.index[-1]) and loss.last_value == float(raw.iloc[-1])
    assert loss.end == float(np.median(raw.to_numpy()[-loss.end_points :]))
    assert loss.min_value == float(raw.min()) and loss.value_at(int(raw.idxmin())) == loss.min_value
    assert loss.end < loss.start and loss.slope < 0
    # the "checked" sentence quotes the summary's numbers, and says the end level is a median
    assert fmt(loss.end) in rr.health["loss"] and "median of the last" in rr.health["loss"]
    # every logged curve is summarised, eval included when logged
    assert set(rr.curves) == set(rr.run.metrics)


def test_short_curve_levels_are_raw_points() -> None:
    s = pd.Series([0.69, 0.16, 0.0, 0.0], index=[10, 20, 30, 40])
    c = summarize(s, "train", "loss")
    assert c.start_points == c.end_points == 1
    assert c.level_text("end") == "0 at step 40"
    assert c.point_text(20) == "0.16 at step 20"
    assert c.min_step == 30 and c.max_step == 10 and c.interval == 10
    assert not c.levelled


def test_nonfinite_points_are_counted_not_summarised() -> None:
    c = summarize(pd.Series([0.7, np.nan, 0.6, np.inf]), "train", "loss")
    assert c.n == 2 and c.n_nonfinite == 2 and c.last_value == 0.6
    empty = summarize(pd.Series([np.nan]), "eval", "loss")
    assert not empty.logged and empty.span_text() == "not logged" and empty.to_dict()["end"]["value"] is None


def test_fmt_never_prints_negative_zero() -> None:
    assert fmt(-0.0) == "0" and fmt(-1e-30) == "-1e-30" and fmt(float("nan")) == "nan"


def test_levelled_and_still_growing_curves_are_told_apart() -> None:
    t = np.arange(1, 301, dtype=float)
    rng = np.random.default_rng(0)
    plateau = pd.Series(3 * (1 - np.exp(-t / 30)) + rng.normal(0, 0.05, 300), index=t.astype(int))
    line = pd.Series(0.01 * t + rng.normal(0, 0.05, 300), index=t.astype(int))
    assert summarize(plateau).levelled
    assert not summarize(line).levelled


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_levels_lie_within_the_curve(values: list[float]) -> None:
    s = pd.Series(values, index=np.arange(1, len(values) + 1) * 5)
    c = summarize(s)
    assert c.min_value <= c.start <= c.max_value and c.min_value <= c.end <= c.max_value
    assert 1 <= c.end_points <= max(1, len(values)) and c.end_points == level_points(len(values))
    assert c.value_at(c.last_step) == values[-1]
    assert c.to_dict()["points"] == len(values)


def test_summarize_run_covers_every_metric() -> None:
    run = dpodoctor.load(FIXTURES / "healthy")[0]
    assert set(summarize_run(run)) == set(run.metrics)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.integers(1, 6),
    st.sampled_from(["noise", "trend", "flat", "nan", "ties"]),
)
def test_summaries_together_equal_each_alone(seed: int, n: int, curves: int, kind: str) -> None:
    """summarize_many (curves at the same steps share one pair matrix, one sort, one partition) gives every curve
    exactly the summary it gets alone: same slope, noise, levels and levelling, to the bit."""
    from dpodoctor.curve import _finite_points, _levelled_off, _slope, _summary, summarize_many
    from dpodoctor.stats import noise_sigma_of

    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 4, n)).astype(np.int64)
    rows = []
    for _ in range(curves):
        values = {
            "noise": lambda: rng.normal(size=n),
            "trend": lambda: 0.01 * steps + rng.normal(size=n) * 0.1,
            "flat": lambda: np.full(n, 0.6931),
            "nan": lambda: np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "ties": lambda: rng.integers(0, 3, n) / 2.0,
        }[kind]()
        rows.append(("train", f"m{len(rows)}", steps, values))
    together = summarize_many(rows)
    for (_, name, s, v), got in zip(rows, together, strict=True):
        fs, fv, bad = _finite_points(s, v)
        assert got.metric == name and got.n == len(fv) and got.n_nonfinite == bad
        if len(fv) == 0:
            continue
        noise = noise_sigma_of(fv) if len(fv) >= 3 else 0.0
        assert got.slope == _slope(fs, fv)
        assert got.noise == noise
        assert got.levelled == _levelled_off(fs, fv, noise if len(fv) >= 3 else None)
        assert got.start == float(np.median(fv[: got.start_points]))
        assert got.end == float(np.median(fv[-got.end_points :]))
        # and every other field (extremes, interval, first and last points) is what the one-curve summary gives
        alone = _summary("train", name, fs, fv, bad, len(v), (got.slope, got.noise, got.levelled))
        assert got.to_dict() == alone.to_dict()
        assert (got.min_value, got.max_value, got.first_value, got.last_value) == (
            alone.min_value, alone.max_value, alone.first_value, alone.last_value,
        )  # fmt: skip
        assert np.array_equal(got.steps, alone.steps) and np.array_equal(got.values, alone.values)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.sampled_from(["noise", "trend", "flat", "ties", "repeated_step", "nan", "huge"]),
)
def test_short_trend_equals_stats_trend(seed: int, n: int, kind: str) -> None:
    """curve.trend (one matrix of pair differences for the slope and Kendall's counts) gives every field of
    stats.trend to the bit: slope, change, tau, p-value and n, on short and long curves, with ties, repeated steps,
    NaN and values large enough for the differences to overflow."""
    from dpodoctor import stats
    from dpodoctor.curve import trend
    from dpodoctor.curveseries import Curve

    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(0 if kind == "repeated_step" else 1, 4, n)).astype(np.int64)
    values = {
        "noise": lambda: rng.normal(size=n),
        "trend": lambda: 0.01 * steps + rng.normal(size=n) * 0.1,
        "flat": lambda: np.full(n, 0.6931),
        "ties": lambda: rng.integers(0, 3, n) / 2.0,
        "repeated_step": lambda: rng.normal(size=n),
        "nan": lambda: np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        "huge": lambda: rng.choice([-1.5e308, 1.5e308], n) * rng.random(n),
    }[kind]()
    curve = Curve(steps, values)
    with np.errstate(over="ignore"):  # the "huge" values' differences overflow to ±inf, in both
        got, want = trend(curve), stats.trend(curve)
    assert got.n == want.n
    for field in ("slope", "change", "tau", "p_value"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a == b and math.copysign(1, a) == math.copysign(1, b)) or (math.isnan(a) and math.isnan(b)), field


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.integers(1, 4),
    st.sampled_from(["noise", "trend", "flat", "ties"]),
)
def test_trends_from_known_slopes_equal_stats_trend(seed: int, n: int, curves: int, kind: str) -> None:
    """The slopes a summary took (whole curve, first and last third) give the same trend as stats.trend of those
    points, to the bit (Context.trend reads them instead of taking the Theil-Sen slope again)."""
    from dpodoctor import stats
    from dpodoctor.curve import known_slope, summarize_many, trend
    from dpodoctor.curveseries import Curve

    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 4, n)).astype(np.int64)
    rows = []
    for _ in range(curves):
        values = {
            "noise": lambda: rng.normal(size=n),
            "trend": lambda: 0.01 * steps + rng.normal(size=n) * 0.1,
            "flat": lambda: np.full(n, 0.6931),
            "ties": lambda: rng.integers(0, 3, n) / 2.0,
        }[kind]()
        rows.append(("train", f"m{len(rows)}", steps, values))
    for summary, (_, _, s, v) in zip(summarize_many(rows), rows, strict=True):
        curve = Curve(s, v)
        third = n // 3
        for part, points in (("all", curve), ("early", curve[:third]), ("late", curve[-third:])):
            got, want = trend(points, known_slope(summary, part)), stats.trend(points)
            assert (got.slope, got.change, got.tau, got.p_value, got.n) == (
                want.slope, want.change, want.tau, want.p_value, want.n,
            ), part  # fmt: skip


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40))
def test_json_numbers_round_as_json_number(values: list[float]) -> None:
    """The batched rounding of a report's curve numbers gives each value what _json_number gives it alone (6
    significant digits, None for NaN and ±inf), sign of zero included."""
    from dpodoctor.curve import _json_number, _json_numbers

    got = _json_numbers(tuple(values))
    want = [_json_number(x) for x in values]
    assert [None if x is None else (x, math.copysign(1, x)) for x in got] == [
        None if x is None else (x, math.copysign(1, x)) for x in want
    ]


def test_long_curves_get_their_own_interval_and_noise_when_summarised_together() -> None:
    """summarize_many takes the logging interval once for consecutive long curves at the same steps and hands the
    run's context the rolling median behind each noise scale: every curve still gets the interval and the noise of
    its own steps and values (a curve at other steps between two at the same steps included), to the bit."""
    from dpodoctor.curve import summarize_arrays, summarize_many
    from dpodoctor.stats import rolling_median, window_for

    rng = np.random.default_rng(7)
    every = np.arange(1, 1001, dtype=np.int64)
    sparse = np.arange(0, 3000, 3, dtype=np.int64)
    sparse[500:] += 2  # two intervals, the median one 3
    rows = [
        ("train", "a", every, rng.normal(size=1000)),
        ("train", "b", sparse, rng.normal(size=1000)),
        ("train", "c", every, np.where(rng.random(1000) < 0.3, np.nan, rng.normal(size=1000))),
        ("eval", "a", every * 2, rng.normal(size=1000)),
    ]
    smoothed: dict[tuple[str, str], tuple[int, np.ndarray]] = {}
    together = summarize_many(rows, smoothed)
    for (split, name, steps, values), got in zip(rows, together, strict=True):
        alone = summarize_arrays(steps, values, split, name)
        assert (got.interval, got.noise) == (alone.interval, alone.noise)
        window, rolling = smoothed[(split, name)]
        assert window == window_for(got.n)
        np.testing.assert_array_equal(rolling, rolling_median(got.values, window))
    assert [c.interval for c in together] == [1, 3, 1, 2]


@pytest.mark.parametrize("n", [401, 1000, 3333, 9000, 10000])
def test_thinning_reuses_the_cached_positions_exactly(n: int) -> None:
    """The summary's thinning takes stats' cached positions: the same evenly spaced points (first and last kept) its
    own expression picked, so the slopes summaries report do not move."""
    from dpodoctor.curve import SUMMARY_TREND_POINTS, _thin

    steps = np.arange(n, dtype=np.int64) * 2
    values = np.random.default_rng(n).normal(size=n)
    keep = np.unique(np.linspace(0, n - 1, SUMMARY_TREND_POINTS).round().astype(np.int64))
    got_steps, got_values = _thin(steps, values, SUMMARY_TREND_POINTS)
    np.testing.assert_array_equal(got_steps, steps[keep])
    np.testing.assert_array_equal(got_values, values[keep])
