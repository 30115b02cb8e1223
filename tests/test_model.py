"""The canonical frame constructor: last value wins per (split, metric, step), sorted, categorical names."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor.model import make_frame

points = st.lists(
    st.tuples(
        st.sampled_from(["train", "eval"]),
        st.sampled_from(["loss", "margins", "accuracy"]),
        st.integers(0, 30),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(points)
def test_last_value_wins_and_rows_are_sorted(rows: list[tuple[str, str, int, float]]) -> None:
    expected: dict[tuple[str, str, int], float] = {}
    for split, metric, step, value in rows:
        expected[(split, metric, step)] = value
    frame = make_frame(*zip(*rows, strict=True)) if rows else make_frame([], [], [], [])
    got = {
        (str(s), str(m), int(t)): v
        for s, m, t, v in frame[["split", "metric", "step", "value"]].itertuples(index=False)
    }
    assert got == expected
    keys = list(zip(frame["split"].astype(str), frame["metric"].astype(str), frame["step"], strict=True))
    assert keys == sorted(keys)
    assert str(frame["split"].dtype) == "category" and str(frame["metric"].dtype) == "category"
