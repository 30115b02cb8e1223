"""The pair statistics' speed paths give the numbers of the plain definitions: stats._inversions (blocks of 32, then
stable-argsort merges) against counting every pair, and Theil-Sen with the steps' pair differences kept between
curves against scipy.stats.theilslopes, whatever order curves of different steps come in."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import stats


def brute_inversions(values: np.ndarray) -> int:
    return int(np.count_nonzero(np.triu(values[:, None] > values[None, :], 1)))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 3000), st.sampled_from([2, 40, 1000, 10**6]))
def test_inversions_of_long_arrays_count_every_out_of_order_pair(seed: int, n: int, distinct: int) -> None:
    """Lengths on both sides of the 256-value dense path and of every block and merge width (not multiples of 32
    too), few or many distinct ranks, and already sorted or reversed runs."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, distinct, n)
    if n and rng.random() < 0.3:
        values = np.sort(values)[:: 1 if rng.random() < 0.5 else -1].copy()
    assert stats._inversions(values) == brute_inversions(values)


@pytest.mark.parametrize("n", [257, 288, 1024, 1025, 4099])
def test_inversions_of_edge_lengths(n: int) -> None:
    """Exactly at the block and merge boundaries, where the padding and a lone last block show."""
    rng = np.random.default_rng(n)
    for values in (rng.permutation(n), np.arange(n)[::-1].copy(), np.zeros(n, dtype=np.int64), rng.integers(0, 3, n)):
        assert stats._inversions(values) == brute_inversions(values)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.sampled_from(["a", "b", "tied"]), min_size=1, max_size=8))
def test_theil_sen_with_kept_step_differences_is_scipys(seed: int, grids: list[str]) -> None:
    """Curves on two step grids and one with repeated steps, in any order: each slope is scipy's to the bit, as it
    is with an empty cache, and the kept arrays stay read-only."""
    rng = np.random.default_rng(seed)
    steps = {
        "a": np.unique(np.linspace(0, 9_999, 500).round()),
        "b": np.arange(0.0, 3_000.0, 10.0),
        "tied": np.sort(rng.integers(0, 60, 200)).astype(float),
    }
    for name in grids:
        x = steps[name]
        y = np.cumsum(rng.normal(size=len(x)))
        got = stats.theil_sen_slope(x, y)
        assert got == float(sp.theilslopes(y, x).slope)
        stats._step_pair_differences.cache_clear()
        assert stats.theil_sen_slope(x, y) == got
    dx, nonzero = stats._step_pair_differences(steps["tied"].tobytes())
    assert nonzero is not None and not dx.flags.writeable and not nonzero.flags.writeable
