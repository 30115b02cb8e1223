"""The fast path of the TensorBoard reader: numpy over the one record layout scalar writers use, protobuf for the rest.

Why: a sweep is tens of runs of hundreds of thousands of records each, and per record Python work (protobuf parse,
attribute access, a dict lookup per key) costs about 8 µs, 2 s for a 20k-step run. Nearly every record is the
same small message, ``Event{wall_time, step, summary{value{tag, simple_value}}}``, which torch's and tensorboardX's
``add_scalar`` (hence transformers' TensorBoardCallback) write field by field in this order::

    09 <wall_time: 8 bytes>  [10 <step: varint>]  2a <S>  0a <V>  0a <T> <tag: T bytes>  15 <simple_value: 4 bytes>

with S = V + 2, V = T + 7 (one byte each; ``step`` is absent when 0). Its fields sit at offsets fixed by T and the
varint's length, so a handful of vectorised comparisons find every record of that shape and gather its numbers. A
record that is not exactly that shape, or whose tag is not valid UTF-8 (protobuf rejects it) or is the ``args``
text summary, is decoded by protobuf through the same logic as :meth:`TensorBoardReader._decode`. Framing is one
tight loop over the 12-byte headers, and their CRCs (the only CRC the reader checks) are computed for all records
at once with numpy. ``tests/test_speed_paths.py`` checks the result against protobuf record for record.

What one file decodes to, :class:`FileDecode`, holds columns and a few strings, so it can be cached
(:mod:`dpodoctor.cache`) and extended by the records a growing file appends (:meth:`FileDecode.extend`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2

from dpodoctor.errors import ReadError
from dpodoctor.metrics import canonical, is_summary_key
from dpodoctor.model import Ended, frame_from_codes

if TYPE_CHECKING:
    from dpodoctor.readers import ReadResult
    from dpodoctor.readers.tensorboard import TensorBoardReader

__all__ = ["FileDecode", "decode_event_bytes", "decode_file", "merge"]

_LENGTH: Final = struct.Struct("<Q")
_HEADER_SIZE: Final = 12
_RECORD_OVERHEAD: Final = 16  # header + footer CRC
_SIMPLE_MIN: Final = 20  # wall 9 + summary 2 + value 2 + tag 2 (empty tag) + simple_value 5
_AR4: Final = np.arange(4)
_AR8: Final = np.arange(8)
_AR10: Final = np.arange(10)
_SHIFTS: Final = (7 * np.arange(10)).astype(np.uint64)
_MASK_DELTA: Final = np.uint32(0xA282EAD8)


def _crc_table() -> np.ndarray:
    """The CRC-32C (Castagnoli, reflected 0x82F63B78) byte table, as :mod:`.tensorboard` builds it."""
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, (crc >> np.uint32(1)) ^ np.uint32(0x82F63B78), crc >> np.uint32(1)).astype(np.uint32)
    return crc


_TABLE: Final = _crc_table()


def header_crcs_ok(lengths: np.ndarray, crcs: np.ndarray) -> np.ndarray:
    """Whether each record's stored masked CRC-32C matches its 8 little-endian length bytes, for all records at once
    (the table-driven CRC of :func:`dpodoctor.readers.tensorboard.crc32c`, one byte position per numpy step). A file
    has few distinct lengths, so each is checksummed once."""
    lengths = np.asarray(lengths, dtype=np.uint64)
    if len(lengths) > 64:
        import pandas as pd

        codes, distinct = pd.factorize(lengths)
        return _masked_crcs(np.asarray(distinct, dtype=np.uint64))[codes] == np.asarray(crcs, dtype=np.uint32)
    return _masked_crcs(lengths) == np.asarray(crcs, dtype=np.uint32)


def _masked_crcs(lengths: np.ndarray) -> np.ndarray:
    crc = np.full(len(lengths), 0xFFFFFFFF, dtype=np.uint32)
    for k in range(8):
        byte = ((lengths >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint32)
        crc = _TABLE[(crc ^ byte) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + _MASK_DELTA  # uint32: wraps as the C code does


def _empty(dtype: Any) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class FileDecode:
    """What one event file says, as columns: one entry per scalar point, one string per distinct tag.

    ``cond`` marks a tensor-encoded value whose own record names no plugin: it is a scalar only if the tag's plugin
    (set by an earlier record, maybe in an earlier file) is ``scalars``, which :func:`merge` resolves in file order
    with ``plugin_events`` (``(cond points before it, tag, plugin)``). ``args`` holds the text of each ``args``
    text summary (None: it holds none). ``consumed`` is the offset just past the last complete record, where
    reading a grown file resumes.
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

    def __len__(self) -> int:
        return len(self.value)

    def extend(self, more: FileDecode) -> FileDecode:
        """This decode followed by ``more``, the decode of the bytes from :attr:`consumed` on (a grown file)."""
        index = {t: i for i, t in enumerate(self.tags)}
        tags = list(self.tags)
        for t in more.tags:
            if t not in index:
                index[t] = len(tags)
                tags.append(t)
        remap = np.array([index[t] for t in more.tags], dtype=np.int32)
        conds = int(self.cond.sum())
        return FileDecode(
            size=more.size,
            consumed=more.consumed,
            records=self.records + more.records,
            bad_records=self.bad_records + more.bad_records,
            stop_at=more.stop_at,
            stop_reason=more.stop_reason,
            tags=tags,
            tag=np.concatenate([self.tag, remap[more.tag] if len(more.tag) else _empty(np.int32)]),
            step=np.concatenate([self.step, more.step]),
            value=np.concatenate([self.value, more.value]),
            wall=np.concatenate([self.wall, more.wall]),
            cond=np.concatenate([self.cond, more.cond]),
            plugin_events=self.plugin_events + [(k + conds, t, p) for k, t, p in more.plugin_events],
            args=self.args + more.args,
        )


def _chain(u8: np.ndarray) -> np.ndarray | None:
    """The offsets of the records that start a file, found without a loop, or None to use the loop.

    Candidates are the offsets whose 8 length bytes are below 2**24 and whose payload starts like an Event (0x09, the
    wall_time key). If they chain from byte 0 (each one's end is the next one's start) they are exactly the records
    the sequential walk visits; anything else (a record of another shape, a spurious candidate) returns None. The
    walk then continues after the last one, and every header CRC is checked afterwards either way.
    """
    n = len(u8) - 13  # candidates need 12 header bytes and the first payload byte
    if n < 1:
        return None
    zero = u8[3 : n + 3] == 0
    for k in (4, 5, 6, 7):
        zero &= u8[k : n + k] == 0
    zero &= u8[12 : n + 12] == 0x09
    cand = np.flatnonzero(zero)
    if not len(cand) or cand[0] != 0:
        return None
    lens = u8[cand[:, None] + _AR8].view("<u8").ravel().astype(np.int64)
    ends = cand + _RECORD_OVERHEAD + lens
    inside = ends <= len(u8)
    if not inside.all():  # the last one may be cut: the walk decides what it is
        k = int(np.argmin(inside))
        cand, ends = cand[:k], ends[:k]
    if not len(cand) or not np.array_equal(cand[1:], ends[:-1]):
        return None
    return cand


def _frame_records(buf: bytes, base: int, path: Path) -> tuple[np.ndarray, np.ndarray, int | None, str | None]:
    """Offsets and lengths of the complete records in ``buf`` (its first byte is byte ``base`` of the file), and where
    and why the framing stopped, exactly as :func:`dpodoctor.readers.tensorboard.scan_records` decides it."""
    u8 = np.frombuffer(buf, dtype=np.uint8)
    chain = _chain(u8)
    offsets: list[int] = []  # what the walk adds after the chain
    add = offsets.append
    end = len(buf)
    off = 0
    if chain is not None and len(chain):
        last = int(chain[-1])
        off = last + _RECORD_OVERHEAD + int(u8[last : last + 8].view("<u8")[0])  # the loop goes on from here
    pending = False
    short = False
    unpack = _LENGTH.unpack_from
    while off < end:
        if end - off < _HEADER_SIZE:
            short = True
            break
        nxt = off + _RECORD_OVERHEAD + unpack(buf, off)[0]
        if nxt > end:
            pending = True
            break
        add(off)
        off = nxt
    if pending:
        offsets.append(off)  # its header is whole: its CRC decides between a cut record and a bad header
    offs = np.array(offsets, dtype=np.int64)
    if chain is not None:
        offs = np.concatenate([chain.astype(np.int64), offs])
    lens = u8[offs[:, None] + _AR8].view("<u8").ravel()
    good = header_crcs_ok(lens, u8[offs[:, None] + 8 + _AR4].view("<u4").ravel())
    stop_at: int | None = None
    reason: str | None = None
    bad = np.flatnonzero(~good)
    if len(bad):
        k = int(bad[0])
        stop_at, reason = int(offs[k]), "bad record header"
        offs, lens = offs[:k], lens[:k]
    elif pending:
        stop_at, reason = off, "incomplete record"
        offs, lens = offs[:-1], lens[:-1]
    elif short:
        stop_at, reason = off, "incomplete record"
    if reason == "bad record header" and base + (stop_at or 0) == 0:
        raise ReadError("not a TensorBoard event file (bad record header at byte 0)", path)
    return offs, lens.astype(np.int64), stop_at, reason


_PAD: Final = 160  # > the longest fixed window read past a record start (tag rows: 1 + 120 bytes, rounded up)
_MIX: Final = np.uint64(0x9E3779B97F4A7C15)


def _unique_rows(rows: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each distinct row, each row's distinct-row number), comparing only the first
    ``used[i]`` bytes of row ``i`` (the rest is whatever follows the tag). ``rows`` is a uint8 matrix whose width is a
    multiple of 8, read as little-endian 64-bit words: each word is masked to the row's bytes, the words are hashed
    and factorised (hash table, no sort), then every row is compared with its group's first row; a collision (never
    seen, but possible) falls back to an exact unique over the masked rows."""
    import pandas as pd

    words = np.ascontiguousarray(rows).view("<u8").copy()
    for k in range(words.shape[1]):
        valid = np.clip(used - 8 * k, 0, 8).astype(np.uint64)  # bytes of this word that belong to the row
        mask = np.where(valid >= 8, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << (np.uint64(8) * valid)) - 1)
        words[:, k] &= mask
    h = np.zeros(len(words), dtype=np.uint64)
    for k in range(words.shape[1]):
        h = (h ^ words[:, k]) * _MIX
        h ^= h >> np.uint64(29)
    codes, _ = pd.factorize(h)
    codes = np.asarray(codes, dtype=np.int64)
    # factorize numbers groups in order of first appearance: a group starts where the running maximum grows.
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    if (words == words[first[codes]]).all():
        return first, codes
    keys = words.view(np.dtype((np.void, words.shape[1] * 8))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def decode_event_bytes(buf: bytes, path: Path, base: int = 0) -> FileDecode:
    """Decode the records in ``buf``, which starts at byte ``base`` of the event file ``path`` (0 for a whole file;
    the end of the previous read for a grown one). Raises :class:`ReadError` only when byte 0 of the file has a
    bad header (not an event file)."""
    offs, lens, stop_at, reason = _frame_records(buf, base, path)
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
    # The bytes, padded so that a fixed-width window starting anywhere in them is whole: row gathers out of a
    # sliding-window view copy a few contiguous bytes per record instead of indexing byte by byte.
    u8 = np.zeros(len(buf) + _PAD, dtype=np.uint8)
    u8[: len(buf)] = np.frombuffer(buf, dtype=np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(u8, 16)

    def at(pos: np.ndarray) -> np.ndarray:
        return u8[pos].astype(np.int64)

    p = offs + _HEADER_SIZE
    ok = lens >= _SIMPLE_MIN
    head = windows[p]  # the first 16 bytes of each record's payload
    ok &= head[:, 0] == 0x09  # wall_time, fixed64
    q = p + 9
    has_step = head[:, 9] == 0x10  # step, varint (absent when 0)
    varint = windows[q + 1][:, :10]
    ends = varint < 0x80
    vlen = ends.argmax(axis=1) + 1
    ok &= ~has_step | (ends.any(axis=1) & (vlen <= 9))  # 10-byte varints (negative steps) go to protobuf
    r = np.where(has_step, q + 1 + vlen, q)
    r = np.minimum(r, len(buf))  # a garbage varint must not point past the padding
    ok &= at(r) == 0x2A  # summary, length-delimited
    s_len = at(r + 1)
    r2 = r + 2
    ok &= (s_len < 0x80) & (r2 + s_len == p + lens)  # one-byte length, and the summary ends the record
    ok &= at(r2) == 0x0A  # summary.value
    v_len = at(r2 + 1)
    ok &= v_len == s_len - 2  # exactly one value
    ok &= at(r2 + 2) == 0x0A  # value.tag
    t_len = at(r2 + 3)
    ok &= v_len == t_len + 7  # tag, then simple_value, nothing else
    ok &= at(np.where(ok, r2 + 4 + t_len, 0)) == 0x15  # value.simple_value, fixed32

    fast = np.flatnonzero(ok)
    tags: list[str] = []
    tag_index: dict[str, int] = {}
    fast_codes = _empty(np.int32)
    if len(fast):
        t_fast = t_len[fast]
        width = int(t_fast.max())
        span = (width + 1 + 7) // 8 * 8  # length byte + tag, in whole 8-byte words
        rows = np.lib.stride_tricks.sliding_window_view(u8, span)[r2[fast] + 3]
        uniq_first, inverse = _unique_rows(rows, t_fast + 1)
        codes = np.empty(len(uniq_first), dtype=np.int32)
        usable = np.ones(len(uniq_first), dtype=bool)
        from dpodoctor.readers.tensorboard import ARGS_TAG

        for u, row_index in enumerate(uniq_first.tolist()):
            row = rows[row_index]
            try:
                tag = bytes(row[1 : 1 + int(row[0])]).decode("utf-8")  # protobuf rejects a non-UTF-8 string field
            except UnicodeDecodeError:
                usable[u] = False
                continue
            if tag == ARGS_TAG:  # the text summary's tag on a plain number: protobuf's path says what to do
                usable[u] = False
                continue
            codes[u] = tag_index.setdefault(tag, len(tags))
            if codes[u] == len(tags):
                tags.append(tag)
        keep = usable[inverse]
        fast, inverse = fast[keep], inverse[keep]
        fast_codes = codes[inverse]
        ok = np.zeros(n, dtype=bool)
        ok[fast] = True

    # The numbers of the fast records, gathered straight from the bytes.
    pf = p[fast]
    wall = np.ascontiguousarray(windows[pf + 1][:, :8]).view("<f8").ravel().astype(np.float64)
    fast_vlen = np.where(has_step[fast], vlen[fast], 0)  # no step field: 0 bytes, step 0
    fast_varint = varint[fast]
    step_u = np.zeros(len(fast), dtype=np.uint64)
    for k in range(int(fast_vlen.max()) if len(fast) else 0):  # 7 bits a byte, only as many bytes as the longest
        group = (fast_varint[:, k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        step_u |= np.where(fast_vlen > k, group, np.uint64(0))
    step = step_u.astype(np.int64)
    value_at = r2[fast] + 5 + t_len[fast]
    with np.errstate(invalid="ignore"):  # a signalling NaN (any bytes can be one) widens to NaN, as protobuf gives
        value = np.ascontiguousarray(windows[value_at][:, :4]).view("<f4").ravel().astype(np.float64)

    # Everything else: protobuf, with the reference logic.
    slow = np.flatnonzero(~ok)
    s_rec: list[int] = []
    s_sub: list[int] = []
    s_tag: list[int] = []
    s_step: list[int] = []
    s_value: list[float] = []
    s_wall: list[float] = []
    s_cond: list[bool] = []
    if len(slow):
        from dpodoctor.readers.tensorboard import ARGS_TAG, SCALARS_PLUGIN, _tensor_scalar

        conds = 0
        for i in slow.tolist():
            start = int(p[i])
            try:
                event = event_pb2.Event.FromString(buf[start : start + int(lens[i])])
            except DecodeError:
                decode.bad_records += 1
                continue
            if not event.HasField("summary"):
                continue
            for sub, item in enumerate(event.summary.value):
                tag = item.tag
                own = ""
                if item.HasField("metadata"):
                    own = item.metadata.plugin_data.plugin_name
                    if own:
                        decode.plugin_events.append((conds, tag, own))
                if tag == ARGS_TAG:
                    strings = item.tensor.string_val
                    decode.args.append(strings[0].decode("utf-8", errors="replace") if strings else None)
                    continue
                cond = False
                if item.HasField("simple_value"):
                    number: float | None = float(item.simple_value)
                elif item.HasField("tensor"):
                    if own:
                        number = _tensor_scalar(item.tensor) if own == SCALARS_PLUGIN else None
                    else:
                        number = _tensor_scalar(item.tensor)
                        cond = True
                else:
                    number = None
                if number is None:
                    continue
                code = tag_index.get(tag)
                if code is None:
                    code = tag_index[tag] = len(tags)
                    tags.append(tag)
                conds += cond
                s_rec.append(i)
                s_sub.append(sub)
                s_tag.append(code)
                s_step.append(event.step)
                s_value.append(number)
                s_wall.append(event.wall_time)
                s_cond.append(cond)

    decode.tags = tags
    if not s_rec:
        decode.tag, decode.step, decode.value, decode.wall = fast_codes.astype(np.int32), step, value, wall
        decode.cond = np.zeros(len(fast), dtype=bool)
        return decode
    rec = np.concatenate([fast, np.array(s_rec, dtype=np.int64)])
    sub = np.concatenate([np.zeros(len(fast), dtype=np.int64), np.array(s_sub, dtype=np.int64)])
    order = np.lexsort((sub, rec))
    decode.tag = np.concatenate([fast_codes, np.array(s_tag, dtype=np.int32)])[order].astype(np.int32)
    decode.step = np.concatenate([step, np.array(s_step, dtype=np.int64)])[order]
    decode.value = np.concatenate([value, np.array(s_value, dtype=np.float64)])[order]
    decode.wall = np.concatenate([wall, np.array(s_wall, dtype=np.float64)])[order]
    decode.cond = np.concatenate([np.zeros(len(fast), dtype=bool), np.array(s_cond, dtype=bool)])[order]
    return decode


def decode_file(path: Path, start: int = 0) -> FileDecode:
    """Decode an event file from byte ``start`` on. Raises :class:`ReadError` when it cannot be read."""
    try:
        with path.open("rb") as handle:
            if start:
                handle.seek(start)
            data = handle.read()
    except OSError as exc:
        raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
    return decode_event_bytes(data, path, base=start)


def merge(reader: TensorBoardReader, files: Sequence[Path], decodes: Sequence[FileDecode]) -> ReadResult:
    """One run's :class:`ReadResult` from the decodes of its files, in read order: what
    :meth:`TensorBoardReader.read_reference` builds point by point, built from columns."""
    from dpodoctor.readers import ReadResult
    from dpodoctor.readers.overlap import repeated_steps_notes
    from dpodoctor.readers.tensorboard import SCALARS_PLUGIN

    notes: list[str] = []
    config: dict[str, Any] = {}
    beta: float | None = None
    beta_source: str | None = None
    cut = False
    plugins: dict[str, str] = {}
    tags: list[str] = []
    tag_index: dict[str, int] = {}
    parts: list[tuple[np.ndarray, FileDecode, np.ndarray | None]] = []
    part_labels: list[str] = []
    for path, decode in zip(files, decodes, strict=True):
        label = reader._label(path)
        if decode.size == 0:
            notes.append(f"{label}: empty file (0 bytes), no records")
            continue
        file_config: dict[str, Any] | None = None
        file_beta: float | None = None
        for text in decode.args:
            parsed = reader._parse_args_text(text, label, notes)
            if parsed is not None:
                file_config = parsed
                found = reader._beta_from(parsed, label, notes)
                if found is not None:
                    file_beta = found
        if file_config is not None:
            config = file_config
        if file_beta is not None:
            beta, beta_source = file_beta, f"{label}: args text summary"
        if decode.bad_records:
            notes.append(f"{label}: skipped {decode.bad_records} record(s) whose data is not a valid Event protobuf")
        if decode.stop_at is not None:
            cut = True
            notes.append(
                f"{label}: truncated at byte {decode.size} ({decode.stop_reason} at byte {decode.stop_at}); "
                f"read the {decode.records} records before it"
            )
        keep: np.ndarray | None = None
        if decode.plugin_events or decode.cond.any():
            # Tensor values without their own plugin: scalars only if the tag's plugin, as of then, is "scalars".
            events = decode.plugin_events
            e = 0
            keep = np.ones(len(decode), dtype=bool)
            for i, row in enumerate(np.flatnonzero(decode.cond).tolist()):
                while e < len(events) and events[e][0] <= i:
                    plugins[events[e][1]] = events[e][2]
                    e += 1
                if plugins.get(decode.tags[decode.tag[row]], "") != SCALARS_PLUGIN:
                    keep[row] = False
            for _, tag, plugin in events[e:]:
                plugins[tag] = plugin
        codes = np.empty(len(decode.tags), dtype=np.int32)
        for i, tag in enumerate(decode.tags):
            code = tag_index.get(tag)
            if code is None:
                code = tag_index[tag] = len(tags)
                tags.append(tag)
            codes[i] = code
        parts.append((codes, decode, keep))
        part_labels.append(label)

    def column(name: str, dtype: Any) -> np.ndarray:
        arrays = []
        for codes, decode, keep in parts:
            arr = codes[decode.tag] if name == "tag" else getattr(decode, name)
            arrays.append(arr if keep is None else arr[keep])
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else _empty(dtype)

    tag = column("tag", np.int32)
    step = column("step", np.int64)
    value = column("value", np.float64)
    wall = column("wall", np.float64)

    # Each distinct tag is mapped once: a summary key, a (split, metric), or dropped.
    summary_name: dict[int, str] = {}
    splits: list[str] = []
    metrics: list[str] = []
    split_of = np.full(len(tags), -1, dtype=np.int64)
    metric_of = np.full(len(tags), -1, dtype=np.int64)
    for i, raw in enumerate(tags):
        if is_summary_key(raw):
            summary_name[i] = raw.split("/", 1)[1] if raw.startswith("train/") else raw
            continue
        mapped = canonical(raw)
        if mapped is None:  # pragma: no cover - summary keys are handled above
            continue
        split, metric = mapped
        if split not in splits:
            splits.append(split)
        if metric not in metrics:
            metrics.append(metric)
        split_of[i] = splits.index(split)
        metric_of[i] = metrics.index(metric)

    summary: dict[str, float] = {}
    if summary_name:
        is_summary = np.zeros(len(tags), dtype=bool)
        is_summary[list(summary_name)] = True
        for row in np.flatnonzero(is_summary[tag]).tolist():  # arrival order: first seen sets the key's place
            summary[summary_name[int(tag[row])]] = float(value[row])
    if len(parts) > 1:  # a resumed run: say which steps two files both logged (the later file's values win)
        series_of = np.where(split_of >= 0, split_of * max(1, len(metrics)) + metric_of, -1)
        per_file = []
        for label, (codes, decode, keep) in zip(part_labels, parts, strict=True):
            file_series = series_of[codes[decode.tag]]
            file_steps = decode.step
            if keep is not None:
                file_series, file_steps = file_series[keep], file_steps[keep]
            mapped = file_series >= 0
            per_file.append((label, file_series[mapped], file_steps[mapped]))
        notes.extend(repeated_steps_notes(per_file))
    in_frame = split_of[tag] >= 0
    if not in_frame.any():
        from dpodoctor.readers.tensorboard import _EMPTY

        where = files[0] if len(files) == 1 else files[0].parent
        if notes and all(note.endswith(": empty file (0 bytes), no records") for note in notes):
            raise ReadError(_EMPTY, where)
        raise ReadError("no scalar summaries found", where)
    if not in_frame.all():
        tag, step, value, wall = tag[in_frame], step[in_frame], value[in_frame], wall[in_frame]
    frame = frame_from_codes(split_of[tag], splits, metric_of[tag], metrics, step, value, wall)
    if "train_runtime" in summary:
        # Written only once training is over, so the run finished even if the file was cut after it.
        ended = Ended.FINISHED
    elif cut:
        ended = Ended.TRUNCATED
    else:
        ended = Ended.UNKNOWN
    return ReadResult(
        frame=frame,
        beta=beta,
        beta_source=beta_source,
        ended=ended,
        steps_derived=False,
        summary=summary,
        config=config,
        notes=notes,
    )
