"""The plain-layout walk (:mod:`dpodoctor.readers.tensorboard.plain`) says what protobuf says, record for record.

The walk reads the ``file_version`` record and the ``args`` text summary without protobuf, so that a check of
transformers' event files need not import it. Here, on generated records (every field the walk knows, in any order,
repeated, truncated, with bytes flipped, next to fields it does not know) and on every record of every fixture event
file: :class:`RecordPoints` fed with the walk equals :class:`RecordPoints` fed with protobuf alone, and the walk
takes the records it is for (so the comparison is not vacuous).
"""

from __future__ import annotations

import math
import struct
from dataclasses import fields
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from dpodoctor.readers.tensorboard import ARGS_TAG, scan_records
from dpodoctor.readers.tensorboard.plain import plain_event
from dpodoctor.readers.tensorboard.proto import RecordPoints

FIXTURES = Path(__file__).parent / "fixtures"
EVENT_FILES = sorted(FIXTURES.rglob("*tfevents*"))


def _walk(payloads: list[bytes], *, plain: bool) -> RecordPoints:
    points = RecordPoints()
    points.add(enumerate(payloads), plain=plain)
    return points


def _same(a: RecordPoints, b: RecordPoints) -> None:
    for f in fields(RecordPoints):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name in ("value", "wall"):
            assert len(x) == len(y)
            for u, v in zip(x, y, strict=True):
                assert (math.isnan(u) and math.isnan(v)) or (u == v and math.copysign(1, u) == math.copysign(1, v))
        else:
            assert x == y, f.name


texts = st.one_of(st.sampled_from(["", "train/loss", ARGS_TAG, "text", "scalars", "brain.Event:2", "é"]), st.text())
floats32 = st.floats(width=32)
any_float = st.floats()
int64s = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, 127, 128, 2**56, -1]))


@st.composite
def values(draw: st.DrawFn) -> list[bytes]:
    """One Summary.Value as its fields serialized one by one (joined in any order: protobuf merges them)."""
    parts = []
    member = draw(st.sampled_from(["none", "simple", "simple", "args_tensor", "args_tensor", "tensor", "both"]))
    if draw(st.integers(0, 3)):
        parts.append(summary_pb2.Summary.Value(tag=ARGS_TAG if member == "args_tensor" else draw(texts)))
    if member in ("simple", "both"):
        parts.append(summary_pb2.Summary.Value(simple_value=draw(floats32)))
    if member in ("args_tensor", "tensor", "both"):
        tensor = tensor_pb2.TensorProto(dtype=draw(st.sampled_from([types_pb2.DT_STRING, types_pb2.DT_FLOAT, 0])))
        if draw(st.booleans()):
            dims = [
                tensor_shape_pb2.TensorShapeProto.Dim(size=draw(st.integers(-1, 5)), name=draw(st.text(max_size=3)))
                for _ in range(draw(st.integers(0, 2)))
            ]
            tensor.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=dims, unknown_rank=draw(st.booleans())))
        tensor.string_val.extend(draw(st.lists(st.binary(max_size=30), max_size=3)))
        if draw(st.booleans()):
            tensor.version_number = draw(st.integers(0, 3))
        if member == "tensor":  # a number in a tensor: fields the plain walk leaves to protobuf
            tensor.float_val.append(draw(floats32))
        parts.append(summary_pb2.Summary.Value(tensor=tensor))
    if draw(st.booleans()):
        metadata = summary_pb2.SummaryMetadata(display_name=draw(st.text(max_size=4)))
        if draw(st.booleans()):
            metadata.plugin_data.plugin_name = draw(texts)
        if draw(st.booleans()):
            metadata.plugin_data.content = draw(st.binary(max_size=8))
        if draw(st.booleans()):
            metadata.summary_description = draw(st.text(max_size=4))
        if draw(st.booleans()):
            metadata.data_class = draw(st.integers(0, 3))
        parts.append(summary_pb2.Summary.Value(metadata=metadata))
    return [p.SerializeToString() for p in draw(st.permutations(parts))]


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """An Event record's payload: fields in any order, sometimes repeated, cut, or with a byte flipped."""
    parts = []
    if draw(st.booleans()):
        parts.append(event_pb2.Event(wall_time=draw(any_float)).SerializeToString())
    if draw(st.booleans()):
        parts.append(event_pb2.Event(step=draw(int64s)).SerializeToString())
    what = draw(st.sampled_from(["none", "file_version", "summary", "summary", "summary", "both"]))
    if what in ("file_version", "both"):
        parts.append(event_pb2.Event(file_version=draw(texts)).SerializeToString())
    if draw(st.booleans()):
        event = event_pb2.Event()
        event.source_metadata.writer = draw(texts)
        parts.append(event.SerializeToString())
    if what in ("summary", "both"):
        summary = b""
        for value in draw(st.lists(values(), max_size=3)):
            body = b"".join(value)
            summary += b"\x0a" + _varint(len(body)) + body
        parts.append(b"\x2a" + _varint(len(summary)) + summary)
    if draw(st.integers(0, 5)) == 0:  # a field the walk does not know (Event.graph_def, bytes)
        parts.append(event_pb2.Event(graph_def=draw(st.binary(max_size=5))).SerializeToString())
    if draw(st.integers(0, 5)) == 0 and parts:  # one field twice (protobuf merges or keeps the last)
        parts.append(draw(st.sampled_from(parts)))
    data = b"".join(draw(st.permutations(parts)))
    mutation = draw(st.sampled_from(["none"] * 6 + ["cut", "flip", "garbage"]))
    if mutation == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mutation == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif mutation == "garbage":
        data = draw(st.binary(max_size=30))
    return data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads(), min_size=1, max_size=4))
def test_plain_walk_equals_protobuf_record_by_record(records: list[bytes]) -> None:
    _same(_walk(records, plain=True), _walk(records, plain=False))
    for payload in records:
        if plain_event(payload) is not None:  # what the walk takes, protobuf parses
            assert not _walk([payload], plain=False).bad_at


def test_plain_walk_takes_the_version_and_args_records_as_tensorboard_writes_them() -> None:
    version = event_pb2.Event(wall_time=1.79e9, file_version="brain.Event:2")
    version.source_metadata.writer = "tensorboard.summary.writer.event_file_writer"
    value = summary_pb2.Summary.Value(
        tag=ARGS_TAG,
        tensor=tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
            string_val=[b'{"beta": 0.1}'],
        ),
    )
    value.metadata.plugin_data.plugin_name = "text"
    args = event_pb2.Event(wall_time=1.79e9, step=3, summary=summary_pb2.Summary(value=[value]))
    config = summary_pb2.Summary.Value()
    config.CopyFrom(value)
    config.tag = "model_config/text_summary"
    model = event_pb2.Event(wall_time=1.79e9, step=3, summary=summary_pb2.Summary(value=[config]))
    records = [version.SerializeToString(), args.SerializeToString(), model.SerializeToString()]
    assert plain_event(records[0]) == (0, 1.79e9, None)
    assert plain_event(records[1]) == (3, 1.79e9, [(ARGS_TAG, "text", None, [b'{"beta": 0.1}'])])
    assert plain_event(records[2]) == (3, 1.79e9, [("model_config/text_summary", "text", None, [b'{"beta": 0.1}'])])
    walked = _walk(records, plain=True)
    assert walked.args == ['{"beta": 0.1}']
    assert walked.plugin_events == [(0, ARGS_TAG, "text"), (0, "model_config/text_summary", "text")]
    _same(walked, _walk(records, plain=False))


def test_plain_walk_reads_a_negative_step_and_leaves_a_tensor_number_to_protobuf() -> None:
    assert plain_event(event_pb2.Event(step=-5).SerializeToString()) == (-5, 0.0, None)
    number = summary_pb2.Summary.Value(tag="x", tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1]))
    assert plain_event(event_pb2.Event(summary=summary_pb2.Summary(value=[number])).SerializeToString()) is None
    assert plain_event(b"\x09" + struct.pack("<d", 1.0)[:5]) is None  # cut inside wall_time


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(EVENT_FILES))
def test_plain_walk_equals_protobuf_on_every_fixture_record(path: Path) -> None:
    records = scan_records(path.read_bytes(), path).records
    _same(_walk(records, plain=True), _walk(records, plain=False))
    assert plain_event(records[0]) is not None  # the file_version record every writer starts with
