"""What protobuf says a record holds: the one per-record walk over ``Event`` messages.

Used for every record the vectorised decode (:mod:`.decode`) cannot read on its own (text summaries, tensor-encoded
scalars, several values in one event, odd tags) and, for all records, by the reference decode the fast one is tested
against. One walk, so both paths agree by construction on plugins, tensors and the ``args`` text summary.

protobuf and tensorboard's generated classes are imported only when a record needs them: the ``file_version``
record and the ``args`` text summary of a usual file are read by :mod:`.plain` (checked against protobuf record for
record), so a check of transformers' event files imports neither.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from dpodoctor.readers.tensorboard.plain import plain_event

if TYPE_CHECKING:
    from tensorboard.compat.proto import summary_pb2, tensor_pb2  # type: ignore[import-untyped, unused-ignore]

__all__ = ["ARGS_TAG", "SCALARS_PLUGIN", "RecordPoints", "scalar_value", "tensor_scalar"]

# The tag transformers (and torch's / tensorboardX's add_text) gives the TrainingArguments JSON.
ARGS_TAG: Final = "args/text_summary"
SCALARS_PLUGIN: Final = "scalars"

# One summary value as the walk reads it: tag, its own plugin name ("" without metadata), simple_value (None when
# absent), the protobuf tensor (None when absent, and from .plain, whose tensors hold no number), and the tensor's
# string_val (empty without a tensor).
_Value = tuple[str, str, float | None, Any, Sequence[bytes]]


@functools.cache
def _dtypes() -> tuple[Any, dict[int, str], dict[int, str]]:
    """tensorboard's ``types_pb2``, and per dtype the numpy dtype of its packed ``tensor_content`` bytes (always
    little endian in event files) and the repeated field that holds its values when they are not packed."""
    from tensorboard.compat.proto import types_pb2  # type: ignore[import-untyped, unused-ignore]

    content = {
        types_pb2.DT_FLOAT: "<f4",
        types_pb2.DT_DOUBLE: "<f8",
        types_pb2.DT_HALF: "<f2",
        types_pb2.DT_BFLOAT16: "<u2",  # raw bits; widened to float32 below (numpy has no bfloat16)
        types_pb2.DT_INT8: "i1",
        types_pb2.DT_UINT8: "u1",
        types_pb2.DT_INT16: "<i2",
        types_pb2.DT_UINT16: "<u2",
        types_pb2.DT_INT32: "<i4",
        types_pb2.DT_UINT32: "<u4",
        types_pb2.DT_INT64: "<i8",
        types_pb2.DT_UINT64: "<u8",
        types_pb2.DT_BOOL: "?",
    }
    val_fields = {
        types_pb2.DT_FLOAT: "float_val",
        types_pb2.DT_DOUBLE: "double_val",
        types_pb2.DT_HALF: "half_val",  # float16 bits in an int32
        types_pb2.DT_BFLOAT16: "half_val",  # bfloat16 bits in an int32
        types_pb2.DT_INT8: "int_val",
        types_pb2.DT_UINT8: "int_val",
        types_pb2.DT_INT16: "int_val",
        types_pb2.DT_UINT16: "int_val",
        types_pb2.DT_INT32: "int_val",
        types_pb2.DT_UINT32: "uint32_val",
        types_pb2.DT_INT64: "int64_val",
        types_pb2.DT_UINT64: "uint64_val",
        types_pb2.DT_BOOL: "bool_val",
    }
    return types_pb2, content, val_fields


def _protobuf_event(payload: bytes) -> tuple[int, float, list[Any] | None] | None:
    """``(step, wall_time, summary values)`` as protobuf parses the record (values None: no summary), or None when
    it is not an Event."""
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
    from tensorboard.compat.proto import event_pb2  # type: ignore[import-untyped, unused-ignore]

    try:
        event = event_pb2.Event.FromString(payload)
    except DecodeError:
        return None
    return event.step, event.wall_time, list(event.summary.value) if event.HasField("summary") else None


def _bits_to_float(bits: int, dtype: int) -> float:
    """float16 / bfloat16 values arrive as their bit patterns; turn them into a float."""
    if dtype == _dtypes()[0].DT_HALF:
        return float(np.array([bits & 0xFFFF], dtype=np.uint16).view(np.float16)[0])
    return float((np.array([bits & 0xFFFF], dtype=np.uint32) << 16).view(np.float32)[0])


def tensor_scalar(tensor: tensor_pb2.TensorProto) -> float | None:
    """The number in a scalar (rank 0, or a single element) numeric tensor; None for anything else."""
    dims = tensor.tensor_shape.dim
    if dims:
        count = 1
        for dim in dims:
            count *= dim.size
        if count != 1:
            return None
    dtype = tensor.dtype
    types_pb2, content_dtypes, val_fields = _dtypes()
    if tensor.tensor_content:
        np_dtype = content_dtypes.get(dtype)
        if np_dtype is None:
            return None
        try:
            arr = np.frombuffer(tensor.tensor_content, dtype=np_dtype)
        except ValueError:  # byte count not a multiple of the item size
            return None
        if arr.size != 1:
            return None
        if dtype == types_pb2.DT_BFLOAT16:
            return _bits_to_float(int(arr[0]), dtype)
        return float(arr[0])
    field_name = val_fields.get(dtype)
    if field_name is None:
        return None
    values = getattr(tensor, field_name)
    if not values:
        return None
    if dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        return _bits_to_float(int(values[0]), dtype)
    return float(values[0])


def scalar_value(value: summary_pb2.Summary.Value, plugin_name: str) -> float | None:
    """The scalar in one summary value, in either encoding, or None if it is not a scalar.

    Why two encodings: torch's SummaryWriter and tensorboardX write ``simple_value`` (a float32), while TF2's
    ``tf.summary.scalar`` writes a rank-0 tensor tagged with the ``scalars`` plugin. ``plugin_name`` is passed
    in because TF1-style writers store a tag's metadata only with its first value.
    """
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor") and plugin_name == SCALARS_PLUGIN:
        return tensor_scalar(value.tensor)
    return None


@dataclass
class RecordPoints:
    """The points protobuf finds in some records, as growing columns (one entry per scalar value).

    ``cond`` marks a tensor-encoded value whose own record names no plugin: whether it is a scalar depends on the
    plugin an earlier record (maybe of an earlier file) gave its tag, which only the assembler, reading the files in
    order, knows. ``plugin_events`` are ``(cond points before it, tag, plugin)``; ``args`` the text of each ``args``
    summary (None: it holds no text); ``bad_at`` the index of each record that is not an Event.
    """

    tags: list[str] = field(default_factory=list)
    rec: list[int] = field(default_factory=list)
    sub: list[int] = field(default_factory=list)
    tag: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cond: list[bool] = field(default_factory=list)
    plugin_events: list[tuple[int, str, str]] = field(default_factory=list)
    args: list[str | None] = field(default_factory=list)
    bad_at: list[int] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    _conds: int = 0

    def code(self, tag: str) -> int:
        """The number of a tag in :attr:`tags` (added on first sight, so codes follow arrival order)."""
        code = self._index.get(tag)
        if code is None:
            code = self._index[tag] = len(self.tags)
            self.tags.append(tag)
        return code

    def add(self, records: Iterable[tuple[int, bytes]], *, plain: bool = True) -> None:
        """Walk ``(record index, payload)`` pairs in file order. ``plain``: records in a layout :mod:`.plain` reads
        are read without protobuf (the same result); False parses every record with protobuf (the reference)."""
        for index, payload in records:
            event = plain_event(payload) if plain else None
            if event is not None:
                step, wall, plain_values = event
                if plain_values is not None:
                    self._add_values(index, step, wall, ((t, o, v, None, s) for t, o, v, s in plain_values))
                continue
            parsed = _protobuf_event(payload)
            if parsed is None:
                self.bad_at.append(index)
                continue
            step, wall, values = parsed
            if values is not None:
                self._add_values(index, step, wall, (_protobuf_value(item) for item in values))

    def _add_values(self, index: int, step: int, wall: float, values: Iterable[_Value]) -> None:
        """The walk over one event's summary values (:data:`_Value`)."""
        for sub, (tag, own, simple, tensor, strings) in enumerate(values):
            if own:
                self.plugin_events.append((self._conds, tag, own))
            if tag == ARGS_TAG:
                self.args.append(strings[0].decode("utf-8", errors="replace") if strings else None)
                continue
            cond = False
            number: float | None
            if simple is not None:
                number = simple
            elif tensor is not None:
                if own:
                    number = tensor_scalar(tensor) if own == SCALARS_PLUGIN else None
                else:
                    number = tensor_scalar(tensor)
                    cond = True
            else:
                number = None
            if number is None:
                continue
            self._conds += cond
            self.rec.append(index)
            self.sub.append(sub)
            self.tag.append(self.code(tag))
            self.step.append(step)
            self.value.append(number)
            self.wall.append(wall)
            self.cond.append(cond)


def _protobuf_value(item: Any) -> _Value:
    """A protobuf ``Summary.Value`` as the walk reads it (:data:`_Value`)."""
    own = item.metadata.plugin_data.plugin_name if item.HasField("metadata") else ""
    simple = float(item.simple_value) if item.HasField("simple_value") else None
    return item.tag, own, simple, item.tensor if item.HasField("tensor") else None, item.tensor.string_val
