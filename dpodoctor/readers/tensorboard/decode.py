"""The vectorised decode: an event file's records as columns, numpy for the usual scalar record, protobuf for the rest.

Why: a sweep is tens of runs of hundreds of thousands of records each, and per record Python work (protobuf parse,
attribute access, a dict lookup per key) costs about 8 µs, 2 s for a 20k-step run. Nearly every record is the
same small message, ``Event{wall_time, step, summary{value{tag, simple_value}}}``, which torch's and tensorboardX's
``add_scalar`` (hence transformers' TensorBoardCallback) write field by field in this order::

    09 <wall_time: 8 bytes>  [10 <step: varint>]  2a <S>  0a <V>  0a <T> <tag: T bytes>  15 <simple_value: 4 bytes>

with S = V + 2, V = T + 7 (one byte each; ``step`` is absent when 0). Its fields sit at offsets fixed by T and the
varint's length, so a handful of vectorised comparisons find every record of that shape and gather its numbers. A
record that is not exactly that shape, or whose tag is not valid UTF-8 (protobuf rejects it) or is the ``args``
text summary, goes through protobuf (:class:`~.proto.RecordPoints`, the walk the reference decode uses for every
record). ``tests/test_speed_paths.py`` checks the result against protobuf record for record.

Why in chunks: the decode's temporaries are several times the bytes they decode, so a file is read and decoded 8 MiB at
a time (:func:`decode_file`) and only the columns are kept: peak memory stays near the size of the result.

What one file decodes to, :class:`FileDecode`, holds columns and a few strings, so it can be cached
(:mod:`dpodoctor.cache`) and extended by the records a growing file appends (:meth:`FileDecode.extend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np

from dpodoctor.errors import ReadError
from dpodoctor.readers.tensorboard.framing import HEADER_SIZE, frame_records, scan_records, unaligned
from dpodoctor.readers.tensorboard.proto import ARGS_TAG, RecordPoints

__all__ = ["CHUNK_BYTES", "FileDecode", "decode_event_bytes", "decode_file", "decode_reference"]

CHUNK_BYTES: Final = 8 << 20  # read and decode this much at a time (the temporaries are about 5x this)
_SIMPLE_MIN: Final = 20  # wall 9 + summary 2 + value 2 + tag 2 (empty tag) + simple_value 5
_PAD: Final = 160  # > the longest fixed window read past a record start (tag rows: 1 + 120 bytes, rounded up)


def _empty(dtype: Any) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class FileDecode:
    """What one event file says, as columns: one entry per scalar point, one string per distinct tag.

    ``cond`` marks a tensor-encoded value whose own record names no plugin: it is a scalar only if the tag's plugin
    (set by an earlier record, maybe in an earlier file) is ``scalars``, which the assembler resolves in file order
    with ``plugin_events`` (``(cond points before it, tag, plugin)``). ``args`` holds the text of each ``args``
    text summary (None: it holds none). ``consumed`` is the offset just past the last complete record, where
    reading a grown file resumes. ``bad_at`` holds the byte offset of each record that is not an Event, ``skipped``
    the corrupt stretches the reference decode resynchronised past (offset, bytes).
    """

    size: int = 0
    consumed: int = 0
    records: int = 0
    bad_records: int = 0
    stop_at: int | None = None
    stop_reason: str | None = None
    tags: list[str] = field(default_factory=list)
    tag: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    step: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    value: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    wall: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    cond: np.ndarray = field(default_factory=lambda: _empty(np.bool_))
    plugin_events: list[tuple[int, str, str]] = field(default_factory=list)
    args: list[str | None] = field(default_factory=list)
    bad_at: list[int] = field(default_factory=list)
    skipped: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.value)

    @property
    def damaged(self) -> bool:
        """Records that are not Events, or a corrupt header: the reference decode names every place."""
        return bool(self.bad_records) or self.stop_reason == "bad record header"

    def extend(self, more: FileDecode) -> FileDecode:
        """This decode followed by ``more``, the decode of the bytes from :attr:`consumed` on (a grown file)."""
        return FileDecode.join([self, more])

    @staticmethod
    def join(parts: Sequence[FileDecode]) -> FileDecode:
        """The decode of consecutive stretches of one file, in order, as one (the last part says where it ends)."""
        if len(parts) == 1:
            return parts[0]
        index: dict[str, int] = {}
        tags: list[str] = []
        tag_arrays = []
        events: list[tuple[int, str, str]] = []
        conds = 0
        for part in parts:
            for t in part.tags:
                if t not in index:
                    index[t] = len(tags)
                    tags.append(t)
            remap = np.array([index[t] for t in part.tags], dtype=np.int32)
            tag_arrays.append(remap[part.tag] if len(part.tag) else _empty(np.int32))
            events += [(k + conds, t, p) for k, t, p in part.plugin_events]
            conds += int(part.cond.sum())
        last = parts[-1]
        return FileDecode(
            size=last.size,
            consumed=last.consumed,
            records=sum(p.records for p in parts),
            bad_records=sum(p.bad_records for p in parts),
            stop_at=last.stop_at,
            stop_reason=last.stop_reason,
            tags=tags,
            tag=np.concatenate(tag_arrays),
            step=np.concatenate([p.step for p in parts]),
            value=np.concatenate([p.value for p in parts]),
            wall=np.concatenate([p.wall for p in parts]),
            cond=np.concatenate([p.cond for p in parts]),
            plugin_events=events,
            args=[a for p in parts for a in p.args],
            bad_at=[o for p in parts for o in p.bad_at],
            skipped=[s for p in parts for s in p.skipped],
        )


# _WORD_MASKS[k][n]: the little-endian mask of the bytes of word k (bytes 8k..8k+7) among a row's first n bytes.
_WORD_MASKS: Final = tuple(
    np.array([(1 << (8 * min(max(n - 8 * k, 0), 8))) - 1 for n in range(_PAD + 1)], dtype=np.uint64)
    for k in range(_PAD // 8)
)
_HASH_MULTIPLIERS: Final = tuple(
    np.uint64((0x9E3779B97F4A7C15 * (2 * k + 1)) & 0xFFFFFFFFFFFFFFFF) for k in range(_PAD // 8)
)


_SAMPLE: Final = 4096  # rows whose distinct hashes are found by sorting; the rest are looked up among them


def _group(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first occurrence of each distinct value of ``h``, each value's group number), groups numbered
    in sorted order of their values.

    Why look the rest up: a file's chunk has ~150k records but a few dozen tags, nearly all of which appear in its
    first records; sorting every hash (np.unique) costs O(n log n), a binary search of each among the sample's few
    distinct hashes a small fraction of it. A hash the sample does not hold sends the whole chunk to np.unique."""
    if len(h) > _SAMPLE:
        first, _ = _sorted_groups(h[:_SAMPLE])
        known = h[first]  # the sample's distinct hashes, in sorted order
        inverse = known.searchsorted(h)
        np.minimum(inverse, len(known) - 1, out=inverse)
        if (known[inverse] == h).all():
            return first, inverse
    return _sorted_groups(h)


def _sorted_groups(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(h, return_index=True, return_inverse=True)`` without its values, in a handful of array steps (its
    Python layers cost more than the work on a small file's thousand records). A stable sort puts each value's first
    occurrence first among its equals."""
    order = h.argsort(kind="stable")
    ordered = h[order]
    starts = np.empty(len(h), dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(len(h), dtype=np.intp)
    inverse[order] = starts.cumsum() - 1
    return order[starts], inverse


def _unique_rows(u64: np.ndarray, starts: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each distinct row, in order of first appearance; each row's distinct-row number),
    where row ``i`` is the ``used[i]`` bytes from ``starts[i]`` (the tag's length byte and the tag), read through the
    unaligned 64-bit view ``u64`` one word at a time: each word is masked to the row's bytes, the words are hashed
    (a multiply-add per word, wrapping as unsigned integers do), the hashes are grouped (:func:`_group`), then every
    row is compared with its group's first row; a collision (never seen, but possible) falls back to an exact unique.

    Why words through 1-D takes and not a matrix of rows: a 2-D gather of each record's bytes costs several times a
    take of one typed element per record, and the mask, the hash and the check are then plain element-wise steps.
    Why no pandas (factorize): a small check need not import it for this, and the grouping is no slower."""
    words = []
    h = np.zeros(len(starts), dtype=np.uint64)
    for k in range((int(used.max()) + 7) // 8 if len(used) else 0):
        word = u64[starts + 8 * k]
        word &= _WORD_MASKS[k][used]
        h += word * _HASH_MULTIPLIERS[k]
        words.append(word)
    h ^= h >> np.uint64(29)
    first, inverse = _group(h)
    representative = first[inverse]
    if not all((word == word[representative]).all() for word in words):
        keys = np.ascontiguousarray(np.stack(words, axis=1)).view(np.dtype((np.void, 8 * len(words)))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    # Groups are numbered in hash order; renumber them in order of first appearance (tags keep arrival order).
    order = np.argsort(first)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse]


def _fill(decode: FileDecode, slow: RecordPoints, fast: np.ndarray, fast_columns: tuple[np.ndarray, ...]) -> None:
    """Put the fast records' points and protobuf's points into ``decode`` in record order (then value order)."""
    fast_codes, step, value, wall = fast_columns
    decode.tags = slow.tags
    decode.args = slow.args
    decode.plugin_events = slow.plugin_events
    decode.bad_records = len(slow.bad_at)
    if not slow.rec:
        decode.tag, decode.step, decode.value, decode.wall = fast_codes.astype(np.int32), step, value, wall
        decode.cond = np.zeros(len(fast), dtype=bool)
        return
    rec = np.concatenate([fast, np.array(slow.rec, dtype=np.int64)])
    sub = np.concatenate([np.zeros(len(fast), dtype=np.int64), np.array(slow.sub, dtype=np.int64)])
    order = np.lexsort((sub, rec))
    decode.tag = np.concatenate([fast_codes, np.array(slow.tag, dtype=np.int32)])[order].astype(np.int32)
    decode.step = np.concatenate([step, np.array(slow.step, dtype=np.int64)])[order]
    decode.value = np.concatenate([value, np.array(slow.value, dtype=np.float64)])[order]
    decode.wall = np.concatenate([wall, np.array(slow.wall, dtype=np.float64)])[order]
    decode.cond = np.concatenate([np.zeros(len(fast), dtype=bool), np.array(slow.cond, dtype=bool)])[order]


def decode_event_bytes(buf: bytes, path: Path, base: int = 0) -> FileDecode:
    """Decode the records in ``buf``, which starts at byte ``base`` of the event file ``path`` (0 for a whole file;
    the end of the previous read for a grown one). Raises :class:`ReadError` only when byte 0 of the file has a
    bad header (not an event file)."""
    offs, lens, stop_at, reason = frame_records(buf, base, path)
    n = len(offs)
    decode = FileDecode(
        size=base + len(buf),
        consumed=base + (stop_at if stop_at is not None else len(buf)),
        records=n,
        stop_at=None if stop_at is None else base + stop_at,
        stop_reason=reason,
    )
    if n == 0:
        return decode
    # The bytes, padded so that a field read at any offset in them is whole, and read through typed views: one take
    # of ``view[positions]`` gathers one field of every record (see framing.unaligned).
    u8 = np.zeros(len(buf) + _PAD, dtype=np.uint8)
    u8[: len(buf)] = np.frombuffer(buf, dtype=np.uint8)
    u64 = unaligned(u8, "<u8")

    p = offs + HEADER_SIZE
    ok = (lens >= _SIMPLE_MIN) & (u8[p] == 0x09)  # wall_time, fixed64
    has_step = u8[p + 9] == 0x10  # step, varint (absent when 0)
    varint = u64[p + 10]  # its first 8 bytes
    ends = varint.view(np.uint8).reshape(-1, 8) < 0x80
    vlen = ends.argmax(axis=1) + 1
    ok &= ~has_step | ends.any(axis=1)  # varints over 8 bytes (steps from 2**56, negative ones) go to protobuf
    r = np.where(has_step, p + 10 + vlen, p + 9)
    r = np.minimum(r, len(buf))  # a garbage varint must not point past the padding
    # The summary's framing, 2a <S> 0a <V> 0a <T>, as the low six bytes of one word.
    word = u64[r]
    ok &= (word & np.uint64(0xFF00FF00FF)) == np.uint64(0x0A000A002A)  # summary, its one value, the value's tag
    s_len = ((word >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64)
    v_len = ((word >> np.uint64(24)) & np.uint64(0xFF)).astype(np.int64)
    t_len = ((word >> np.uint64(40)) & np.uint64(0xFF)).astype(np.int64)
    ok &= (s_len < 0x80) & (r + 2 + s_len == p + lens)  # one-byte length, and the summary ends the record
    ok &= (v_len == s_len - 2) & (v_len == t_len + 7)  # exactly one value: tag, then simple_value, nothing else
    ok &= u8[np.where(ok, r + 6 + t_len, 0)] == 0x15  # value.simple_value, fixed32

    fast = np.flatnonzero(ok)
    slow_points = RecordPoints()
    fast_codes = _empty(np.int32)
    if len(fast):
        t_fast = t_len[fast]
        uniq_first, inverse = _unique_rows(u64, r[fast] + 5, t_fast + 1)  # the length byte and the tag
        codes = np.empty(len(uniq_first), dtype=np.int32)
        usable = np.ones(len(uniq_first), dtype=bool)
        tag_starts = r[fast[uniq_first]] + 6
        for u, (at_tag, tag_len) in enumerate(zip(tag_starts.tolist(), t_fast[uniq_first].tolist(), strict=True)):
            try:
                tag = buf[at_tag : at_tag + tag_len].decode("utf-8")  # protobuf rejects a non-UTF-8 string field
            except UnicodeDecodeError:
                usable[u] = False
                continue
            if tag == ARGS_TAG:  # the text summary's tag on a plain number: protobuf's path says what to do
                usable[u] = False
                continue
            codes[u] = slow_points.code(tag)
        if not usable.all():
            keep = usable[inverse]
            fast, inverse = fast[keep], inverse[keep]
            ok = np.zeros(n, dtype=bool)
            ok[fast] = True
        fast_codes = codes[inverse]

    # The numbers of the fast records, gathered straight from the bytes.
    pf = p[fast]
    wall = unaligned(u8, "<f8")[pf + 1].astype(np.float64)
    fast_vlen = np.where(has_step[fast], vlen[fast], 0)  # no step field: 0 bytes, step 0
    fast_varint = varint[fast]
    step_u = np.zeros(len(fast), dtype=np.uint64)
    for k in range(int(fast_vlen.max()) if len(fast) else 0):  # 7 bits a byte, only as many bytes as the longest
        group = ((fast_varint >> np.uint64(8 * k)) & np.uint64(0x7F)) << np.uint64(7 * k)
        step_u |= np.where(fast_vlen > k, group, np.uint64(0))
    step = step_u.astype(np.int64)
    with np.errstate(invalid="ignore"):  # a signalling NaN (any bytes can be one) widens to NaN, as protobuf gives
        value = unaligned(u8, "<f4")[r[fast] + 7 + t_len[fast]].astype(np.float64)

    # Everything else: protobuf, the walk the reference decode uses.
    slow = np.flatnonzero(~ok)
    if len(slow):
        slow_points.add((i, buf[int(p[i]) : int(p[i]) + int(lens[i])]) for i in slow.tolist())
    _fill(decode, slow_points, fast, (fast_codes, step, value, wall))
    decode.bad_at = [base + int(offs[i]) for i in slow_points.bad_at]
    return decode


def decode_reference(data: bytes, path: Path) -> FileDecode:
    """The decode of a whole file with protobuf parsing every record and the framing walked one record at a time,
    resynchronising past corrupt stretches: the definition :func:`decode_event_bytes` is tested against, and what
    the reader uses for a damaged file (it names the byte offset of every bad record and corrupt stretch)."""
    scan = scan_records(data, path)
    points = RecordPoints()
    points.add(enumerate(scan.records), plain=False)
    decode = FileDecode(
        size=scan.size,
        consumed=scan.stop_at if scan.stop_at is not None else scan.size,
        records=len(scan.records),
        stop_at=scan.stop_at,
        stop_reason=scan.stop_reason,
        skipped=scan.skipped,
    )
    no_fast = (_empty(np.int32), _empty(np.int64), _empty(np.float64), _empty(np.float64))
    _fill(decode, points, _empty(np.int64), no_fast)
    decode.bad_at = [scan.offsets[i] for i in points.bad_at]
    return decode


def _pending_length(buf: bytes, at: int) -> int | None:
    """The whole length of the record whose header starts at ``at`` of ``buf``, if its header is there."""
    if len(buf) - at < 8:
        return None
    return 16 + int.from_bytes(buf[at : at + 8], "little")


class _Columns:
    """The columns of a file decoded chunk by chunk, copied into buffers sized for the whole file up front.

    Why not concatenate the chunks at the end: that holds every chunk and the result at once, twice the result. The
    buffers are allocated for the most points the file could hold (one per 16 bytes) but only the pages written are
    ever resident, so memory follows what was decoded; a file denser than that (many values per record) grows them.
    """

    def __init__(self, size: int) -> None:
        capacity = size // 16 + 1024
        self.n = 0
        self.tags: list[str] = []
        self.index: dict[str, int] = {}
        self.arrays = {
            name: np.empty(capacity, dtype=dtype)
            for name, dtype in (("tag", np.int32), ("step", np.int64), ("value", np.float64), ("wall", np.float64))
        }
        self.arrays["cond"] = np.empty(capacity, dtype=np.bool_)
        self.parts: list[FileDecode] = []  # the chunks, emptied of their columns, for what FileDecode.join counts
        self.conds = 0

    def add(self, part: FileDecode) -> None:
        n, more = self.n, len(part)
        if n + more > len(self.arrays["tag"]):
            for name, old in self.arrays.items():
                grown = np.empty(max(2 * len(old), n + more), dtype=old.dtype)
                grown[:n] = old[:n]
                self.arrays[name] = grown
        for t in part.tags:
            if t not in self.index:
                self.index[t] = len(self.tags)
                self.tags.append(t)
        remap = np.array([self.index[t] for t in part.tags], dtype=np.int32)
        if more:
            self.arrays["tag"][n : n + more] = remap[part.tag]
        for name in ("step", "value", "wall", "cond"):
            self.arrays[name][n : n + more] = getattr(part, name)
        self.n += more
        empty = FileDecode(
            size=part.size,
            consumed=part.consumed,
            records=part.records,
            bad_records=part.bad_records,
            stop_at=part.stop_at,
            stop_reason=part.stop_reason,
            plugin_events=[(k + self.conds, t, p) for k, t, p in part.plugin_events],
            args=part.args,
            bad_at=part.bad_at,
            skipped=part.skipped,
        )
        self.conds += int(part.cond.sum())
        self.parts.append(empty)

    def decode(self) -> FileDecode:
        whole = FileDecode.join(self.parts) if len(self.parts) > 1 else self.parts[0]
        whole.plugin_events = [e for p in self.parts for e in p.plugin_events]  # already offset in add()
        whole.tags = self.tags
        whole.tag, whole.step, whole.value, whole.wall, whole.cond = (
            self.arrays[name][: self.n] for name in ("tag", "step", "value", "wall", "cond")
        )
        return whole


def decode_file(path: Path, start: int = 0, chunk: int = CHUNK_BYTES) -> FileDecode:
    """Decode an event file from byte ``start`` on, ``chunk`` bytes at a time. Raises :class:`ReadError` when it
    cannot be read.

    A record cut by a chunk's end is carried into the next read; only the end of the file makes it a cut record. A
    bad header stops the decode there (the reader reads a damaged file again with the reference decode).
    """
    columns: _Columns | None = None
    base = start
    carry = b""
    try:
        with path.open("rb") as handle:
            if start:
                handle.seek(start)
            # Why ask for at most what the file holds, plus one byte: ``read(n)`` allocates n bytes before it reads,
            # so an 8 MiB request for a 75 KB file costs more than decoding it; the extra byte tells the end of the
            # file (a short read) from a file that grew since the stat (then whole chunks again).
            size = _file_size(handle)
            while True:
                left = size - (base + len(carry))  # bytes of the stat'd file not read yet
                want = min(chunk, left + 1) if left > 0 else chunk
                if carry:
                    whole = _pending_length(carry, 0)
                    if whole is not None and whole > len(carry) + chunk:
                        want = whole - len(carry)  # one record longer than a chunk: read all of it at once
                data = handle.read(want)
                at_end = len(data) < want
                buf = carry + data if carry else data
                part = decode_event_bytes(buf, path, base=base)
                more = part.stop_reason != "bad record header" and not at_end
                if columns is None:
                    if not more:
                        return part  # the whole file in one chunk
                    columns = _Columns(max(0, _file_size(handle) - start))
                if more:
                    carry = buf[part.consumed - base :]
                    part.stop_at = part.stop_reason = None
                    base = part.consumed
                columns.add(part)
                if not more:
                    return columns.decode()
    except OSError as exc:
        raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc


def _file_size(handle: BinaryIO) -> int:
    import os

    return os.fstat(handle.fileno()).st_size
