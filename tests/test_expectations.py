"""Expectations' numeric helpers against their plain numpy definitions (property tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from dpodoctor.expectations import _quantum


def _quantum_reference(values: list[float]) -> float | None:
    """The definition: the spacing 1/pairs (pairs 1 to 4) of the first grid every finite accuracy sits on, by
    np.allclose (atol 1e-6), when the accuracies are not all equal."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if len(arr) < 3 or len(np.unique(arr)) < 2:
        return None
    for pairs in (1, 2, 3, 4):
        grid = arr * pairs
        if np.allclose(grid, np.round(grid), atol=1e-6):
            return 1.0 / pairs
    return None


_ACCURACY = st.one_of(
    st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0, -0.0]),
    st.floats(0, 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5 + 1e-7, 0.25 - 5e-7, 1 / 3 + 2e-7, 1e308, -1e308]),
)


@given(st.lists(_ACCURACY, max_size=30))
def test_quantum_is_the_allclose_definition(values: list[float]) -> None:
    """_quantum (all four grids in one expression) finds the grid np.allclose finds, also for values whose
    multiples overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        assert _quantum(values) == _quantum_reference(values)
