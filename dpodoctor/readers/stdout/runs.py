"""From a finished scan to results: where one file holds several runs, how each ended, and its tidy frame."""

from __future__ import annotations

import math
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported when a frame is built, not when this module is (sniffing a file)
    import pandas as pd

from dpodoctor.errors import NoMetricsError
from dpodoctor.metrics import (
    canonical,
)
from dpodoctor.model import Ended, code_dtype, empty_frame, frame_from_sorted, last_per_step, make_frame
from dpodoctor.readers import ReadResult
from dpodoctor.readers.stdout.grammar import CRASH_MARKERS, SUMMARY, TRAIN, KeyInfo, Table
from dpodoctor.readers.stdout.scan import KvScan, Scan
from dpodoctor.readers.stdout.steps import NO_STEP, derive_steps, kv_steps
from dpodoctor.readers.stdout.thinning import BUDGET_ENV

__all__ = ["results_from_scan", "thinning_note"]


def _result_from_dicts(scan: Scan, release: bool = False) -> ReadResult:
    derived = derive_steps(scan)
    if release:
        scan.release_bars()  # read only to derive the steps
    notes = [derived.note]
    steps = derived.steps
    summary: dict[str, float] = {}
    dropped: set[int] = set()
    # End-of-run summary dicts (a few at most): their summary keys, and whether their per-step keys become a point.
    # Found with numpy: a list of the train records' indices is a Python int each (~36 bytes a record).
    kinds = np.array(scan.kinds, dtype=np.int8)
    summaries = np.flatnonzero(kinds == SUMMARY).tolist()
    if summaries:
        trains = np.flatnonzero(kinds == TRAIN)
        for i in summaries:
            info, vals, step = scan.infos[i], scan.values.row(i), int(steps[i])
            for j, name in info.summary:
                summary[name] = vals[j]
            if not info.rows:
                dropped.add(i)
                continue
            before = int(np.searchsorted(trains, i))
            last_train = int(steps[trains[before - 1]]) if before else None
            extra = sorted({m for _, _, m in info.rows} - {"epoch"})
            shown = ", ".join(extra[:6]) + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
            if step == NO_STEP or (last_train is not None and step <= last_train):
                notes.append(f"the final train_runtime line also carried {shown}: ignored (no step for it)")
                dropped.add(i)
                continue
            notes.append(
                f"the final train_runtime line also carried {shown}: stored as a train point at step {step} "
                "(the average over the steps after the last logging step)"
            )
    has_step = steps != NO_STEP
    has_step[list(dropped)] = False
    kept = np.flatnonzero(has_step)
    frame = _frame_from_records(scan, kept, steps, release) if len(kept) else empty_frame()
    return ReadResult(frame=frame, steps_derived=True, summary=summary, notes=notes)


def _layout_numbers(infos: list[KeyInfo], kept: np.ndarray) -> tuple[list[KeyInfo], np.ndarray]:
    """The distinct layouts of the records ``kept``, in order of first appearance, and each record's number in it.

    Why with numpy on the layouts' ids: a loop over the records made an int object per record (the index, the
    number), tens of MB on a 600 MB log, freed into heap pages that stay resident beside the frame being built.
    """
    ids = np.fromiter(map(id, infos), dtype=np.uint64, count=len(infos))[kept]  # an address: never negative
    distinct, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # the layouts by first appearance
    number = np.empty(len(distinct), dtype=np.int64)
    number[order] = np.arange(len(distinct))
    layouts = [infos[int(kept[first[k]])] for k in order.tolist()]
    return layouts, number[inverse.reshape(-1)]


def _frame_from_records(scan: Scan, kept: np.ndarray, steps: np.ndarray, release: bool = False) -> pd.DataFrame:
    """The frame of the records ``kept`` (indices, in file order; ``steps``: each record's step), written straight
    into its final, sorted columns. With ``release``, the scan's values are dropped as soon as the value column
    holds them (the caller owns the scan and will not read it again: a whole-file read).

    Why not :func:`~dpodoctor.model.make_frame`: it takes every point in arrival order and sorts them, which needs
    several full-length temporaries (codes, steps, values, the order) beside the frame: hundreds of MB for a
    600 MB log. Here each (split, metric) series is gathered from the layouts that hold it, put in step order
    (arrival order kept among equal steps, the last one wins, as make_frame does) and written into columns
    allocated once, so the extra memory is one series at a time. The categories are the labels present, sorted.

    Why the value column first, and the step and code columns in a second pass: the scan's values (8 bytes a
    value) and the whole frame (18 bytes a point) were held at once; now the values meet only the value column,
    and the steps and codes are written after the values are released (on a 600 MB log: 7.8M points, 60 MiB less
    at the peak). The second pass finds each series' order again (a few int arrays a series), keeping nothing.
    """
    layouts, of_record = _layout_numbers(scan.infos, kept)
    # (split, metric) -> where its values are: (layout number, position in the record, order among the rows)
    series: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for g, info in enumerate(layouts):
        for r, (position, split, metric) in enumerate(info.rows):
            series.setdefault((split, metric), []).append((g, position, r))
    split_labels = sorted({s for s, _ in series})
    metric_labels = sorted({m for _, m in series})
    members = [np.flatnonzero(of_record == g) for g in range(len(layouts))]
    del of_record
    upper = sum(len(members[g]) for parts in series.values() for g, _, _ in parts)
    kept_at = np.frombuffer(scan.values.offsets, dtype=np.int64)[kept]
    kept_steps = steps[kept]
    width = max(len(info.rows) for info in layouts)

    def points_of(parts: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A series' records, value positions and steps, in step order, a repeated step keeping its last value."""
        records = np.concatenate([members[g] for g, _, _ in parts])
        positions = np.concatenate([np.full(len(members[g]), p, dtype=np.int64) for g, p, _ in parts])
        if len(parts) > 1:  # several layouts (or keys of one) hold it: back to arrival order
            rows = np.concatenate([np.full(len(members[g]), r, dtype=np.int64) for g, _, r in parts])
            order = np.argsort(records * width + rows, kind="stable")
            records, positions = records[order], positions[order]
        points = kept_steps[records]
        if len(points) > 1 and not bool((points[1:] > points[:-1]).all()):
            points, chosen = last_per_step(points, np.arange(len(points)))
            records, positions = records[chosen], positions[chosen]
        return records, positions, points

    names = sorted(series)
    value_col = np.empty(upper, dtype=np.float64)
    source = scan.values.flat()
    at = 0
    for name in names:
        records, positions, _ = points_of(series[name])
        value_col[at : at + len(records)] = source[kept_at[records] + positions]
        at += len(records)
    del source, kept_at
    if release:
        scan.release_values()
    split_col = np.empty(at, dtype=code_dtype(len(split_labels)))
    metric_col = np.empty(at, dtype=code_dtype(len(metric_labels)))
    step_col = np.empty(at, dtype=np.int64)
    at = 0
    for split, metric in names:
        _, _, points = points_of(series[(split, metric)])
        n = len(points)
        split_col[at : at + n] = split_labels.index(split)
        metric_col[at : at + n] = metric_labels.index(metric)
        step_col[at : at + n] = points
        at += n
    return frame_from_sorted(split_col, split_labels, metric_col, metric_labels, step_col, value_col[:at])


def _table_runs(table: Table) -> list[list[tuple[int | None, list[tuple[str, float]]]]]:
    """The table's rows, cut where the Step column goes back (a second run printed its own table)."""
    runs: list[list[tuple[int | None, list[tuple[str, float]]]]] = [[]]
    last: int | None = None
    for step, items in table.rows:
        if step is not None and last is not None and step < last and runs[-1]:
            runs.append([])
        runs[-1].append((step, items))
        last = step if step is not None else last
    return runs


def _result_from_table(table: Table, rows: list[tuple[int | None, list[tuple[str, float]]]]) -> ReadResult:
    split: list[str] = []
    metric: list[str] = []
    steps: list[int] = []
    values: list[float] = []
    for ordinal, (step, items) in enumerate(rows, start=1):
        for key, value in items:
            mapped = canonical(key)
            if mapped is None:
                continue
            split.append(mapped[0])
            metric.append(mapped[1])
            steps.append(step if step is not None else ordinal)
            values.append(value)
    notes = ["read from the step table printed in the log"]
    if not table.has_step:
        notes.append("steps derived from the order of the table rows (1, 2, 3, ...): the table has no Step column")
    frame = make_frame(split, metric, steps, values) if split else empty_frame()
    return ReadResult(frame=frame, steps_derived=not table.has_step, notes=notes)


def _one_run(scan: Scan) -> bool:
    """Whether :func:`_run_bounds` can only find one run, tested with numpy: no train dict after a summary dict,
    and finite epochs that never go back (the usual file: one run). Why: the loop there costs a second per
    million records."""
    kinds = np.array(scan.kinds, dtype=np.int64)
    summaries = np.flatnonzero(kinds == SUMMARY)
    if len(summaries) and (kinds[summaries[0] :] == TRAIN).any():
        return False
    epochs = scan.epoch_array()
    epochs = epochs[np.isfinite(epochs)]
    return bool((epochs[1:] >= epochs[:-1]).all()) if len(epochs) > 1 else True


def _run_bounds(scan: Scan) -> list[tuple[int, int, str]]:
    """Where the runs of a file start: (first record, end, why a new run starts there).

    Why these signs: transformers prints a train dict only while training, and the epoch only grows within a run
    (eval dicts repeat the current epoch). So a train dict after the end-of-training summary, or any dict whose
    epoch is smaller than one already seen, belongs to a run started after the previous one, such as a second
    ``python train.py >> train.log``. The bars are not used: buffering can print them out of order with the dicts.
    """
    if _one_run(scan):
        return [(0, len(scan.kinds), "")]
    starts: list[tuple[int, str]] = [(0, "")]
    finished = False
    top: float | None = None
    for i, (kind, epoch) in enumerate(zip(scan.kinds, scan.epochs, strict=True)):
        finite = epoch is not None and math.isfinite(epoch)
        if kind != SUMMARY and i > starts[-1][0]:
            why = ""
            if finished and kind == TRAIN:
                why = "a new training log follows the end-of-training summary (train_runtime) of the run before"
            elif finite and top is not None and epoch is not None and epoch < top:
                why = f"the epoch goes back from {top:g} to {epoch:g}"
            if why:
                starts.append((i, why))
                finished, top = False, None
        if kind == SUMMARY:
            finished = True
        if finite and epoch is not None:
            top = epoch if top is None else max(top, epoch)
    ends = [lo for lo, _ in starts[1:]] + [len(scan.kinds)]
    return [(lo, hi, why) for (lo, why), hi in zip(starts, ends, strict=True)]


def _set_ending(result: ReadResult, kinds: list[int], crash: bytes | None, crash_after_finish: bool) -> None:
    if SUMMARY in kinds:
        result.ended = Ended.FINISHED
        if crash_after_finish:
            result.notes.append("the log shows an error after the end-of-training summary (training had ended)")
    elif crash is not None:
        result.ended = Ended.CRASHED
        result.notes.append(f"the log shows {CRASH_MARKERS[crash]} after the last metric line of this run")


def _dict_runs(scan: Scan, release: bool) -> list[ReadResult]:
    bounds = _run_bounds(scan)
    if len(bounds) == 1:
        result = _result_from_dicts(scan, release)
        _set_ending(result, scan.kinds, scan.crash, scan.crash_after_finish)
        if scan.crash is not None and SUMMARY not in scan.kinds:
            result.notes[-1] = f"the log ends with {CRASH_MARKERS[scan.crash]} after the last metric line"
        return [result]
    results = []
    for k, (lo, hi, why) in enumerate(bounds):
        last = k == len(bounds) - 1
        part = scan.part(lo, hi, last)
        result = _result_from_dicts(part)
        crash = part.crash
        _set_ending(result, part.kinds, crash, crash is not None and SUMMARY in part.kinds)
        if why:
            result.notes.append(f"a new run starts here in the same file: {why}")
        if not last and result.ended is Ended.UNKNOWN:
            result.notes.append(
                "another run follows this one in the same file; this one has no end-of-training summary"
            )
        results.append(result)
    return results


def _kv_runs(kv: KvScan) -> list[ReadResult]:
    """Results from `name: value` lines: one per run, a run ending where the step goes back."""
    lines = kv.lines
    steps, how, derived = kv_steps(lines)
    combined = "epoch" in how
    starts = [0] + [i for i in range(1, len(lines)) if steps[i] < steps[i - 1]]
    ends = [*starts[1:], len(lines)]
    results: list[ReadResult] = []
    for k, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
        split: list[str] = []
        metric: list[str] = []
        points: list[int] = []
        values: list[float] = []
        for line, step in zip(lines[lo:hi], steps[lo:hi], strict=True):
            split.extend(line.layout.splits)
            metric.extend(line.layout.metrics)
            points.extend(repeat(step, len(line.values)))
            values.extend(line.values)
        notes = [f"read {hi - lo} `name: value` line(s) (no metric dicts or step table in the log)", how]
        if k > 0:
            notes.append(f"a new run starts here in the same file: the step goes back to {steps[lo]}")
        frame = make_frame(split, metric, points, values) if split else empty_frame()
        result = ReadResult(frame=frame, steps_derived=derived, notes=notes)
        last = lines[hi - 1]
        total = last.total
        done: int
        planned: int | None
        if total is not None and combined and last.epochs is not None:
            done, planned = steps[hi - 1], last.epochs * total
        else:
            done, planned = (last.cur or 0), total
        epochs_done = last.epoch is None or last.epochs is None or last.epoch >= last.epochs
        crash = kv.crash if k == len(starts) - 1 else kv.crash_after.get(hi - 1)
        if planned is not None and done >= planned and epochs_done and not derived:
            result.ended = Ended.FINISHED
        elif crash is not None:
            result.ended = Ended.CRASHED
            result.notes.append(f"the log shows {CRASH_MARKERS[crash]} after the last metric line of this run")
        if planned is not None and result.ended is not Ended.FINISHED and not derived:
            result.notes.append(f"stopped at step {done} of {planned}")
        results.append(result)
    return results


def thinning_note(scan: Scan, path: Path) -> str:
    """What a thinned read dropped and kept, for the run's notes (and so the report): a reader never drops data
    silently."""
    thinning = scan.thinning
    held, records = scan.values.size(), len(scan.kinds)
    stride = thinning.stride
    suffix = "th" if stride % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(stride % 10, "th")
    every = f"{stride}{suffix}"
    return (
        f"{path.name}: {held + thinning.dropped_points:,} values in {records + thinning.dropped_records:,} metric "
        f"dicts, above the reader's bound of {thinning.budget:,} points: every {every} train dict was kept "
        f"({held:,} values in {records:,} dicts read), with the first and last, every eval and summary dict and the "
        "train dict before it, and each thinned stretch's non-finite values and loss/grad_norm outliers "
        f"(${BUDGET_ENV} sets the bound)"
    )


def results_from_scan(scan: Scan, path: Path, release: bool = False) -> list[ReadResult]:
    """The runs a scan of ``path`` found (see read_file_runs); :class:`StdoutTail` feeds its scan live.

    ``release``: the caller will not read or feed the scan again (a whole-file read), so its values may be dropped
    once the frame holds them, which lowers the peak memory of a huge log (see :func:`_frame_from_records`).
    """
    # Written before the frames are built: a whole-file read releases the scan's values as it builds them.
    thinned = thinning_note(scan, path) if scan.kinds and scan.thinning.active else None
    if scan.kinds:
        results = _dict_runs(scan, release)
        if scan.table.rows:
            results[0].notes.append("the log also holds a step table; the dict lines were read instead")
    elif scan.table.rows:
        results = [_result_from_table(scan.table, rows) for rows in _table_runs(scan.table)]
        if scan.crash is not None:
            results[-1].ended = Ended.CRASHED
            results[-1].notes.append(f"the log ends with {CRASH_MARKERS[scan.crash]} after the last metric line")
    elif scan.kv.lines:
        results = _kv_runs(scan.kv)
    elif scan.complete and scan.size == 0:
        raise NoMetricsError("empty file (0 bytes): no DPO metrics", path)
    else:
        binary = "" if scan.nul_at is None else f"; it holds binary data (a NUL byte at byte {scan.nul_at}), not text"
        raise NoMetricsError(
            f"no DPO metrics found (no metric dict lines, step table or `name: value` lines){binary}", path
        )
    if thinned is not None:
        for result in results:
            result.notes.append(thinned)
    if scan.encoding is not None:
        results[0].notes.append(f"decoded from {scan.encoding.upper()} (the capture was not UTF-8)")
    if scan.torn_at is not None and results[-1].ended is Ended.UNKNOWN:
        where = "" if scan.encoding else f" at byte {scan.torn_at}"
        results[-1].ended = Ended.TRUNCATED
        results[-1].notes.append(
            f"the log ends mid-line{where} (its last line has no line break): truncated, cut while it was written"
        )
    if len(results) > 1:
        for k, result in enumerate(results, start=1):
            result.label = f"run{k}"
            result.notes.insert(0, f"run {k} of {len(results)} appended to this file")
    return results
