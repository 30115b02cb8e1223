"""The frame constructors that skip make_frame's sort (model.frame_from_series, used by the trainer_state reader;
model.frame_from_sorted under it, also used by the stdout reader) give exactly make_frame's frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor.model import frame_from_series, make_frame

_SERIES = st.sampled_from([("train", "loss"), ("train", "epoch"), ("eval", "loss"), ("train", "rewards/margins")])
# (series, step, value) in arrival order; few steps, so repeated and out-of-order steps are common.
_POINTS = st.lists(
    st.tuples(_SERIES, st.integers(0, 12), st.floats(allow_nan=True, allow_infinity=True)), min_size=1, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(points=_POINTS, pieces=st.integers(1, 3))
def test_frame_from_series_equals_make_frame(points: list[tuple[tuple[str, str], int, float]], pieces: int) -> None:
    expected = make_frame(
        [s for (s, _), _, _ in points],
        [m for (_, m), _, _ in points],
        [p for _, p, _ in points],
        [v for *_, v in points],
    )
    grouped: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    # Each series split into up to `pieces` interleaved pieces, as several log layouts would give it.
    for k in range(pieces):
        for key in {key for key, _, _ in points}:
            mine = [(i, p, v) for i, (s, p, v) in enumerate(points) if s == key and i % pieces == k]
            if mine:
                arrival, steps, values = zip(*mine, strict=True)
                grouped.setdefault(key, []).append(
                    (np.array(arrival), np.array(steps, dtype=np.int64), np.array(values, dtype=np.float64))
                )
    got = frame_from_series(grouped)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["split"].cat.codes.dtype == expected["split"].cat.codes.dtype
