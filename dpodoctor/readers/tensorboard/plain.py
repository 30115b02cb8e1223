"""The Event records of the usual non-scalar layouts, read without protobuf.

Why: a TensorBoard file opens with a ``file_version`` record, and transformers writes its TrainingArguments as an
``args`` text summary (and the model's config as another). The vectorised decode (:mod:`.decode`) reads the scalar
records itself and hands these to the per-record walk (:class:`~.proto.RecordPoints`); importing protobuf and
tensorboard's generated Event classes for them took about 25 ms, more than the rest of the decode of a small run.
This module reads such a record with a strict wire-format walk over the few fields those layouts use, and says "not
mine" (None) for anything else, which then goes to protobuf as before.

Strict means: every field must be one this walk knows, with the wire type its ``.proto`` gives it, singular fields
at most once, each oneof (``file_version``/``summary``, ``simple_value``/``tensor``) at most one member, string
fields valid UTF-8, every length inside its message, every varint at most 10 bytes. A tensor may only hold a dtype,
a shape, a version and strings: no ``tensor_content`` and no numeric ``*_val`` field, so it holds no number (the
walk's ``tensor_scalar`` finds none in such a tensor whatever its plugin, shape or dtype), and a tensor-encoded
number goes to protobuf. Any record that passes is one protobuf parses without error, and what the walk takes from
it (step, wall time, tags, plugin names, numbers, the ``args`` strings) is what protobuf gives:
``tests/test_plain_events.py`` checks it record for record against protobuf on generated records and on every
fixture.
"""

from __future__ import annotations

import struct
from typing import Any, Final

__all__ = ["PlainValue", "plain_event"]

# The fields read, per message of tensorboard's event.proto / summary.proto / tensor.proto: number -> (wire type,
# what it holds, repeated). Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. "str" is a UTF-8 string
# field, "bytes" a bytes field, "int" any varint field, "f64"/"f32" a double/float; other names are messages.
_SCHEMAS: Final[dict[str, dict[int, tuple[int, str, bool]]]] = {
    # Event: wall_time, step, file_version, summary, source_metadata
    "Event": {1: (1, "f64", False), 2: (0, "int", False), 3: (2, "str", False), 5: (2, "Summary", False)}
    | {10: (2, "SourceMetadata", False)},
    "SourceMetadata": {1: (2, "str", False)},  # writer
    "Summary": {1: (2, "Value", True)},  # value
    # Summary.Value: tag, simple_value, tensor, metadata
    "Value": {1: (2, "str", False), 2: (5, "f32", False), 8: (2, "Tensor", False), 9: (2, "Metadata", False)},
    # SummaryMetadata: plugin_data, display_name, summary_description, data_class
    "Metadata": {1: (2, "PluginData", False), 2: (2, "str", False), 3: (2, "str", False), 4: (0, "int", False)},
    "PluginData": {1: (2, "str", False), 2: (2, "bytes", False)},  # plugin_name, content
    # TensorProto: dtype, tensor_shape, version_number, string_val
    "Tensor": {1: (0, "int", False), 2: (2, "Shape", False), 3: (0, "int", False), 8: (2, "bytes", True)},
    "Shape": {2: (2, "Dim", True), 3: (0, "int", False)},  # TensorShapeProto: dim, unknown_rank
    "Dim": {1: (0, "int", False), 2: (2, "str", False)},  # size, name
}
_MASK64: Final = (1 << 64) - 1
_F64: Final = struct.Struct("<d")
_F32: Final = struct.Struct("<f")

# One summary value as the walk needs it: tag, its own plugin name ("" without metadata), simple_value (None when
# absent), and the tensor's string_val (empty without a tensor; the tensor holds no number).
PlainValue = tuple[str, str, float | None, list[bytes]]


def _varint(buf: bytes, at: int, end: int) -> tuple[int, int]:
    """The varint at ``at`` (as protobuf reads it: 7 bits a byte, at most 10 bytes, bits past 64 dropped) and the
    offset after it; (-1, at) when it runs past ``end`` or over 10 bytes."""
    value = shift = 0
    for i in range(at, min(at + 10, end)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _MASK64, i + 1
        shift += 7
    return -1, at


def _message(buf: bytes, at: int, end: int, schema: str) -> dict[int, Any] | None:
    """The known fields of the message in ``buf[at:end]`` (repeated ones as lists), or None if anything in it is
    not as :data:`_SCHEMAS` says."""
    fields: dict[int, Any] = {}
    known = _SCHEMAS[schema]
    while at < end:
        key, at = _varint(buf, at, end)
        spec = known.get(key >> 3) if key >= 0 else None
        if spec is None or spec[0] != key & 7:
            return None
        _, kind, repeated = spec
        value: Any
        if kind == "int":
            value, at = _varint(buf, at, end)
            if value < 0:
                return None
        elif kind == "f64":
            if at + 8 > end:
                return None
            value = _F64.unpack_from(buf, at)[0]
            at += 8
        elif kind == "f32":
            if at + 4 > end:
                return None
            value = _F32.unpack_from(buf, at)[0]
            at += 4
        else:
            length, at = _varint(buf, at, end)
            if length < 0 or at + length > end:
                return None
            if kind == "bytes":
                value = bytes(buf[at : at + length])
            elif kind == "str":
                try:
                    value = bytes(buf[at : at + length]).decode("utf-8")
                except UnicodeDecodeError:  # protobuf refuses the record: its path says so
                    return None
            else:
                value = _message(buf, at, at + length, kind)
                if value is None:
                    return None
            at += length
        number = key >> 3
        if repeated:
            fields.setdefault(number, []).append(value)
        elif number in fields:  # a repeated singular field: protobuf merges or keeps the last; leave it to protobuf
            return None
        else:
            fields[number] = value
    return fields


def plain_event(payload: bytes) -> tuple[int, float, list[PlainValue] | None] | None:
    """``(step, wall_time, values)`` of an Event record in a layout this module reads (``values`` None: the event
    has no summary), or None: protobuf reads it."""
    event = _message(payload, 0, len(payload), "Event")
    if event is None or (3 in event and 5 in event):  # both members of the oneof `what`: protobuf keeps the last
        return None
    step = event.get(2, 0)
    if step >= 1 << 63:  # int64: the varint's 64 bits in two's complement
        step -= 1 << 64
    wall = float(event.get(1, 0.0))
    summary = event.get(5)
    if summary is None:
        return step, wall, None
    values: list[PlainValue] = []
    for value in summary.get(1, []):
        if 2 in value and 8 in value:  # both members of the oneof: protobuf keeps the last one
            return None
        tensor = value.get(8)  # strings only (see the module's docstring)
        own = value[9].get(1, {}).get(1, "") if 9 in value else ""
        simple = value.get(2)
        strings = tensor.get(8, []) if tensor else []
        values.append((value.get(1, ""), own, None if simple is None else float(simple), strings))
    return step, wall, values
