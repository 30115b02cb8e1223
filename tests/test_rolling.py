"""dpodoctor.rolling: pandas' rolling medians to the bit, with bottleneck's double heap and with the numpy fallback.

The property tests compare the bits (``.view(np.int64)``), so the sign of a zero counts: pandas keeps equal values
in step order, a heap or an unstable sort does not, and ``0.0``/``-0.0`` are the only equal values whose bits
differ.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import rolling, stats

# bottleneck is a declared dependency; where it is not installed yet, its half of each test is skipped.
ENGINES = [
    pytest.param(
        "bottleneck",
        marks=pytest.mark.skipif(importlib.util.find_spec("bottleneck") is None, reason="bottleneck not installed"),
    ),
    "numpy",
]
HUGE = float(np.finfo(float).max)
TINY = 5e-324  # the smallest subnormal: halving a sum of two of them rounds to a zero
# Few distinct values, so windows hold many ties: zeros of both signs, subnormals, values whose sum overflows.
TIED = [0.0, -0.0, 1.0, -1.0, 0.5, TINY, -TINY, HUGE, -HUGE, 1e-300, -1e-300]


@contextmanager
def engine(name: str) -> Iterator[None]:
    """Run the module with bottleneck or with its numpy fallback."""
    if name == "bottleneck":
        yield
    else:
        with mock.patch.dict(sys.modules, {"bottleneck": None}):  # `import bottleneck` raises ImportError
            yield


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float).view(np.int64)


@st.composite
def curves(draw: st.DrawFn) -> np.ndarray:
    """Finite curves: short ones drawn value by value (they shrink to a readable example), long ones (up to 3,000
    points) from a seeded generator: Gaussian noise, a drifting level, few tied values, or mostly signed zeros."""
    if draw(st.booleans()):
        values = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(TIED))
        return np.array(draw(st.lists(values, max_size=300)), dtype=float)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 3000))
    style = draw(st.sampled_from(["noise", "drift", "tied", "zeros"]))
    if style == "noise":
        return rng.normal(size=n) * 10.0 ** rng.integers(-300, 300)
    if style == "drift":
        return np.cumsum(rng.normal(size=n)).round(2)
    if style == "tied":
        return rng.choice(TIED, n)
    return rng.choice([0.0, -0.0, -0.0, 0.0, 1.0, -1.0], n)


@pytest.mark.parametrize("name", ENGINES)
@settings(max_examples=120, deadline=None)
@given(curves(), st.integers(1, 300), st.data())
def test_centred_median_is_pandas_to_the_bit(name: str, values: np.ndarray, window: int, data: st.DataObject) -> None:
    """rolling.centred_median equals pandas' rolling(window, center=True, min_periods=m).median(): odd and even
    windows, windows longer than the curve, every min_periods; of each row of a matrix of curves too."""
    min_periods = data.draw(st.integers(0, window))
    want = pd.Series(values, dtype=float).rolling(window, center=True, min_periods=min_periods).median().to_numpy()
    backwards = pd.Series(values[::-1], dtype=float).rolling(window, center=True, min_periods=min_periods).median()
    with engine(name):
        got = rolling.centred_median(values, window, min_periods)
        rows = rolling.centred_median(np.stack([values, values[::-1]]), window, min_periods)
    assert np.array_equal(bits(got), bits(want)), (values, window, min_periods)
    assert np.array_equal(bits(rows), bits(np.stack([want, backwards.to_numpy()])))


@pytest.mark.parametrize("name", ENGINES)
@settings(max_examples=120, deadline=None)
@given(curves(), st.integers(1, 300), st.data())
def test_trailing_median_is_pandas_to_the_bit(name: str, values: np.ndarray, window: int, data: st.DataObject) -> None:
    """rolling.trailing_median equals pandas' rolling(window, min_periods=m).median() (NaN where the window holds
    fewer than m points); of each row of a matrix of curves too."""
    min_periods = data.draw(st.integers(0, window))
    want = pd.Series(values, dtype=float).rolling(window, min_periods=min_periods).median().to_numpy()
    backwards = pd.Series(values[::-1], dtype=float).rolling(window, min_periods=min_periods).median()
    with engine(name):
        got = rolling.trailing_median(values, window, min_periods)
        rows = rolling.trailing_median(np.stack([values, values[::-1]]), window, min_periods)
    assert np.array_equal(bits(got), bits(want)), (values, window, min_periods)
    assert np.array_equal(bits(rows), bits(np.stack([want, backwards.to_numpy()])))


@pytest.mark.parametrize("name", ENGINES)
def test_missing_and_infinite_values_are_skipped_as_pandas_skips_them(name: str) -> None:
    """NaN and ±inf are not counted (pandas reads infinities as missing), and min_periods counts the rest."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=500)
    values[rng.random(500) < 0.2] = np.nan
    values[rng.random(500) < 0.05] = np.inf
    values[rng.random(500) < 0.05] = -np.inf
    values[:30] = np.nan
    for window, min_periods in [(1, 1), (4, 2), (7, 7), (50, 10), (600, 0)]:
        series = pd.Series(values).rolling(window, min_periods=min_periods)
        centred = pd.Series(values).rolling(window, center=True, min_periods=min_periods)
        with engine(name):
            assert np.array_equal(bits(rolling.trailing_median(values, window, min_periods)), bits(series.median()))
            assert np.array_equal(bits(rolling.centred_median(values, window, min_periods)), bits(centred.median()))


@pytest.mark.parametrize("name", ENGINES)
def test_curves_through_stats_are_pandas_to_the_bit(name: str) -> None:
    """stats.rolling_median / stats.trailing_median / stats.rolling_medians give pandas' numbers on long and short
    curves, odd and even windows, including curves that hold both signed zeros (a numpy sort of the windows, the
    short-curve path before, gave -0.0 where pandas gives 0.0)."""
    rng = np.random.default_rng(3)
    noisy = np.cumsum(rng.normal(size=10_000)) * 0.01 + rng.normal(size=10_000)
    flat = np.where(rng.random(4_000) < 0.5, 0.0, -0.0)
    flat[::97] = 1.0
    for values in (noisy, flat, flat[:60], np.array([-0.0, 0.0, 1.0])):
        window = stats.window_for(len(values))
        with engine(name):
            centred = stats.rolling_median(values, window)
            even = stats.rolling_median(values, 10)
            trailing = stats.trailing_median(values, window, 3)
        series = pd.Series(values)
        assert np.array_equal(bits(centred), bits(series.rolling(window, center=True, min_periods=1).median()))
        assert np.array_equal(bits(even), bits(series.rolling(10, center=True, min_periods=1).median()))
        assert np.array_equal(bits(trailing), bits(series.rolling(window, min_periods=3).median()))
        if window % 2:
            with engine(name):
                rows = stats.rolling_medians(np.stack([values, values[::-1].copy()]), window)
            assert np.array_equal(bits(rows[0]), bits(centred))


def test_arguments_pandas_refuses_are_refused() -> None:
    """A window below 1, min_periods above the window, or an array of more than two dimensions is an error, not a
    silent guess; empty curves and matrices keep their shape."""
    values = np.arange(10.0)
    with pytest.raises(ValueError, match="window"):
        rolling.centred_median(values, 0)
    with pytest.raises(ValueError, match="min_periods"):
        rolling.trailing_median(values, 3, 4)
    with pytest.raises(ValueError, match="matrix of curves"):
        rolling.trailing_median(np.zeros((2, 5, 4)), 3, 1)
    assert rolling.centred_median(np.array([]), 5).shape == (0,)
    assert rolling.centred_median(np.zeros((0, 5)), 5).shape == (0, 5)
    assert rolling.trailing_median(np.zeros((2, 0)), 5, 1).shape == (2, 0)


def test_bottleneck_is_imported_only_when_a_rolling_median_needs_it() -> None:
    """Importing the statistics loads no bottleneck (the lazy-import contract: a command pays for a C extension
    only when it computes with it); the first rolling median does."""
    code = (
        "import sys, numpy as np\n"
        "from dpodoctor import rolling, stats\n"
        "print('bottleneck' in sys.modules)\n"
        "stats.rolling_median(np.arange(200.0), 21)\n"
        "print('bottleneck' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr
