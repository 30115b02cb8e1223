"""The step of each record: dict lines carry none, so it is derived (progress bar, epoch, or order); `name: value`
lines carry theirs in several spellings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

import numpy as np

from dpodoctor.readers.stdout.grammar import EVAL, MAX_STEP, SUMMARY, TRAIN, KvLine
from dpodoctor.readers.stdout.scan import Scan

__all__ = ["NO_STEP", "derive_steps", "kv_steps"]


@dataclass
class _Steps:
    """Each record's step, :data:`NO_STEP` where it has none, and how they were found.

    Why an int64 array and not a list of ints or None: a dict-heavy log has millions of records, and a Python int
    (and a list slot) per record cost ~40 bytes where this costs 8, beside a frame that is being built.
    """

    steps: np.ndarray
    note: str


NO_STEP: Final = -1  # steps are never negative (bar counters, epoch × steps per epoch >= 0, ordinals >= 1)


def _kinds(scan: Scan) -> np.ndarray:
    return np.array(scan.kinds, dtype=np.int8)


def _main_total(scan: Scan) -> bytes | None:
    """The training bar's total: the largest total among the description-less bars seen right before and after
    the dicts and at the end of the log (eval bars are shorter)."""
    totals = set(scan.bar_last) | scan.totals | ({scan._gap_end[1]} if scan._gap_end[1] is not None else set())
    totals.update(scan.cand_total)
    return max(totals, key=int, default=None)


def _check_increasing(kinds: np.ndarray, steps: np.ndarray) -> np.ndarray | None:
    """Strictly increasing train steps, eval records without a step given the preceding train step; else None."""
    train = kinds == TRAIN
    train_steps = steps[train]
    if (train_steps == NO_STEP).any() or (train_steps[1:] <= train_steps[:-1]).any():
        return None
    # The train record at or before each record (-1: none yet).
    last_train = np.maximum.accumulate(np.where(train, np.arange(len(kinds)), -1))
    need = np.flatnonzero((kinds == EVAL) & (steps == NO_STEP))
    if len(need) and (last_train[need] < 0).any():
        return None
    out = steps.copy()
    out[need] = steps[last_train[need]]
    return out


def _steps_from_bars(scan: Scan, kinds: np.ndarray) -> _Steps | None:
    """(a) The counter of the first training-bar redraw after each dict.

    Why this is the step: ``ProgressCallback.on_log`` runs after ``on_step_end`` has moved the bar to
    ``global_step``, and ``tqdm.write`` redraws the bars right after printing the dict.
    """
    wanted = _main_total(scan)
    if wanted is None:
        return None
    # The first candidate of that total of each record (a record's candidates are in order).
    hits = np.flatnonzero(np.array(scan.cand_total, dtype=bytes) == wanted) if scan.cand_total else np.zeros(0, int)
    records, first = np.unique(np.array(scan.cand_rec, dtype=np.int64)[hits], return_index=True)
    counters = np.asarray(scan.cand_n, dtype=np.int64)[hits[first]] if len(hits) else np.zeros(0, int)
    found = np.full(len(kinds), NO_STEP, dtype=np.int64)
    found[records] = counters
    steps = _check_increasing(kinds, found)
    if steps is None:
        return None
    return _Steps(steps, "steps derived from the tqdm progress bar (dict lines carry no step)")


def _epoch_resolution(epochs: list[float]) -> float:
    """How finely epochs were printed (transformers <= 4.x rounds to 0.01; 5.x prints 4 significant digits)."""
    decimals = 0
    for epoch in epochs:
        while decimals < 7:
            scaled = epoch * 10**decimals
            if not math.isfinite(scaled) or abs(scaled - round(scaled)) < 1e-6:
                break
            decimals += 1
    return 10.0**-decimals


def _steps_from_epochs(scan: Scan, kinds: np.ndarray) -> _Steps | None:
    """(b) ``epoch`` × steps per epoch, where steps per epoch = the training bar's total / the final epoch.

    Only when the run visibly reached its end (a summary dict, or the bar at its total): before that, the last
    epoch seen is not the one the bar's total belongs to. Epochs printed rounded (0.06, 0.12, ...) are snapped to
    the logging interval when the rounding alone can explain the distance to it.
    """
    total_key = _main_total(scan)
    if total_key is None:
        return None
    total = int(total_key)
    has = scan.epoch_positions() >= 0
    epochs = scan.epoch_array()  # NaN where a record has no epoch (and where it printed nan)
    finite = epochs[np.isfinite(epochs)]
    summary_epochs = epochs[has & (kinds == SUMMARY)]
    if len(summary_epochs):
        final_epoch = float(summary_epochs[-1])
    elif int(scan.bar_last.get(total_key, b"0")) >= total and len(finite):
        final_epoch = float(finite.max())
    else:
        return None
    if not math.isfinite(final_epoch) or final_epoch <= 0:
        return None
    per_epoch = total / final_epoch
    with np.errstate(over="ignore", invalid="ignore"):
        raw = epochs * per_epoch
        valid = has & (raw >= 0) & (raw < MAX_STEP)  # NaN and inf fail both comparisons
    raw[~valid] = np.nan
    steps = np.full(len(kinds), NO_STEP, dtype=np.int64)
    steps[valid] = np.rint(raw[valid])  # round half to even, as round() does
    note = f"steps derived from epoch × {per_epoch:g} steps per epoch (dict lines carry no step)"

    tolerance = per_epoch * _epoch_resolution(finite.tolist()) / 2
    train_raw = raw[valid & (kinds == TRAIN)]
    diffs = np.diff(train_raw)
    dropped = scan.thinning.dropped_before(len(kinds))
    if dropped is not None:  # a thinned log: the logging interval is the distance per train dict, not per kept one
        train_ordinals = (np.cumsum(kinds == TRAIN, dtype=np.int64) + dropped)[valid & (kinds == TRAIN)]
        diffs = diffs / np.maximum(np.diff(train_ordinals), 1)
    diffs = diffs[diffs > 0]
    if tolerance >= 0.5 and len(diffs):
        interval = round(float(np.median(diffs)))
        if interval >= 2 and tolerance < interval / 2:
            grid = interval * np.rint(raw / interval)
            # 1e-6: a boundary epoch (step 20 of 160 = 0.125, printed 0.12) is exactly `tolerance` away.
            with np.errstate(invalid="ignore"):
                snap = valid & (np.abs(raw - grid) <= tolerance + 1e-6)
            steps[snap] = grid[snap]
            note += f", snapped to the logging interval of {interval} steps (the epochs are printed rounded)"
    checked = _check_increasing(kinds, steps)
    return _Steps(checked, note) if checked is not None else None


def _steps_from_order(scan: Scan, kinds: np.ndarray, why: str) -> _Steps:
    """(c) The ordinal of each train dict; an eval dict takes the step of the train dict before it."""
    with_rows = np.fromiter((bool(info.rows) for info in scan.infos), dtype=bool, count=len(scan.infos))
    # a summary line that carries per-step keys is one more log line
    counted = (kinds == TRAIN) | ((kinds == SUMMARY) & with_rows)
    note = f"steps derived from the order of the log lines (1, 2, 3, ...): {why}"
    ordinals = np.cumsum(counted, dtype=np.int64)
    dropped = scan.thinning.dropped_before(len(kinds))
    if dropped is not None:  # a thinned log: each dropped record was a train dict, one more line before
        ordinals += dropped
    return _Steps(ordinals, note)


def derive_steps(scan: Scan) -> _Steps:
    """The first step source that gives strictly increasing train steps, used for the whole file.

    Why all or nothing: mixing sources inside one file could merge or reorder points silently. A file whose bar
    or epoch steps repeat or go back gets plain ordinals, which at least keep every point and its order.
    """
    kinds = _kinds(scan)
    found = _steps_from_bars(scan, kinds) or _steps_from_epochs(scan, kinds)
    if found is not None:
        return found
    if not scan.bar_last:
        return _steps_from_order(scan, kinds, "there is no training progress bar to take the step from")
    return _steps_from_order(scan, kinds, "the progress bar and the epochs do not give increasing steps")


def kv_steps(lines: list[KvLine]) -> tuple[list[int], str, bool]:
    """The step of each `name: value` line, how it was found, and whether it was derived (line order).

    MiniMind prints the step within the epoch, ``Epoch:[e/E](cur/total)``: when that counter restarts at each epoch
    the global step is ``(e - first epoch) * total + cur``. A counter that keeps growing across epochs is used as
    it is. Without a step on every line, the line order is the step.
    """
    # An eval line without a step of its own (`Validation loss: 0.52, ...`) belongs to the step before it.
    previous: KvLine | None = None
    for line in lines:
        if line.cur is None and line.layout.is_eval and previous is not None:
            line.cur, line.total = previous.cur, previous.total
            line.epoch, line.epochs = previous.epoch, previous.epochs
        previous = line if line.cur is not None else previous
    if any(line.cur is None for line in lines):
        return list(range(1, len(lines) + 1)), "steps derived from the order of the `name: value` lines", True
    raw = [line.cur for line in lines if line.cur is not None]

    def drops(seq: list[int]) -> int:
        return sum(b < a for a, b in pairwise(seq))

    if all(line.epoch is not None and line.total is not None for line in lines):
        base = 0 if min(line.epoch or 0 for line in lines) == 0 else 1
        combined = [((line.epoch or 0) - base) * (line.total or 0) + (line.cur or 0) for line in lines]
        if max(combined) < MAX_STEP and drops(combined) < drops(raw):
            return combined, "steps from the log: (epoch - 1) × steps per epoch + the step within the epoch", False
    return raw, "steps from the log lines (their `cur/total` or `step N`)", False
