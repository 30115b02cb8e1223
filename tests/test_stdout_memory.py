"""The stdout reader's memory on a dict-heavy log grows by a bounded number of bytes per point (issue 17, defect 7),
and dropping the scan's values during the frame build changes nothing that is read.

Why bytes counted by tracemalloc and not time or RSS: allocations are deterministic for a given input, where time
and RSS depend on the machine and its load (the 600 MB figures are measured by ``benchmarks/stdout_memory.py``).
The cost per point is the slope between two log sizes, so the fixed costs (imports, a chunk's temporaries,
compiled patterns) cancel out.
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpodoctor.readers.stdout import scan as scanning
from dpodoctor.readers.stdout.grammar import EVAL, SUMMARY, TRAIN
from dpodoctor.readers.stdout.reader import StdoutReader, read_file_runs
from dpodoctor.readers.stdout.runs import results_from_scan
from dpodoctor.readers.stdout.steps import NO_STEP, _check_increasing
from tests.conftest import FIXTURES

# The frame holds 18 bytes a point (int8 split and metric codes, int64 step, float64 value; no wall times). While
# it is built, the scan's values (8 bytes a value, one a point here) are held beside the value column only. Measured:
# 21.8 bytes a point; 50.8 before the steps were an array, the value column was built first and the scan released.
MAX_PEAK_BYTES_PER_POINT = 26

KEYS = ("loss", "grad_norm", "learning_rate", "rewards/chosen", "rewards/rejected", "rewards/accuracies")


def _write_log(path: Path, dicts: int) -> int:
    """A TRL-shaped console log: tqdm redraws between metric dicts, an eval bar and dict every 50 steps. Returns the
    number of points the reader should find (each dict's keys plus its epoch)."""
    lines = ["***** Running training *****\n"]
    points = 0
    total = dicts * 10
    for k in range(1, dicts + 1):
        step = k * 10
        # tqdm.write redraws the training bar after each dict: its counter is the dict's step
        bar = f"\r{step * 100 // total:3d}%|███       | {step}/{total} [00:01<00:09,  2.00it/s]"
        r = 1 - math.exp(-k / 500)
        values = ", ".join(f"'{key}': {0.69 - 0.3 * r + i * 0.01:.6g}" for i, key in enumerate(KEYS))
        lines.append(f"\n{{{values}, 'epoch': {k / dicts:.6g}}}\n{bar}")
        points += len(KEYS) + 1
        if k % 50 == 0:  # the eval dict's epoch is the train dict's point at that step: not a point of its own
            lines.append(f"\r100%|██████████| 8/8 [00:00<00:00, 9.0it/s]\n{{'eval_loss': {0.6 - 0.1 * r:.6g}, ")
            lines.append(f"'eval_rewards/accuracies': 0.8, 'epoch': {k / dicts:.6g}}}\n{bar}")
            points += 2
    path.write_text("".join(lines), encoding="utf-8")
    return points


def _peak_of_read(path: Path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        read_file_runs(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_read_peaks_at_a_bounded_number_of_bytes_per_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks, so a chunk's temporaries are small beside the points of these small logs.
    monkeypatch.setattr(scanning, "CHUNK", 64 * 1024)
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    n_small, n_large = _write_log(small, 4_000), _write_log(large, 16_000)
    [result] = read_file_runs(large)
    assert len(result.frame) == n_large  # every point is read: the bound is not met by dropping data
    assert "progress bar" in result.notes[0] and result.frame["step"].max() == 16_000 * 10
    read_file_runs(small)  # compiled patterns and first-use caches, outside the measurement
    per_point = (_peak_of_read(large) - _peak_of_read(small)) / (n_large - n_small)
    assert 18 <= per_point <= MAX_PEAK_BYTES_PER_POINT


STDOUT_LOGS = sorted(
    p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix in {".log", ".txt", ".out"} and StdoutReader().sniff(p)
)


@pytest.mark.parametrize("path", STDOUT_LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_releasing_the_scan_during_the_build_reads_the_same_runs(path: Path) -> None:
    """``release=True`` (the whole-file read) drops the scan's values once the value column holds them; the runs
    are those of a read that keeps them (the live tail's), and the released scan holds no values."""
    kept = scanning.scan_file(path)
    released = scanning.scan_file(path)
    try:
        want = results_from_scan(kept, path)
    except Exception as exc:  # a file without metrics: the same error either way
        with pytest.raises(type(exc)):
            results_from_scan(released, path, release=True)
        return
    got = results_from_scan(released, path, release=True)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(a.frame, b.frame)
        assert (a.notes, a.ended, a.summary, a.label) == (b.notes, b.ended, b.summary, b.label)
    if len(want) == 1 and released.kinds:
        assert len(released.values.flat()) == 0 and not released.cand_total


def _check_increasing_by_loop(kinds: list[int], steps: list[int]) -> list[int] | None:
    """The record-by-record rule :func:`_check_increasing` vectorises (as it was written before)."""
    last_train: int | None = None
    out = list(steps)
    for i, kind in enumerate(kinds):
        if kind == TRAIN:
            if out[i] == NO_STEP or (last_train is not None and out[i] <= last_train):
                return None
            last_train = out[i]
        elif kind == EVAL and out[i] == NO_STEP:
            if last_train is None:
                return None
            out[i] = last_train
    return out


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    records=st.lists(st.tuples(st.sampled_from([TRAIN, TRAIN, EVAL, SUMMARY]), st.integers(NO_STEP, 12)), max_size=30)
)
def test_vectorised_step_check_equals_the_record_by_record_rule(records: list[tuple[int, int]]) -> None:
    kinds = [kind for kind, _ in records]
    steps = [step for _, step in records]
    got = _check_increasing(np.array(kinds, dtype=np.int8), np.array(steps, dtype=np.int64))
    want = _check_increasing_by_loop(kinds, steps)
    assert (got is None and want is None) or (got is not None and got.tolist() == want)
