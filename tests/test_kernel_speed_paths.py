"""The long-curve speed paths of dpodoctor.stats give the bits of the paths they stand in for, signed zeros included.

Theil-Sen from the pair slopes laid out by lag (:func:`dpodoctor.stats._folded_slopes`, 160 points and more) against
the same function with that path switched off (every pair in index order, as scipy orders them), and the middle
order statistics from a random sample's bracket against the strided-bracket selection it replaced, on curves chosen
to break them: ties, repeated and unsorted steps, ``+0.0`` beside ``-0.0``, NaN and infinities, constant stretches.
``==`` cannot tell ``0.0`` from ``-0.0`` and a JSON report can (``-0`` vs ``0``), so every comparison here is of bits.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor import stats


def same_bits(a: float, b: float) -> bool:
    return bool(np.float64(a).tobytes() == np.float64(b).tobytes()) or (np.isnan(a) and np.isnan(b))


def _curve(n: int, seed: int, steps: str, values: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = {
        "even": lambda: np.arange(n, dtype=float) * float(rng.integers(1, 50)),
        "repeated": lambda: np.sort(rng.integers(0, max(2, n // 2), n)).astype(float),
        "unsorted": lambda: rng.permutation(n).astype(float) * 3.0,
        "huge": lambda: np.linspace(-1.0, 1.0, n) * 1.5e308,  # the longest differences overflow to inf
    }[steps]()
    y = {
        "noise": lambda: rng.normal(size=n),
        "walk": lambda: np.cumsum(rng.normal(size=n)),
        "eighths": lambda: rng.integers(0, 9, n) / 8.0,  # an accuracy of 8 pairs a batch: many equal values
        "signed_zeros": lambda: np.where(rng.random(n) < 0.5, 0.0, -0.0) + (rng.random(n) < 0.2),
        "mostly_flat": lambda: np.where(rng.random(n) < 0.9, 0.25, rng.normal(size=n)),
        "nan": lambda: np.where(rng.random(n) < 0.01, np.nan, rng.normal(size=n)),
        "inf": lambda: np.where(rng.random(n) < 0.01, np.inf, rng.normal(size=n)),
        "tiny": lambda: rng.normal(size=n) * 1e-310,  # slopes underflow to signed zeros
    }[values]()
    return x, y


@settings(max_examples=250, deadline=None)
@given(
    st.integers(3, 640),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["even", "repeated", "unsorted", "huge"]),
    st.sampled_from(["noise", "walk", "eighths", "signed_zeros", "mostly_flat", "nan", "inf", "tiny"]),
    st.sampled_from([400, 500, None]),
)
def test_folded_theil_sen_is_the_pair_order_slope_to_the_bit(
    n: int, seed: int, steps: str, values: str, max_points: int | None
) -> None:
    x, y = _curve(n, seed, steps, values)
    limit = max_points or n
    with np.errstate(all="ignore"):
        got = stats.theil_sen_slope(x, y, max_points=limit)
        folded = stats._FOLD_MIN_POINTS
        try:
            stats._FOLD_MIN_POINTS = 1 << 30  # every pair in index order: the path scipy's order is checked against
            want = stats.theil_sen_slope(x, y, max_points=limit)
        finally:
            stats._FOLD_MIN_POINTS = folded
    assert same_bits(got, want), (got, want)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 160, 161, 500, 501])
def test_folded_differences_hold_every_pair_once(n: int) -> None:
    """Odd and even lengths (an even one has a half row of lag n / 2): each pair i < j once, as +-(v[j] - v[i])."""
    values = np.random.default_rng(n).permutation(n).astype(float) ** 2  # distinct differences
    folded = stats._folded_differences(values)
    i, j = np.triu_indices(n, 1)
    assert len(folded) == n * (n - 1) // 2
    assert np.array_equal(np.sort(np.abs(folded)), np.sort(np.abs(values[j] - values[i])))


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.one_of(st.integers(1, 140_000), st.integers(stats._BRACKET_MIN, 140_000)),
    st.sampled_from(["normal", "signed_zeros", "zeros_plus", "zeros_minus", "ties", "sorted", "cauchy", "inf"]),
)
def test_bracketed_order_statistics_are_the_strided_ones_to_the_bit(seed: int, m: int, kind: str) -> None:
    """Both middle order statistics (and np.median's value from them), for sizes on both sides of the bracket's
    threshold, including arrays whose middle is a zero of either sign or of both."""
    rng = np.random.default_rng(seed)
    values = {
        "normal": lambda: rng.normal(size=m),
        "signed_zeros": lambda: (
            np.where(rng.random(m) < rng.random(), 0.0, -0.0) + (rng.random(m) < rng.random() / 2) * rng.normal(size=m)
        ),
        "zeros_plus": lambda: np.where(rng.random(m) < 0.6, 0.0, rng.normal(size=m)),
        "zeros_minus": lambda: np.where(rng.random(m) < 0.6, -0.0, rng.normal(size=m)),
        "ties": lambda: rng.integers(-2, 3, m).astype(float),
        "sorted": lambda: np.sort(rng.normal(size=m)),
        "cauchy": lambda: rng.standard_cauchy(m),
        "inf": lambda: np.where(rng.random(m) < 0.3, -np.inf, rng.normal(size=m)),
    }[kind]()
    k = m // 2
    low = k - 1 if m % 2 == 0 else k
    want = stats._middle_order_statistics_strided(values.copy(), low, k, scratch=True)
    for scratch in (False, True):
        before = values.copy()
        got = stats._middle_order_statistics(values, low, k, scratch=scratch)
        assert same_bits(got[0], want[0]) and same_bits(got[1], want[1]), (got, want)
        if not scratch:
            assert np.array_equal(values, before)  # left as it was
        values = before
    if m > stats._PYTHON_MEDIAN_MAX:  # stats.median's value from the same two, as (a + b) / 2 for an even count
        assert same_bits(stats.median(values), want[1] if m % 2 else (want[0] + want[1]) / 2)


def test_bracket_sample_is_fixed_and_read_only() -> None:
    """The sample positions depend on the array's length only (a check's time does not vary between runs) and no
    caller can reorder them."""
    first = stats._bracket_sample(125_000)
    assert np.array_equal(first, np.sort(first)) and not first.flags.writeable
    stats._bracket_sample.cache_clear()
    assert np.array_equal(stats._bracket_sample(125_000), first)
    assert len(np.unique(first)) == len(first) == stats._bracket_sample_size(125_000)


def test_kernels_script_times_every_kernel_at_every_length() -> None:
    """benchmarks/kernels.py (the proof of the speed paths' figures) still runs: a figure for each kernel at 100,
    500 and 10k points, and the cold diagnosis of a committed fixture."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    fixture = root / "tests" / "fixtures" / "trl" / "healthy"
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "kernels.py"), "--repeat", "1", "--diagnose", str(fixture)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = dict(line.rsplit(None, 1) for line in proc.stdout.strip().splitlines())
    for kernel in ("theil_sen_slope", "kendall_tau", "median", "noise_sigma_of", "rolling_median", "trend"):
        for n in (100, 500, 10_000):
            assert float(figures[f"{kernel}@{n}"]) > 0, proc.stdout
    assert float(figures["diagnose_run ms/run healthy"]) > 0, proc.stdout
