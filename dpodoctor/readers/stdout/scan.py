"""One pass over a console log: the chunk loop shared by the whole-file read and the live tail, and the state it
fills (records, candidate progress bars, crash markers, a step table, `name: value` lines).

Why one loop: the whole-file read (:func:`scan_file`) and the live tail (:class:`ChunkFeeder` fed by
``StdoutTail.poll``) must cut chunks, carry the unfinished last line and look for a table header the same way, or
a followed log and a later ``dpodoctor check`` of it would disagree. The scan keeps parsed records, never text, so a
multi-GB log never sits in memory as one string.
"""

from __future__ import annotations

import re
import sys
from array import array
from bisect import bisect_left
from itertools import repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Final

import numpy as np

from dpodoctor.errors import ReadError
from dpodoctor.readers.stdout.grammar import (
    BAR_CANDIDATES,
    BAR_RE,
    CSV_DROP,
    DICT_MAX,
    DICT_RE,
    EPOCH_COL,
    EPOCH_RE,
    EVAL_WORD_RE,
    KV_HINT_RE,
    KV_LINE_MAX,
    KV_RE,
    LINE_BREAK_RE,
    MAX_LAYOUTS,
    MAX_STEP,
    NO_LOG,
    NO_LOG_RE,
    NOT_METRICS,
    PAREN_STEP_RE,
    PLAIN_KEY_RE,
    STEP_COL,
    STEP_WORD_RE,
    SUMMARY,
    TABLE_HINT_RE,
    TO_CSV,
    KeyInfo,
    KvLayout,
    KvLine,
    Table,
    check_re,
    csv_floats,
    key_info,
    kv_layout,
    last_crash,
    layout_re,
    parse_pairs,
    parse_table_header,
    probe_re,
    table_hint,
    to_float,
)
from dpodoctor.readers.stdout.pasted import UnwrapReader
from dpodoctor.readers.stdout.thinning import Thinning
from dpodoctor.readers.textio import Utf8Reader

__all__ = [
    "CHUNK",
    "MAX_CARRY",
    "TRIM_AFTER",
    "ChunkFeeder",
    "KvScan",
    "Scan",
    "cut_point",
    "return_freed_heap",
    "scan_file",
]

CHUNK: Final = 4 * 1024 * 1024


MAX_CARRY: Final = 1024 * 1024


_DICT_SPLIT_RE: Final = re.compile(b"(" + DICT_RE.pattern + b")")


_BAR_SPLIT_RE: Final = re.compile(b"(" + BAR_RE.pattern + b")")


def _split(pattern: re.Pattern[bytes], text: bytes) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """``pattern.split(text)`` (pieces: the text before a match, then the match's groups, the first being the whole
    match, and so on), with the (start, end) offsets of the matches.

    Why re.split and not finditer: it returns plain bytes, no match object or tuple per match, so a chunk with
    hundreds of thousands of matches costs neither those objects nor the garbage-collector passes they trigger;
    the offsets follow from the lengths of the pieces.
    """
    pieces = pattern.split(text)
    step = pattern.groups + 1
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    for inner in range(2, step):
        lengths[inner::step] = 0  # a group inside the match: no text of its own
    offsets = np.cumsum(lengths) - lengths
    starts = offsets[1::step]
    return pieces, starts, starts + lengths[1::step]


class KvScan:
    """The `name: value` lines of a file, collected only while no metric dict has been seen."""

    def __init__(self, done: bool = False) -> None:
        self.done = done
        self.lines: list[KvLine] = []
        self.crash: bytes | None = None  # the crash marker after the last line
        self.crash_after: dict[int, bytes] = {}  # line index -> the crash marker after it
        self._layouts: dict[tuple[tuple[bytes, ...], bool], KvLayout] = {}

    def feed(self, text: bytes, end: int) -> None:
        """Find the lines of ``text[:end]`` with two or more pairs.

        Why a hint first: the pair regex cannot start with a literal, so running it over every byte is slow on
        megabytes of progress bars. The hint (a colon right after a letter or a space, then a number) starts with
        one, which the regex engine finds at memchr speed; only lines that hold a hint are parsed.
        """
        spans: list[tuple[int, int]] = []
        pos = 0
        while (hint := KV_HINT_RE.search(text, pos, end)) is not None:
            at = hint.start()
            line_start = pos
            lo = max(line_start, at - KV_LINE_MAX)
            before = max(text.rfind(b"\n", lo, at), text.rfind(b"\r", lo, at))
            brk = LINE_BREAK_RE.search(text, at, min(end, at + KV_LINE_MAX))
            stop = brk.start() if brk else min(end, at + KV_LINE_MAX)
            pos = stop + 1
            if (brk is None and stop < end) or (before < 0 and lo > line_start):
                continue  # longer than KV_LINE_MAX: not a metric line
            start = before + 1 if before >= 0 else line_start
            line = text[start:stop]
            pairs = KV_RE.findall(line)
            if len(pairs) >= 2 and self._add(line, pairs):
                spans.append((start, stop))
        if not self.lines:
            return
        crash = last_crash(text, spans[-1][1] if spans else 0, end)
        if spans or crash is not None:
            self.crash = crash
        if spans and last_crash(text, 0, end) is not None:
            first = len(self.lines) - len(spans)
            if first > 0 and (marker := last_crash(text, 0, spans[0][0])) is not None:
                self.crash_after[first - 1] = marker  # after the last line of the previous chunk
            for k, (_, stop) in enumerate(spans[:-1]):
                if (marker := last_crash(text, stop, spans[k + 1][0])) is not None:
                    self.crash_after[first + k] = marker

    def _add(self, line: bytes, pairs: list[tuple[bytes, bytes]]) -> bool:
        # Plain substring tests first: they rule out most lines much faster than the case-insensitive regexes.
        is_eval = (b"val" in line or b"VAL" in line or b"Val" in line) and EVAL_WORD_RE.search(line) is not None
        names = tuple(map(itemgetter(0), pairs))
        layout = self._layouts.get((names, is_eval))
        if layout is None:
            layout = kv_layout(names, is_eval)
            if len(self._layouts) < MAX_LAYOUTS:
                self._layouts[(names, is_eval)] = layout
        if not layout.useful:
            return False
        values = [float(pairs[i][1]) for i in layout.index]
        cur = total = epoch = epochs = None
        if (m := PAREN_STEP_RE.search(line)) is not None or (
            (b"tep" in line or b"TEP" in line or b"ter" in line or b"TER" in line)
            and (m := STEP_WORD_RE.search(line)) is not None
        ):
            cur = int(m.group(1))
            total = int(m.group(2)) if m.group(2) else None
        elif layout.step_index is not None:
            value = float(pairs[layout.step_index][1])
            cur = int(value) if value.is_integer() and 0 <= value < MAX_STEP else None
        if (b"poch" in line or b"POCH" in line) and (m := EPOCH_RE.search(line)) is not None:
            epoch, epochs = int(m.group(1)), int(m.group(2))
        self.lines.append(KvLine(layout, values, cur, total, epoch, epochs))
        return True


_EPOCH_AT: Final = attrgetter("epoch_at")


class Values:
    """The numeric values of every record: one flat float64 buffer and each record's offset into it.

    Why one growing ``array('d')``: a dict-heavy log has millions of values; a list per record would cost an object
    per value, and a list of numpy blocks joined at the end would briefly need the values twice. The array grows in
    place (realloc), 8 bytes a value, and numpy reads it without a copy.
    """

    def __init__(self) -> None:
        self.offsets = array("q", [0])  # 8 bytes a record, not an int object each
        self._data = array("d")
        self._part: np.ndarray | None = None  # the values of a part (see part): a view of its scan's buffer

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def add(self, row: list[float]) -> None:
        try:
            self._data.extend(row)
        except BufferError:
            self._unpin().extend(row)
        self.offsets.append(self.offsets[-1] + len(row))

    def add_block(self, block: np.ndarray) -> None:
        """Records of one layout at once: ``block`` holds one row per record."""
        n, width = block.shape
        raw = np.ascontiguousarray(block, dtype=np.float64).tobytes()
        try:
            self._data.frombytes(raw)
        except BufferError:
            self._unpin().frombytes(raw)
        last = self.offsets[-1]
        self.offsets.extend(range(last + width, last + width * n + 1, width))

    def _unpin(self) -> array[float]:
        """A copy of the buffer, free to grow. Why: an array cannot grow while a numpy view of it (from
        :meth:`flat`) is alive, as when a live tail's results still hold one; the copy leaves that view intact."""
        self._data = array("d", self._data)
        return self._data

    def flat(self) -> np.ndarray:
        if self._part is not None:
            return self._part
        return np.frombuffer(self._data, dtype=np.float64) if self._data else np.zeros(0, dtype=np.float64)

    def row(self, i: int) -> list[float]:
        return self.flat()[self.offsets[i] : self.offsets[i + 1]].tolist()

    def size(self) -> int:
        """How many values are held (all records)."""
        return len(self._part) if self._part is not None else len(self._data)

    def keep_records(self, lo: int, keep: np.ndarray) -> None:
        """Keep the records before ``lo`` and, of those from ``lo`` on, only the ones at the indices ``keep``
        (increasing). Why a new buffer: the kept values are gathered once; a numpy view of the old one (a live
        tail's results) stays valid."""
        offsets = np.array(self.offsets, dtype=np.int64)
        flat = self.flat()
        starts = offsets[keep]
        lengths = offsets[keep + 1] - starts
        ends = np.cumsum(lengths)
        gather = np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)
        base = int(offsets[lo])
        data = array("d")
        data.frombytes(flat[:base].data.cast("B"))  # a view: copied once, into the new buffer
        data.frombytes(flat[gather].data.cast("B"))
        del flat, gather
        self._part = None
        self._data = data
        self.offsets = array("q", offsets[: lo + 1].tobytes())
        self.offsets.frombytes((ends + base).tobytes())

    def part(self, lo: int, hi: int) -> Values:
        """The records ``lo:hi``."""
        sub = Values()
        start = self.offsets[lo]
        sub._part = self.flat()[start : self.offsets[hi]]
        sub.offsets = array("q", [o - start for o in self.offsets[lo : hi + 1]])
        return sub


class Scan:
    """Everything one pass over a file collects. Fed chunk by chunk; keeps parsed records, never the text."""

    def __init__(self, budget: int | None = None) -> None:
        self.kinds: list[int] = []
        self.infos: list[KeyInfo] = []
        self.values = Values()
        # The first description-less bars after each record (before the next one), flat: the record's index (never
        # decreasing), the bar's counter and its total.
        # Why arrays and interned totals: a long log has millions of candidate bars, and an int and a bytes object
        # per bar cost ~130 bytes where these cost ~24 (the totals are a handful of values, shared).
        self.cand_rec = array("q")
        self.cand_n = array("q")  # the bar's counter (at most 12 digits: it fits)
        self.cand_total: list[bytes] = []
        self._interned: dict[bytes, bytes] = {}
        # Only the first candidate of each total is kept per record (all that step derivation and run splitting
        # read); how many bars the open last record has been offered, and the totals it holds, bound the rest.
        self._open_offered = 0
        self._open_totals: set[int] = set()
        self._total_ids: dict[bytes, int] = {}
        self.bar_last: dict[bytes, bytes] = {}  # after the last record: bar total -> the last counter
        self.totals: set[bytes] = set()  # totals of the last bar before each record
        # The gap after the last record so far: whether it holds a `%|`, and the total of the bar at its last one.
        self._gap_end: tuple[bool, bytes | None] = (False, None)
        # The same, per record: the index of the record the bar precedes (and in totals_of, the total), to split a
        # file into runs.
        self.totals_at = array("q")
        self.totals_of: list[bytes] = []  # parallel to totals_at: two flat lists, not a tuple per record
        self.crash: bytes | None = None  # the crash marker seen after the last record
        # Record index -> the crash marker seen after it, before the next record (to end a run inside a file).
        self.crash_after: dict[int, bytes] = {}
        self.crash_after_finish = False
        self.table = Table()
        self.kv = KvScan()
        # What the whole-file read saw of the file itself (a live tail leaves them unset: its file is still growing).
        self.complete = False  # the whole file was scanned (StdoutReader), not a live tail
        self.size = 0  # bytes of text scanned
        self.encoding: str | None = None  # the UTF-16/32 codec the file was decoded from, if any
        self.nul_at: int | None = None  # offset of the first NUL byte: binary data, not console text
        self.torn_at: int | None = None  # offset of a last line that has no line break (the file was cut there)
        self._infos: dict[tuple[bytes, ...], KeyInfo] = {}
        self._layouts = 0
        self._last: KeyInfo | None = None  # the layout of the previous record: usually the next one's too
        self._main: KeyInfo | None = None  # the most frequent metric layout with a compiled pattern
        self._open = False  # the last record still collects bars
        # Above a point budget, train dicts are thinned between chunks (see .thinning); below it, never.
        self.thinning = Thinning(budget)

    @property
    def epochs(self) -> list[float | None]:
        """Each record's ``epoch`` value, None where its layout has none. Read from the values, not kept twice."""
        values = self.values.flat()
        at = self.epoch_positions()
        found = np.flatnonzero(at >= 0)
        out: list[float | None] = [None] * len(at)
        for i, value in zip(found.tolist(), values[at[found]].tolist(), strict=True):
            out[i] = value
        return out

    def epoch_array(self) -> np.ndarray:
        """:attr:`epochs` as float64, NaN where a record has none."""
        at = self.epoch_positions()
        out = np.full(len(at), np.nan)
        has = at >= 0
        out[has] = self.values.flat()[at[has]]
        return out

    def epoch_array_of(self, lo: int) -> np.ndarray:
        """The epochs of the records ``lo:`` (:meth:`epoch_array`'s tail, without a pass over the others)."""
        infos = self.infos[lo:]
        per_record = np.fromiter(map(_EPOCH_AT, infos), dtype=np.int64, count=len(infos))
        starts = np.array(self.values.offsets[lo : lo + len(infos)], dtype=np.int64)
        out = np.full(len(infos), np.nan)
        has = per_record >= 0
        out[has] = self.values.flat()[starts[has] + per_record[has]]
        return out

    def epoch_positions(self) -> np.ndarray:
        """Where each record's epoch sits in the flat values, -1 where its layout has no epoch."""
        per_record = np.fromiter(map(_EPOCH_AT, self.infos), dtype=np.int64, count=len(self.infos))
        starts = np.array(self.values.offsets[: len(per_record)], dtype=np.int64)
        return np.where(per_record >= 0, starts + per_record, -1)

    def release_bars(self) -> None:
        """Drop the candidate bars and the bar totals before each record: what step derivation and run splitting
        read, ~40 bytes a record. Only for a scan that is not read or fed again once its steps are derived
        (``results_from_scan(..., release=True)``); a live tail's scan keeps growing and keeps them."""
        self.cand_rec, self.cand_n, self.cand_total = array("q"), array("q"), []
        self.totals_at, self.totals_of = array("q"), []

    def release_values(self) -> None:
        """Drop the values (8 bytes each), keeping the records' kinds and layouts and what the file showed (crash
        markers, encoding, size): a whole-file read no longer needs them once its frame holds them. Same condition
        as :meth:`release_bars`."""
        self.values = Values()

    def keep_records(self, lo: int, keep: np.ndarray) -> None:
        """Drop records: keep those before ``lo`` and, from ``lo`` on, those at the indices ``keep`` (increasing,
        the last record among them), with everything attached to them (values, candidate bars, the bar totals
        before them, crash markers after them). Called by :mod:`.thinning` between chunks, never mid-chunk."""
        n = len(self.kinds)
        new_index = np.full(n - lo, -1, dtype=np.int64)
        new_index[keep - lo] = np.arange(lo, lo + len(keep))
        picked = keep.tolist()
        kinds, infos = self.kinds, self.infos
        self.kinds = kinds[:lo] + [kinds[i] for i in picked]
        self.infos = infos[:lo] + [infos[i] for i in picked]
        del kinds, infos
        self.values.keep_records(lo, keep)
        # candidate bars: those of a dropped record go with it
        a = bisect_left(self.cand_rec, lo)
        rec = np.array(self.cand_rec[a:], dtype=np.int64)
        mapped = new_index[rec - lo]
        held = np.flatnonzero(mapped >= 0)
        cand_n = np.array(self.cand_n[a:], dtype=np.int64)[held]
        self.cand_rec = self.cand_rec[:a] + array("q", mapped[held].tobytes())
        self.cand_n = self.cand_n[:a] + array("q", cand_n.tobytes())
        self.cand_total = self.cand_total[:a] + [self.cand_total[a + j] for j in held.tolist()]
        # the bar total before a dropped record now comes before the next kept one (the last record is kept)
        b = bisect_left(self.totals_at, lo)
        before = np.searchsorted(keep, np.array(self.totals_at[b:], dtype=np.int64), side="left") + lo
        self.totals_at = self.totals_at[:b] + array("q", before.astype(np.int64).tobytes())
        crash_after = {(k if k < lo else int(new_index[k - lo])): v for k, v in self.crash_after.items()}
        self.crash_after = {k: v for k, v in crash_after.items() if k >= 0}  # thinning keeps them: no loss

    def part(self, lo: int, hi: int, last: bool) -> Scan:
        """The records ``lo:hi`` as a scan of their own (one run of a file that holds several)."""
        sub = Scan(self.thinning.budget)
        sub.kinds = self.kinds[lo:hi]
        sub.infos = self.infos[lo:hi]
        sub.values = self.values.part(lo, hi)
        sub.thinning = self.thinning.part(lo, hi, len(self.kinds))
        a, b = bisect_left(self.cand_rec, lo), bisect_left(self.cand_rec, hi)
        sub.cand_rec = array("q", [r - lo for r in self.cand_rec[a:b]])
        sub.cand_n = self.cand_n[a:b]
        sub.cand_total = self.cand_total[a:b]
        first = bisect_left(self.totals_at, lo)
        stop = len(self.totals_at) if last else bisect_left(self.totals_at, hi)
        sub.totals = set(self.totals_of[first:stop])
        sub._gap_end = self._gap_end if last else (False, None)
        if not last:
            # The bars after a run's last record are the next run's: keep those of a total this run used.
            k = bisect_left(sub.cand_rec, hi - 1 - lo)
            own = sub.totals | set(sub.cand_total[:k])
            if own:
                keep = [j for j in range(k, len(sub.cand_rec)) if sub.cand_total[j] in own]
                sub.cand_rec = sub.cand_rec[:k] + array("q", [sub.cand_rec[j] for j in keep])
                sub.cand_n = sub.cand_n[:k] + array("q", [sub.cand_n[j] for j in keep])
                sub.cand_total = sub.cand_total[:k] + [sub.cand_total[j] for j in keep]
        sub.bar_last = self.bar_last if last else {}
        sub.crash = self.crash if last else self.crash_after.get(hi - 1)
        sub.crash_after_finish = self.crash_after_finish if last else sub.crash is not None and SUMMARY in sub.kinds
        return sub

    def feed(self, text: bytes, end: int, maybe_table: bool) -> None:
        """Scan ``text[:end]`` (complete lines only)."""
        starts: list[int] = []
        ends: list[int] = []
        chunk = text if end == len(text) else text[:end]
        pieces, body_start, body_end = _split(_DICT_SPLIT_RE, chunk)
        bodies = pieces[1::2]
        body_starts, body_ends = body_start.tolist(), body_end.tolist()
        i = 0
        # Record by record until one metric layout has been seen twice (and so has a compiled pattern) ...
        while i < len(bodies) and self._main is None:
            if self._add_record(bodies[i]):
                starts.append(body_starts[i])
                ends.append(body_ends[i])
            i += 1
        # ... then the rest in bulk.
        if i < len(bodies):
            self._add_bulk(bodies[i:], body_starts[i:], body_ends[i:], starts, ends)
        self._add_bars(chunk, starts, ends)
        # The state of the bars where the chunk ends: after the last record, this is how the log leaves them.
        tail = BAR_RE.findall(chunk, ends[-1] if ends else 0)
        if tail:
            self.bar_last.update({total: n for n, total in tail})
        was_open = self._open
        self._open = self._open or bool(starts)

        crash = last_crash(text, ends[-1] if ends else 0, end)
        if starts or crash is not None:
            self.crash = crash
        if crash is not None and SUMMARY in self.kinds:
            self.crash_after_finish = True
        if self.kinds and last_crash(text, 0, end) is not None:
            # Rare (a marker in this chunk), so worth the search per gap: which record each marker follows.
            first = len(self.kinds) - len(starts)
            owners = [first - 1 if was_open else -1, *range(first, len(self.kinds))]
            for owner, lo, hi in zip(owners, [0, *ends], [*starts, end], strict=True):
                if owner >= 0 and (marker := last_crash(text, lo, hi)) is not None:
                    self.crash_after[owner] = marker

        # `name: value` lines are only wanted while the file has shown no metric dict.
        if self.kinds:
            if not self.kv.done:
                self.kv = KvScan(done=True)
        else:
            self.kv.feed(text, end)

        # A table is only read when the log has no metric dicts, so stop looking once one was found.
        if self.table.columns is not None or (not self.kinds and maybe_table and TABLE_HINT_RE.search(text, 0, end)):
            self._scan_table(text, end)

    def _add_bars(self, text: bytes, starts: list[int], ends: list[int]) -> None:
        """Give each record its candidate bars, and note the bar each record follows.

        The gaps are the stretches between records (the first belongs to the record left open by the previous
        chunk). A record's candidates are the first description-less bars of the gap after it; the total of the
        bar at the last ``%|`` of a gap is noted (usually the training bar, which proves the bar's total even
        where buffering put a run of eval bars right after a record).

        Why one pass over the chunk: a log that prints a dict every step has as many gaps as records, and a regex
        call per gap cost more than the bars themselves. One split finds every bar, numpy assigns each to its gap
        by position, and only the few per record that are kept reach Python.
        """
        end = len(text)
        pieces, bar_start, bar_end = _split(_BAR_SPLIT_RE, text)
        counters, totals = pieces[2::4], pieces[3::4]
        first = len(self.kinds) - len(starts)
        gap_lo = np.array([0, *ends], dtype=np.int64)
        gap_hi = np.array([*starts, end], dtype=np.int64)
        last_pct = _last_in_gaps(text, b"%|", gap_lo, gap_hi)
        gap = np.searchsorted(gap_lo, bar_start, side="right") - 1
        inside = np.flatnonzero(bar_end <= gap_hi[gap])  # a bar never reaches into a record
        gap_in = gap[inside]
        # The bar at the last `%|` of each gap, if it is one.
        last = np.searchsorted(gap_in, np.arange(len(gap_lo)), side="right") - 1
        has = (last >= 0) & (last_pct >= 0)
        has[has] &= (gap_in[last[has]] == np.flatnonzero(has)) & (bar_start[inside[last[has]]] == last_pct[has])
        # The gap still open at the chunk's start continues the previous chunk's last gap, and the gap at its end
        # may continue into the next: their last `%|` is known only once a record closes them (or the file ends).
        head = (True, totals[int(inside[last[0]])] if has[0] else None) if last_pct[0] >= 0 else self._gap_end
        if len(gap_lo) == 1:
            self._gap_end = head
            self._add_candidates(gap, inside, gap_in, len(gap_lo), counters, totals, first)
            return
        if head[1] is not None:
            self.totals_at.append(first)
            self.totals_of.append(self._intern(head[1]))
            self.totals.add(head[1])
        middle = np.flatnonzero(has[1:-1]) + 1
        ending = [self._intern(totals[k]) for k in inside[last[middle]].tolist()]
        self.totals_at.extend((middle + first).tolist())
        self.totals_of.extend(ending)
        self.totals.update(ending)
        tail = len(gap_lo) - 1
        self._gap_end = (bool(last_pct[tail] >= 0), totals[int(inside[last[tail]])] if has[tail] else None)
        self._add_candidates(gap, inside, gap_in, len(gap_lo), counters, totals, first)

    def _add_candidates(
        self,
        gap: np.ndarray,
        inside: np.ndarray,
        gap_in: np.ndarray,
        gaps: int,
        counters: list[bytes],
        totals: list[bytes],
        first: int,
    ) -> None:
        """The first description-less bars of each gap become the candidates of the record before it (the open
        record of the previous chunk gets only as many as it still lacks)."""
        rank = np.arange(len(gap_in)) - np.searchsorted(gap_in, gap_in, side="left")
        room = np.full(gaps, BAR_CANDIDATES, dtype=np.int64)
        if self._open and first > 0:
            room[0] = BAR_CANDIDATES - self._open_offered
        else:
            room[0] = 0  # no record before the first gap
        offered = rank < room[gap_in]
        offered_bar = inside[offered]
        offered_gap = gap_in[offered]
        if not len(offered_bar):
            if gaps > 1:
                self._open_offered, self._open_totals = 0, set()
            return
        # Totals as small ids, found for the whole chunk at once (a handful of distinct values, many bars).
        distinct, inverse = np.unique(
            np.array([totals[k] for k in offered_bar.tolist()], dtype=bytes), return_inverse=True
        )
        ids = self._total_ids
        total_id = np.array([ids.setdefault(self._intern(d), len(ids)) for d in distinct.tolist()], dtype=np.int64)
        total_id = total_id[inverse.reshape(-1)]
        # Of those, the first of each total per gap (the open record: of a total it does not hold yet).
        first_of = np.unique(offered_gap * (len(ids) + 1) + total_id, return_index=True)[1]
        first_of.sort()
        if room[0] > 0 and self._open_totals:
            held = (offered_gap[first_of] == 0) & np.isin(total_id[first_of], list(self._open_totals))
            first_of = first_of[~held]
        keep = offered_bar[first_of].tolist()
        in_last = offered_gap[first_of] == gaps - 1
        last_totals = set(total_id[first_of][in_last].tolist())
        last_offered = int(np.count_nonzero(offered_gap == gaps - 1))
        if gaps > 1:
            self._open_offered, self._open_totals = last_offered, last_totals
        else:
            self._open_offered += last_offered
            self._open_totals |= last_totals
        self.cand_rec.extend((gap[keep] + (first - 1)).tolist())
        self.cand_n.extend([int(counters[k]) for k in keep])
        names = list(ids)  # ids are given in insertion order: names[i] is the total of id i
        self.cand_total.extend(map(names.__getitem__, total_id[first_of].tolist()))

    def _intern(self, total: bytes) -> bytes:
        """One shared object per distinct bar total (a log has a handful: the training bar's, the eval bar's)."""
        return self._interned.setdefault(total, total)

    def _add_bulk(
        self, bodies: list[bytes], body_starts: list[int], body_ends: list[int], starts: list[int], ends: list[int]
    ) -> None:
        """Add the records among ``bodies`` (dict candidates, in order), parsing those of the main layout at once.

        Why: a log that prints a dict every step holds hundreds of thousands of them, nearly all of one layout, and
        per-record Python work dominated its reading. One findall over the joined bodies picks out the bodies of the
        main layout with their value strings, and the CSV parser converts those values in bulk; any other body (an
        eval or summary dict, a dict some code printed, a value that is no number) goes through :meth:`_add_record`,
        as before. The records, their values and their order are exactly what record-by-record parsing gives.
        """
        main = self._main
        assert main is not None and main.probe is not None
        joined = b"\n".join(bodies) + b"\n"
        width = len(main.keys)
        fast: list[int] = []
        block = None
        if main.plain_keys and main.check is not None:
            # Fastest: mark the bodies of the main layout, then turn them into CSV lines in one translate.
            marks = main.check.findall(joined)
            if len(marks) == len(bodies):
                fast = [i for i, mark in enumerate(marks) if mark]
                if fast:
                    text = b"\n".join([bodies[i] for i in fast]).translate(TO_CSV, CSV_DROP)
                    block = csv_floats(text, len(fast), width)
        if block is None:
            # Values the translation cannot carry (np.float64(...) wrappers): capture them with the layout's groups.
            rows = main.probe.findall(joined)
            # (quote, number) per value; a number is never empty, so an empty first one means "not this layout".
            fast = [i for i, row in enumerate(rows) if row[1]] if len(rows) == len(bodies) else []
            if fast:
                text = b"\n".join([b",".join(rows[i]) for i in fast])
                block = csv_floats(text, len(fast), width)
        if block is None:
            for body, start, stop in zip(bodies, body_starts, body_ends, strict=True):
                if self._add_record(body):
                    starts.append(start)
                    ends.append(stop)
            return
        is_record = np.zeros(len(bodies), dtype=bool)
        is_record[fast] = True
        slow = np.flatnonzero(~is_record).tolist()
        done = taken = 0
        # Runs of main-layout records are added as blocks; each other dict between them goes record by record.
        for stop in [*slow, len(bodies)]:
            if stop > done:
                self._add_block(main, block[taken : taken + stop - done])
                taken += stop - done
            if stop < len(bodies):
                is_record[stop] = self._add_record(bodies[stop])
            done = stop + 1
        main.seen += len(fast)
        chosen = np.flatnonzero(is_record)
        starts.extend(np.array(body_starts, dtype=np.int64)[chosen].tolist())
        ends.extend(np.array(body_ends, dtype=np.int64)[chosen].tolist())

    def _add_block(self, info: KeyInfo, block: np.ndarray) -> None:
        n = len(block)
        self.kinds.extend(repeat(info.kind, n))
        self.infos.extend(repeat(info, n))
        self.values.add_block(block)
        self._last = info

    def _add_record(self, body: bytes) -> bool:
        info, values = self._parse(body)
        if info is None or info.kind == NOT_METRICS:
            return False
        self._last = info
        self.kinds.append(info.kind)
        self.infos.append(info)
        self.values.add(values)
        return True

    def _parse(self, body: bytes) -> tuple[KeyInfo | None, list[float]]:
        last = self._last
        if last is not None and last.layout is not None and (m := last.layout.fullmatch(body)) is not None:
            try:
                return last, list(map(float, m.groups()[1::2]))
            except ValueError:
                pass
        parsed = parse_pairs(body)
        if parsed is None:
            return None, []
        keys, values = parsed
        info = self._infos.get(keys)
        if info is None:
            info = self._infos[keys] = key_info(keys)
        info.seen += 1
        if info.seen == 2 and info.kind != NOT_METRICS and self._layouts < MAX_LAYOUTS:
            info.layout = layout_re(keys)
            info.probe = probe_re(info.layout)
            info.check = check_re(keys)
            info.plain_keys = all(PLAIN_KEY_RE.fullmatch(k) for k in keys)
            self._layouts += 1
        if info.probe is not None and (self._main is None or info.seen > self._main.seen):
            self._main = info
        return info, values

    def _scan_table(self, text: bytes, end: int) -> None:
        table = self.table
        pos = 0
        while pos < end:
            if table.columns is None:
                hint = TABLE_HINT_RE.search(text, pos, end)
                if hint is None:
                    return
                start = max(text.rfind(b"\n", 0, hint.start()), text.rfind(b"\r", 0, hint.start())) + 1
                brk = LINE_BREAK_RE.search(text, hint.end(), end)
                line_end = brk.start() if brk else end
                columns = parse_table_header(text[start:line_end].decode("utf-8", errors="replace"))
                if columns is not None:
                    table.columns = columns
                    table.has_step = STEP_COL in columns
                    table.is_eval = "eval_loss" in columns
                pos = line_end + 1
                continue
            brk = LINE_BREAK_RE.search(text, pos, end)
            line_end = brk.start() if brk else end
            line = text[pos:line_end].decode("utf-8", errors="replace")
            if not line.strip() or "%|" in line:
                pos = line_end + 1  # blank lines and progress bars between rows do not end the table
            elif self._add_table_row(line):
                pos = line_end + 1
            else:
                table.columns = None  # the table ended; this line may be the next table's header

    def _add_table_row(self, line: str) -> bool:
        table = self.table
        assert table.columns is not None
        cells = NO_LOG_RE.sub(NO_LOG, line).split()
        if len(cells) != len(table.columns):
            return False
        step: int | None = None
        items: list[tuple[str, float]] = []
        for column, cell in zip(table.columns, cells, strict=True):
            if cell == NO_LOG:
                continue
            value = to_float(cell)
            if value is None:
                return False
            if column == STEP_COL:
                if not value.is_integer() or not 0 <= value < MAX_STEP:
                    return False
                step = int(value)
                continue
            key = "epoch" if column == EPOCH_COL else column
            if table.is_eval and key not in ("loss", "eval_loss", "epoch") and not key.startswith("eval_"):
                key = "eval_" + key  # the notebook table shows eval metrics beside "Validation Loss"
            items.append((key, value))
        table.rows.append((step, items))
        return True


def cut_point(text: bytes) -> int:
    """Where to stop scanning this chunk: at the last line break (the unfinished line is carried over).

    With no line break in the last ``MAX_CARRY`` characters, cut at the last ``{`` before the end instead: a dict
    holds no brace, so a dict that crosses the cut starts at that ``{`` and stays whole for the next chunk.
    """
    cut = max(text.rfind(b"\n"), text.rfind(b"\r"))
    if cut > 0 and len(text) - cut <= MAX_CARRY:
        return cut
    if len(text) <= MAX_CARRY:
        return max(cut, 0)
    cut = len(text) - DICT_MAX - 2
    brace = text.rfind(b"{", max(0, cut - DICT_MAX - 2), cut)
    return brace if brace > 0 else cut


def _last_in_gaps(text: bytes, needle: bytes, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``text.rfind(needle, lo[i], hi[i])`` for every i: from one split of the text when the gaps outnumber the
    occurrences (a log that prints a dict every step: a call per gap cost more than the search), else per gap.
    ``needle`` cannot overlap itself (``%|``)."""
    if text.count(needle) > len(lo):  # more occurrences than gaps (bars redrawn between sparse dicts): per gap
        return np.fromiter(map(text.rfind, repeat(needle), lo.tolist(), hi.tolist()), np.int64, len(lo))
    lengths = np.fromiter(map(len, text.split(needle)), dtype=np.int64)
    found = np.cumsum(lengths[:-1]) + len(needle) * np.arange(len(lengths) - 1, dtype=np.int64)
    if not len(found):
        return np.full(len(lo), -1, dtype=np.int64)
    at = np.searchsorted(found, hi - len(needle), side="right") - 1
    candidate = found[np.maximum(at, 0)]
    return np.where((at >= 0) & (candidate >= lo), candidate, -1)


class ChunkFeeder:
    """The one chunk loop: feeds a :class:`Scan` with the complete lines of the bytes pushed to it, carrying the
    unfinished last line (a dict half written, a tqdm bar mid-redraw) until its line break arrives.

    Why shared: :func:`scan_file` pushes a whole file chunk by chunk and ``StdoutTail.poll`` pushes what was
    appended since its last poll; both must cut, carry and look for a table header the same way, so a record is
    never parsed from half a line and a followed log gives what a later whole-file read gives.
    """

    def __init__(self, scan: Scan | None = None) -> None:
        self.scan = scan if scan is not None else Scan()
        self.carry = b"\n"  # a virtual line start, so a bar on the very first line counts as description-less
        self.hint_before = False  # the carried-over text came from a chunk that may hold a table header

    def push(self, raw: bytes, final: bool = False) -> None:
        """Scan the complete lines of ``carry + raw``; with ``final`` (the file ended) the last line too."""
        text = self.carry + raw
        cut = len(text) if final else cut_point(text)
        hint = not self.scan.kinds and table_hint(raw)
        if cut > 0:
            self.scan.feed(text, cut, hint or self.hint_before)
            self.scan.thinning.bound(self.scan)
        if final:
            self.scan.thinning.finish(self.scan)
        self.carry = text[cut:]
        self.hint_before = hint


TRIM_AFTER: Final = 64 * CHUNK  # bytes scanned; below this the heap left over is a few MB, not worth a call


def return_freed_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``); a no-op elsewhere.

    Why: each chunk's temporaries (the split pieces, the offset arrays) are freed, but glibc keeps the pages they
    used, because the records kept meanwhile sit between them; on a 600 MB log that was 45-56 MiB of resident
    memory held, unused, through the frame build and the diagnosis that follow (and 30-85 MiB more after the frame
    build, once the scan is gone). ``malloc_trim(0)`` releases the free pages inside the heap too (glibc >= 2.8),
    in milliseconds.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # only here: most checks never scan a log this large

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim): nothing to give back this way
        pass


def scan_file(path: Path, budget: int | None = None) -> Scan:
    """Scan a whole file in chunks of :data:`CHUNK` bytes (UTF-16/32 transcoded, dicts wrapped over lines joined),
    noting what only a whole-file read can tell: its size, a NUL byte, and a last line cut mid-way. ``budget``:
    the point budget above which train dicts are thinned (:mod:`.thinning`; default: its ``MAX_POINTS`` or
    ``$DPODOCTOR_STDOUT_MAX_POINTS``)."""
    feeder = ChunkFeeder(Scan(budget))
    scan = feeder.scan
    try:
        with path.open("rb") as handle:
            stream = UnwrapReader(Utf8Reader(handle))
            while True:
                raw = stream.read(CHUNK)
                final = not raw
                if scan.nul_at is None and (nul := raw.find(b"\x00")) >= 0:
                    scan.nul_at = scan.size + nul
                scan.size += len(raw)
                if final:
                    # A last line without a line break: the writer was stopped mid-line (or the copy was cut).
                    text = feeder.carry
                    last_break = max(text.rfind(b"\n"), text.rfind(b"\r"))
                    if text[last_break + 1 :].strip():
                        scan.torn_at = scan.size - (len(text) - last_break - 1)
                feeder.push(raw, final)
                if final:
                    break
            scan.encoding = stream.encoding
            scan.complete = True
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}", path) from exc
    if scan.size >= TRIM_AFTER:
        return_freed_heap()
    return scan
