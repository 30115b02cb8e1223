"""The canonical frame constructor: last value wins per (split, metric, step), sorted, categorical names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor.api import load
from dpodoctor.checks import diagnose_run
from dpodoctor.model import Run, make_frame
from dpodoctor.rules import Context
from tests.synthetic import curves, make_run

FIXTURES = Path(__file__).parent / "fixtures"

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


def _nan_run() -> Run:
    """A synthetic healthy run whose loss has a NaN and an inf in it (the masked path of the summaries)."""
    data = curves(200, seed=3)
    data["loss"] = data["loss"].copy()
    data["loss"][[40, 120]] = [np.nan, np.inf]
    return make_run(data)


@pytest.mark.parametrize("source", ["trl/healthy", "trl/lr_too_high", "diagnosis/collapse", "nan"])
def test_rules_get_read_only_views_and_leave_the_frame_unchanged(source: str) -> None:
    """Curves are handed out as views of the frame (no copy per curve: issue 17, defect 7), so they must be
    read-only: a rule writing into one raises instead of changing what every later rule and report reads."""
    run = _nan_run() if source == "nan" else load(FIXTURES / source)[0]
    before = run.frame.copy(deep=True)
    column_steps, column_values = run._columns()
    for split, metric in run.metrics:
        steps, values = run.arrays(metric, split)  # type: ignore[arg-type]
        series = run.series(metric, split)  # type: ignore[arg-type]
        assert np.shares_memory(values, column_values) and np.shares_memory(steps, column_steps)
        for array in (steps, values, series.to_numpy(), series.index.to_numpy()):
            with pytest.raises(ValueError, match="read-only"):
                array[0] = array[0]
        with pytest.raises(ValueError, match="read-only"):
            series.iloc[0] = 0.0
    ctx = Context(run)
    for summary in ctx.curves().values():
        with pytest.raises(ValueError, match="read-only"):
            summary.values[:1] = 0.0
    report = diagnose_run(run)
    assert report.checked  # the rules ran
    pd.testing.assert_frame_equal(run.frame, before)
