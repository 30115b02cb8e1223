"""The numpy statistics equal scipy's: Kendall's tau to the bit, its p-value to a few units in the last place.

scipy is a test-only dependency: ``dpodoctor.stats`` computes Kendall's tau-b and its p-value with numpy, so no
check pays scipy's import (0.7 s per process) or its per-call overhead (1.6 ms). These properties hold the numpy
versions to scipy's results on random inputs of every shape the rules meet: distinct or tied steps, noisy or
trending or integer-valued curves, constants, the exact null distribution (n ≤ 33, no ties), its shortcut for a
(nearly) sorted series of any length, and the blocked inversion count above 256 points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp

from dpodoctor.stats import _inversions, kendall_tau, trend


def _assert_like_scipy(x: np.ndarray, y: np.ndarray) -> None:
    expected = sp.kendalltau(x, y)
    tau, p = kendall_tau(x, y)
    want_tau, want_p = float(expected.statistic), float(expected.pvalue)
    if np.isnan(want_tau):
        assert np.isnan(tau) and np.isnan(p)
        return
    assert tau == want_tau  # bit for bit: the same integer counts and the same float expression
    assert abs(p - want_p) <= 1e-9 * want_p + 1e-300, (p, want_p)


def _steps_and_values(n: int, seed: int, steps: str, values: str) -> tuple[np.ndarray, np.ndarray]:
    """A curve of ``n`` points for the scipy comparisons: sorted steps, ``distinct`` or ``tied`` (a third as many
    distinct values), and values of the named kind, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.integers(0, max(2, n // 3) if steps == "tied" else 10 * n, n)).astype(float)
    y = {
        "noise": lambda: rng.normal(size=n),
        "trend": lambda: 0.01 * x + rng.normal(size=n),
        "integers": lambda: rng.integers(0, 5, n).astype(float),
        "sorted": lambda: np.arange(n, dtype=float),
        "almost_sorted": lambda: np.arange(n, dtype=float)[::-1].copy() if n < 3 else _one_swap(n, rng),
        "constant": lambda: np.full(n, 0.5),
    }[values]()
    return x, y


@settings(max_examples=300, deadline=None)
@given(
    st.integers(2, 700),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["distinct", "tied"]),
    st.sampled_from(["noise", "trend", "integers", "sorted", "almost_sorted", "constant"]),
)
def test_kendall_tau_is_scipys(n: int, seed: int, steps: str, values: str) -> None:
    x, y = _steps_and_values(n, seed, steps, values)
    _assert_like_scipy(x, y)


def _one_swap(n: int, rng: np.random.Generator) -> np.ndarray:
    """0 … n-1 with one neighbouring pair swapped: exactly one discordant pair (scipy's exact shortcut)."""
    y = np.arange(n, dtype=float)
    i = int(rng.integers(0, n - 1))
    y[i], y[i + 1] = y[i + 1], y[i]
    return y


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=700))
def test_inversions_count_every_out_of_order_pair(values: list[int]) -> None:
    a = np.array(values, dtype=np.int64)
    brute = int(np.count_nonzero(np.triu(a[:, None] > a[None, :], 1))) if len(a) else 0
    assert _inversions(a) == brute


def test_trend_of_a_long_rising_series_is_significant_with_scipys_tau() -> None:
    steps = np.arange(1, 5001, dtype=float)
    values = 1e-3 * steps + np.random.default_rng(3).normal(size=len(steps))
    t = trend(pd.Series(values, index=steps))
    assert t.tau == float(sp.kendalltau(steps, values).statistic)
    assert t.significant() and t.slope > 0


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**40).map(float)),
        max_size=600,
    ),
    st.booleans(),
)
def test_median_is_numpys_to_the_bit(values: list[float], as_int: bool) -> None:
    """stats.median (sorted Python list up to 256 values, one partition above) equals np.median bit for bit: the
    same middle values, the same (a + b) / 2, NaN for a NaN anywhere or for no values."""
    import warnings

    from dpodoctor.stats import median

    arr = np.array(values, dtype=float)
    if as_int:
        arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=-1.0).clip(-(2**40), 2**40).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = float(np.median(arr)) if len(arr) else float("nan")
    got = median(arr)
    assert (np.isnan(want) and np.isnan(got)) or got == want, (got, want)
    assert median(list(arr)) == got or (np.isnan(got) and np.isnan(median(list(arr))))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300_000),
    st.sampled_from(["normal", "sorted", "reversed", "ties", "periodic", "heavy_tail", "inf"]),
)
def test_median_of_many_slopes_is_numpys(seed: int, m: int, kind: str) -> None:
    """The bracketed selection (a strided sample, a count below the bracket, a partition inside it) gives np.median's
    value to the bit, on orders and ties chosen to mislead the sample (it then partitions everything)."""
    from dpodoctor.stats import _median_of_slopes

    rng = np.random.default_rng(seed)
    values = {
        "normal": lambda: rng.normal(size=m),
        "sorted": lambda: np.sort(rng.normal(size=m)),
        "reversed": lambda: np.sort(rng.normal(size=m))[::-1].copy(),
        "ties": lambda: rng.integers(0, 4, m).astype(float),
        "periodic": lambda: np.tile([0.0, 1.0, 1.0, 5.0], m // 4 + 1)[:m] * (np.arange(m) % 7 == 0),
        "heavy_tail": lambda: rng.standard_cauchy(m),
        "inf": lambda: np.where(rng.random(m) < 0.3, np.inf, rng.normal(size=m)),
    }[kind]()
    want = float(np.median(values))
    assert _median_of_slopes(values.copy()) == want or (np.isnan(want) and np.isnan(_median_of_slopes(values)))
    assert _median_of_slopes(values.copy(), scratch=True) == want or np.isnan(want)


@settings(max_examples=120, deadline=None)
@given(
    st.integers(2, 700),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["distinct", "tied"]),
    st.sampled_from(["noise", "trend", "integers", "constant"]),
)
def test_theil_sen_is_scipys_to_the_bit(n: int, seed: int, steps: str, values: str) -> None:
    """The Theil-Sen slope (one pair matrix up to 512 points, blocks above; the rows of a matrix at once) is
    scipy.stats.theilslopes' slope bit for bit, pairs with equal steps left out as scipy leaves them."""
    from dpodoctor.stats import theil_sen_slope, theil_sen_slopes

    x, y = _steps_and_values(n, seed, steps, values)
    with np.errstate(invalid="ignore"):  # scipy's confidence interval of a constant series takes sqrt(-0)
        want = float(sp.theilslopes(y, x).slope) if len(np.unique(x)) > 1 else float("nan")
    got = theil_sen_slope(x, y, max_points=n)  # unthinned: longer series are thinned to THEIL_SEN_MAX_POINTS
    assert got == want or (np.isnan(got) and np.isnan(want)), (got, want)
    if n <= 512:
        rows = np.stack([y, y[::-1].copy()])
        together = theil_sen_slopes(x, rows)
        assert together[0] == got or (np.isnan(got) and np.isnan(together[0]))
        assert together[1] == theil_sen_slope(x, rows[1], max_points=n) or np.isnan(together[1])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=400),
    st.integers(1, 60),
    st.integers(1, 5),
)
def test_trailing_median_is_pandas_rolling_median(values: list[float], window: int, min_periods: int) -> None:
    """stats.trailing_median (sorted windows, start padded with NaN) equals pandas' rolling median to the bit."""
    from dpodoctor.stats import trailing_median

    min_periods = min(min_periods, window)
    arr = np.array(values, dtype=float)
    want = pd.Series(arr, dtype=float).rolling(window, min_periods=min_periods).median().to_numpy()
    got = trailing_median(arr, window, min_periods)
    assert np.array_equal(got, want, equal_nan=True), (got, want)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300), min_size=1, max_size=3),
    st.integers(0, 50),
)
def test_rolling_median_is_pandas_centred_rolling_median(curves: list[list[float]], half: int) -> None:
    """stats.rolling_median (sorted windows, both ends padded with NaN), alone and for the rows of a matrix
    (stats.rolling_medians), equals pandas' centred rolling median to the bit, for the odd windows window_for gives."""
    from dpodoctor.stats import rolling_median, rolling_medians

    window = 2 * half + 1
    for values in curves:
        arr = np.array(values)
        want = pd.Series(arr).rolling(window, center=True, min_periods=1).median().to_numpy()
        got = rolling_median(arr, window)
        assert np.array_equal(got, want), (got, want)
        assert np.array_equal(rolling_medians(np.stack([arr, arr[::-1].copy()]), window)[0], want)
