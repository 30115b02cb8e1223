"""A minimal protobuf wire-format decoder for the few SwanLab messages dpodoctor needs.

Why not swanlab's generated classes: depending on swanlab (and on its pinned protobuf runtime) to read a log
file would make dpodoctor as heavy as the logger, and its classes change between releases. The wire format is
stable and tiny: every field is a (number, wire type) key followed by a varint, a fixed 64/32-bit value or a
length-prefixed byte string. We decode exactly the fields below and skip everything else, so a newer SwanLab that
adds fields is still read.

Where the field numbers come from: swanlab 0.10.3 (wheel ``swanlab-0.10.3-py3-none-any.whl``) ships no ``.proto``
sources, only the generated modules, whose serialized ``FileDescriptorProto`` was decoded to list them:

* ``swanlab/proto/swanlab/record/v1/record_pb2.py`` (``swanlab.record.v1.Record``): 1 num, 2 timestamp, oneof
  10 start, 11 finish, 12 column, 13 scalar, 14 media, 16 log, 20 save.
* ``swanlab/proto/swanlab/run/v1/run_pb2.py``: ``StartRecord`` 1 project, 4 name, 10 id;
  ``FinishRecord`` 1 state (enum ``RunState``: RUNNING 0, FINISHED 1, CRASHED 2, ABORTED 3), 2 error, 3 finished_at.
* ``swanlab/proto/swanlab/metric/column/v1/column_pb2.py``: ``ColumnRecord`` 1 column_class (``ColumnClass``:
  CUSTOM 1, SYSTEM 2), 2 column_type (``ColumnType``: SCALAR 1), 3 column_key.
* ``swanlab/proto/swanlab/metric/data/v1/data_pb2.py``: ``ScalarRecord`` 1 key, 2 step (int64), 3 type,
  4 timestamp, 5 value (``ScalarValue``: 1 number, double).
* ``google/protobuf/timestamp.proto``: ``Timestamp`` 1 seconds (int64), 2 nanos (int32).

proto3 writes no field that holds its default value, so step 0, a value of 0.0, state RUNNING and an empty error
are simply absent: every getter below starts from the default.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, cast

__all__ = [
    "COLUMN_CLASS_SYSTEM",
    "RUN_STATE_ABORTED",
    "RUN_STATE_CRASHED",
    "RUN_STATE_FINISHED",
    "RUN_STATE_RUNNING",
    "ColumnInfo",
    "FinishInfo",
    "ScalarPoint",
    "StartInfo",
    "WireError",
    "decode_record",
    "fast_scalar",
    "iter_fields",
    "timestamp_seconds",
]

# Wire types (https://protobuf.dev/programming-guides/encoding/).
VARINT: Final = 0
FIXED64: Final = 1
LEN: Final = 2
FIXED32: Final = 5

# Record (swanlab.record.v1) oneof field numbers.
RECORD_TIMESTAMP: Final = 2
RECORD_START: Final = 10
RECORD_FINISH: Final = 11
RECORD_COLUMN: Final = 12
RECORD_SCALAR: Final = 13

RUN_STATE_RUNNING: Final = 0
RUN_STATE_FINISHED: Final = 1
RUN_STATE_CRASHED: Final = 2
RUN_STATE_ABORTED: Final = 3

COLUMN_CLASS_SYSTEM: Final = 2
COLUMN_TYPE_UNSPECIFIED: Final = 0
COLUMN_TYPE_SCALAR: Final = 1

_DOUBLE: Final = struct.Struct("<d")
_TWO_63: Final = 1 << 63
_TWO_64: Final = 1 << 64


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message (cut, or not protobuf at all)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """One base-128 varint at ``pos``: (value, position after it). At most 10 bytes, as protobuf allows."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise WireError("varint runs past the end of the message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def _signed64(value: int) -> int:
    """int64 fields are varints of the two's complement: negative numbers arrive as 10-byte values >= 2**63."""
    value &= _TWO_64 - 1
    return value - _TWO_64 if value >= _TWO_63 else value


def iter_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Every (field number, wire type, value) of one message, in wire order.

    A varint comes back as an unsigned int, fixed64/fixed32 and length-delimited values as their raw bytes. Groups
    (wire types 3/4, unused since proto2) and anything malformed raise :class:`WireError`. Keys, small varints and
    short lengths are one byte, so that case is decoded inline (a log has millions of them).
    """
    fields: list[tuple[int, int, int | bytes]] = []
    append = fields.append
    pos = 0
    end = len(buf)
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire <= LEN and wire != FIXED64:  # VARINT (0) or LEN (2)
            if pos < end and buf[pos] < 0x80:
                value = buf[pos]
                pos += 1
            else:
                value, pos = _varint(buf, pos)
            if wire == VARINT:
                append((number, wire, value))
                continue
            stop = pos + value
            if stop > end:
                raise WireError("length-delimited field runs past the end of the message")
            append((number, wire, buf[pos:stop]))
            pos = stop
        elif wire == FIXED64:
            if pos + 8 > end:
                raise WireError("fixed64 field runs past the end of the message")
            append((number, wire, buf[pos : pos + 8]))
            pos += 8
        elif wire == FIXED32:
            if pos + 4 > end:
                raise WireError("fixed32 field runs past the end of the message")
            append((number, wire, buf[pos : pos + 4]))
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")
    return fields


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise WireError("string field with a non-length wire type")
    return value.decode("utf-8", errors="replace")


def timestamp_seconds(value: int | bytes) -> float:
    """A google.protobuf.Timestamp as unix seconds (both fields default to 0 when absent)."""
    if not isinstance(value, bytes):
        raise WireError("Timestamp field with a non-length wire type")
    seconds = 0
    nanos = 0
    if len(value) >= 2 and value[0] == 0x08:  # the usual layout, `1 seconds` then `2 nanos`: no field list needed
        seconds, pos = _varint(value, 1)
        if pos == len(value):
            return float(_signed64(seconds))
        if value[pos] == 0x10:
            nanos, pos = _varint(value, pos + 1)
            if pos == len(value):
                return _signed64(seconds) + _signed64(nanos) / 1e9
    for number, wire, inner in iter_fields(value):
        if wire != VARINT:
            continue
        if number == 1:
            seconds = cast(int, inner)
        elif number == 2:
            nanos = cast(int, inner)
    return _signed64(seconds) + _signed64(nanos) / 1e9


@dataclass(frozen=True)
class ScalarPoint:
    key: str
    step: int
    value: float
    wall_time: float | None
    column_type: int


@dataclass(frozen=True)
class ColumnInfo:
    key: str
    column_class: int
    column_type: int


@dataclass(frozen=True)
class FinishInfo:
    state: int
    error: str


@dataclass(frozen=True)
class StartInfo:
    project: str
    name: str
    run_id: str


Decoded = ScalarPoint | ColumnInfo | FinishInfo | StartInfo | None


def _scalar(buf: bytes, record_time: bytes | None) -> ScalarPoint:
    key = ""
    step = 0  # absent on the wire when it is 0
    value = 0.0  # ScalarValue.number absent when 0.0, and the whole ScalarValue absent when it is empty
    wall: float | None = None
    column_type = COLUMN_TYPE_UNSPECIFIED
    for number, wire, raw in iter_fields(buf):
        if number == 1 and wire == LEN:
            key = _text(raw)
        elif number == 2 and wire == VARINT:
            step = _signed64(cast(int, raw))
        elif number == 3 and wire == VARINT:
            column_type = cast(int, raw)
        elif number == 4 and wire == LEN:
            wall = timestamp_seconds(raw)
        elif number == 5 and wire == LEN:
            raw = cast(bytes, raw)
            if len(raw) == 9 and raw[0] == 0x09:  # the usual ScalarValue: just `1 number` (fixed64)
                value = _DOUBLE.unpack_from(raw, 1)[0]
                continue
            for inner_number, inner_wire, inner in iter_fields(raw):
                if inner_number == 1 and inner_wire == FIXED64:
                    value = _DOUBLE.unpack(cast(bytes, inner))[0]
    if not key:
        raise WireError("ScalarRecord without a key")
    if wall is None and record_time is not None:
        wall = timestamp_seconds(record_time)  # only needed when the scalar carries no time of its own
    return ScalarPoint(key, step, value, wall, column_type)


def _column(buf: bytes) -> ColumnInfo:
    key = ""
    column_class = 0
    column_type = COLUMN_TYPE_UNSPECIFIED
    for number, wire, raw in iter_fields(buf):
        if number == 1 and wire == VARINT:
            column_class = cast(int, raw)
        elif number == 2 and wire == VARINT:
            column_type = cast(int, raw)
        elif number == 3 and wire == LEN:
            key = _text(raw)
    return ColumnInfo(key, column_class, column_type)


def _finish(buf: bytes) -> FinishInfo:
    state = RUN_STATE_RUNNING
    error = ""
    for number, wire, raw in iter_fields(buf):
        if number == 1 and wire == VARINT:
            state = cast(int, raw)
        elif number == 2 and wire == LEN:
            error = _text(raw)
    return FinishInfo(state, error)


def _start(buf: bytes) -> StartInfo:
    project = name = run_id = ""
    for number, wire, raw in iter_fields(buf):
        if wire != LEN:
            continue
        if number == 1:
            project = _text(raw)
        elif number == 4:
            name = _text(raw)
        elif number == 10:
            run_id = _text(raw)
    return StartInfo(project, name, run_id)


def _plain_timestamp(buf: bytes, lo: int, hi: int) -> float | None:
    """:func:`timestamp_seconds` of ``buf[lo:hi]`` when it is ``1 seconds`` then optionally ``2 nanos`` (how
    protobuf writes one), else None: read in place, without the slice and field list of the general path."""
    if hi - lo < 2 or buf[lo] != 0x08:
        return None
    try:
        seconds, pos = _varint(buf, lo + 1)
        if pos >= hi:
            return float(_signed64(seconds)) if pos == hi else None
        if buf[pos] != 0x10:
            return None
        nanos, pos = _varint(buf, pos + 1)
    except WireError:
        return None
    return _signed64(seconds) + _signed64(nanos) / 1e9 if pos == hi else None


def fast_scalar(buf: bytes) -> tuple[bytes, int, float, float | None] | None:
    """The (raw key, step, value, wall time) of a Record in the layout SwanLab writes for every scalar, or None
    for anything else; :func:`decode_record` then decodes it (and gives the same answer on this layout).

    The layout: ``1 num`` (optional), ``2 timestamp`` (optional, under 128 bytes), then ``13 scalar`` ending the
    record, which holds ``1 key`` (1-127 bytes), ``2 step`` and ``3 type`` (optional varints), ``4 timestamp``
    (optional, under 128 bytes) and ``5 value`` as ``{1 number}`` or empty, in this order and nothing else; a
    timestamp is ``1 seconds`` and optionally ``2 nanos``. The wall time is the scalar's own, else the record's.

    Why: a run logs one record per metric per step, millions of them; reading this layout with straight-line
    byte tests, without building a field list per message, makes decoding several times faster. Every test that
    fails hands the record to the general decoder, so nothing it would read differently takes this path.
    """
    n = len(buf)
    pos = 0
    if n and buf[0] == 0x08:  # 1 num: skipped, a varint of at most 10 bytes
        pos = 1
        while pos < n and buf[pos] >= 0x80:
            pos += 1
        if pos >= n or pos > 10:
            return None
        pos += 1
    time_at: tuple[int, int] | None = None  # where the timestamp that gives the wall time is
    if pos + 1 < n and buf[pos] == 0x12 and buf[pos + 1] < 0x80:  # 2 timestamp
        stop = pos + 2 + buf[pos + 1]
        time_at = (pos + 2, stop)
        pos = stop
    if pos + 2 >= n or buf[pos] != 0x6A:  # 13 scalar
        return None
    length = buf[pos + 1]
    pos += 2
    if length >= 0x80:  # a two-byte length (a scalar of 128 bytes to 16 KB)
        if buf[pos] >= 0x80:
            return None
        length = (length & 0x7F) | (buf[pos] << 7)
        pos += 1
    if pos + length != n or pos + 2 > n or buf[pos] != 0x0A or not 0 < buf[pos + 1] < 0x80:  # 1 key
        return None
    stop = pos + 2 + buf[pos + 1]
    key = buf[pos + 2 : stop]
    pos = stop
    step = 0
    try:
        if pos < n and buf[pos] == 0x10:  # 2 step
            step, pos = _varint(buf, pos + 1)
            step = _signed64(step)
        if pos < n and buf[pos] == 0x18:  # 3 type: not needed here
            pos = _varint(buf, pos + 1)[1]
    except WireError:
        return None
    if pos + 1 < n and buf[pos] == 0x22 and buf[pos + 1] < 0x80:  # 4 timestamp
        stop = pos + 2 + buf[pos + 1]
        time_at = (pos + 2, stop)
        pos = stop
    value = 0.0
    if pos + 11 == n and buf[pos] == 0x2A and buf[pos + 1] == 0x09 and buf[pos + 2] == 0x09:  # 5 value {1 number}
        value = _DOUBLE.unpack_from(buf, pos + 3)[0]
    elif not (pos == n or (pos + 2 == n and buf[pos] == 0x2A and buf[pos + 1] == 0)):  # absent, or empty
        return None
    wall = None
    if time_at is not None:
        wall = _plain_timestamp(buf, *time_at)
        if wall is None:
            return None
    return key, step, value, wall


def decode_record(buf: bytes) -> Decoded:
    """The part of one ``Record`` dpodoctor uses, or None for the kinds it skips (media, console lines, saves).

    Raises :class:`WireError` when the bytes are not a well-formed Record.
    """
    record_time: bytes | None = None
    body: tuple[int, bytes] | None = None
    for number, wire, raw in iter_fields(buf):
        if number == RECORD_TIMESTAMP and wire == LEN:
            record_time = cast(bytes, raw)
        elif wire == LEN and number in (RECORD_START, RECORD_FINISH, RECORD_COLUMN, RECORD_SCALAR):
            body = (number, cast(bytes, raw))
    if body is None:
        return None
    kind, raw = body
    if kind == RECORD_SCALAR:
        return _scalar(raw, record_time)
    if kind == RECORD_COLUMN:
        return _column(raw)
    if kind == RECORD_FINISH:
        return _finish(raw)
    return _start(raw)
