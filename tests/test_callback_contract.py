"""The callback's contract (issue 17, defect 1): nothing a trainer or a user logs, and nothing that goes wrong
inside dpodoctor, raises into the training loop; training stops only through the configured gate.

Calls the event handlers directly with the real transformers ``TrainerState``/``TrainerControl``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from transformers import TrainerControl, TrainerState

from dpodoctor.integrations.transformers import MAX_INTERNAL_ERRORS, DPODoctorCallback
from dpodoctor.live import MetricBuffer


class _BadStr:
    """A key whose str() fails."""

    def __str__(self) -> str:
        raise RuntimeError("no name")

    def __hash__(self) -> int:
        return 1


class _BadTensor:
    """A 0-d tensor-like whose item() fails."""

    ndim = 0

    def item(self) -> float:
        raise MemoryError("device lost")


def _trainer(tmp_path: Path) -> tuple[Any, TrainerState, TrainerControl]:
    args = SimpleNamespace(output_dir=str(tmp_path / "out"), beta=0.1, run_name=None)
    state = TrainerState(global_step=0, max_steps=100)
    return args, state, TrainerControl()


HOSTILE_LOGS: list[Any] = [
    {"loss": 10**400},
    {"loss": -(10**400)},
    {1: 0.5},
    {(1, 2): 3.0},
    {b"loss": 0.5},
    {_BadStr(): 0.5},
    {"loss": _BadTensor()},
    {"loss": np.float64("nan"), "grad_norm": "1e999", "x": object(), "y": [1, 2], "z": None},
    ["not", "a", "dict"],
]


@pytest.mark.parametrize("logs", HOSTILE_LOGS, ids=range(len(HOSTILE_LOGS)))
def test_hostile_logs_never_raise_and_never_stop_training(tmp_path: Path, logs: Any) -> None:
    args, state, control = _trainer(tmp_path)
    callback = DPODoctorCallback(stop_on="error", check_every=1, write_reports=False)
    callback.on_train_begin(args, state, control)
    for step in range(1, 4):
        state.global_step = step
        assert callback.on_log(args, state, control, logs=logs) is control
    callback.on_train_end(args, state, control)
    # Stopped only through the gate: a loss of 10**400 is a non-finite loss (DPO001), which stop_on="error" stops on.
    assert control.should_training_stop == (callback.stopped_by is not None)
    assert callback.stopped_by in (None, "DPO001 nonfinite")


def test_values_and_keys_are_coerced_not_swallowed(tmp_path: Path) -> None:
    """The hostile values above are handled by the coercion itself (no internal error), and keep their meaning."""
    args, state, control = _trainer(tmp_path)
    callback = DPODoctorCallback(check_every=1, write_reports=False)
    state.global_step = 1
    callback.on_log(
        args, state, control, logs={"loss": 10**400, b"grad_norm": 2.0, 7: 1.0, (1, 2): 3.0, "x": _BadTensor()}
    )
    assert callback.internal_errors == []
    frame = callback.buffer.frame()
    values = dict(zip(frame["metric"].astype(str), frame["value"], strict=True))
    assert values["loss"] == math.inf and values["grad_norm"] == 2.0
    assert len(frame) == 4  # the int and tuple keys are kept under their str() names


_KEYS = st.one_of(
    st.text(max_size=20), st.binary(max_size=20), st.integers(), st.tuples(st.integers(), st.integers()), st.none()
)
_VALUES = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.integers(min_value=10**300, max_value=10**500),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(logs=st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_any_logged_dict_is_taken_without_an_internal_error(logs: dict[Any, Any]) -> None:
    buffer = MetricBuffer()
    buffer.add_logs(logs, 1, 0.0)  # the buffer's coercion alone: it must not raise
    callback = DPODoctorCallback(check_every=1, write_reports=False)
    args = SimpleNamespace(output_dir="unused", beta=0.1, run_name=None)
    state, control = TrainerState(global_step=1, max_steps=10), TrainerControl()
    callback.on_log(args, state, control, logs=logs)
    assert callback.internal_errors == [] and not control.should_training_stop


def test_an_internal_error_is_logged_once_then_the_callback_disables_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, state, control = _trainer(tmp_path)
    callback = DPODoctorCallback(stop_on="error", check_every=1)

    def broken(run: Any) -> Any:
        raise KeyError("a bug in a rule")

    monkeypatch.setattr(callback._engine, "diagnose", broken)
    with caplog.at_level(logging.DEBUG, logger="dpodoctor"):
        for step in range(1, 11):
            state.global_step = step
            callback.on_log(args, state, control, logs={"loss": 0.69, "rewards/margins": 0.0})
        callback.on_train_end(args, state, control)
    assert len(callback.internal_errors) == MAX_INTERNAL_ERRORS and callback.disabled
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "dpodoctor"]
    assert len(warnings) == 1 and warnings[0].exc_info is not None and "KeyError" in warnings[0].getMessage()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"dpodoctor: {MAX_INTERNAL_ERRORS} internal errors; the callback is disabled and training goes on without it"
    ]
    assert not control.should_training_stop
    assert not (tmp_path / "out").exists()  # disabled: no report written from a broken state


def test_keyboard_interrupt_still_reaches_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args, state, control = _trainer(tmp_path)
    callback = DPODoctorCallback(check_every=1, write_reports=False)

    def interrupted(run: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(callback._engine, "diagnose", interrupted)
    state.global_step = 1
    with pytest.raises(KeyboardInterrupt):
        callback.on_log(args, state, control, logs={"loss": 0.69})
