"""Tests for the TensorBoard reader: real TRL fixtures, scalar encodings, resumed runs, truncation, garbage.

Why write event files with TensorBoard's own EventFileWriter: it is the reference implementation of the record
framing, so a round trip through it checks our hand-written framing and CRC against the real thing.
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from dpodoctor.errors import ReadError
from dpodoctor.model import Ended
from dpodoctor.readers import ReadResult, get_reader, reader_for
from dpodoctor.readers.tensorboard import TensorBoardReader, crc32c, masked_crc32c, scan_records

FIXTURES = Path(__file__).parent / "fixtures" / "trl"
TRL_EVENT_FILES = sorted(FIXTURES.glob("*/runs/*/events.out.tfevents.*"))
READER = TensorBoardReader()


def _fixture_file(run: str) -> Path:
    (path,) = FIXTURES.glob(f"{run}/runs/*/events.out.tfevents.*")
    return path


def _series(result: ReadResult, metric: str, split: str = "train") -> dict[int, float]:
    f = result.frame
    sel = f[(f["split"] == split) & (f["metric"] == metric)]
    return dict(zip(sel["step"].tolist(), sel["value"].tolist(), strict=True))


def _record_offsets(data: bytes) -> list[int]:
    """Start offsets of every record, plus the end: an independent walk over the length fields."""
    offsets = [0]
    while offsets[-1] < len(data):
        (length,) = struct.unpack_from("<Q", data, offsets[-1])
        offsets.append(offsets[-1] + 12 + length + 4)
    assert offsets[-1] == len(data)
    return offsets


# ---------------------------------------------------------------- writing event files


def _scalar_event(tag: str, step: int, value: float, wall_time: float = 1.0) -> event_pb2.Event:
    return event_pb2.Event(
        wall_time=wall_time,
        step=step,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]),
    )


def _tensor_event(
    tag: str,
    step: int,
    tensor: tensor_pb2.TensorProto,
    plugin: str | None = "scalars",
) -> event_pb2.Event:
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin is not None:
        value.metadata.plugin_data.plugin_name = plugin
    return event_pb2.Event(wall_time=2.0, step=step, summary=summary_pb2.Summary(value=[value]))


def _text_event(tag: str, text: str) -> event_pb2.Event:
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
        string_val=[text.encode()],
    )
    return _tensor_event(tag, 0, tensor, plugin="text")


def _write_events(folder: Path, events: Iterable[event_pb2.Event], name: str | None = None) -> Path:
    """Write events with TensorBoard's own writer; optionally rename the file (to control the name order)."""
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    writer = EventFileWriter(str(folder))
    for event in events:
        writer.add_event(event)
    writer.close()
    (path,) = set(folder.iterdir()) - before
    if name is not None:
        path = path.rename(folder / name)
    return path


def _shape(*dims: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


# ---------------------------------------------------------------- registry, sniff, run_root


def test_registered_and_sniffs_fixture(tmp_path: Path) -> None:
    path = _fixture_file("healthy")
    assert get_reader("tensorboard") is not None
    assert isinstance(reader_for(path), TensorBoardReader)
    assert READER.sniff(path)
    assert not READER.sniff(path.parents[2] / "train.log")
    folder = tmp_path / "events.out.tfevents.dir"
    folder.mkdir()
    assert not READER.sniff(folder)


def test_run_root_hf_layout_and_plain(tmp_path: Path) -> None:
    path = _fixture_file("healthy")
    assert READER.run_root(path) == FIXTURES / "healthy"
    plain = tmp_path / "logs" / "events.out.tfevents.1.host.1.0"
    assert READER.run_root(plain) == tmp_path / "logs"


def test_crc32c_matches_reference() -> None:
    # The standard CRC-32C check value, and TensorBoard's own (slow, stub) implementation of the mask.
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    assert crc32c(b"123456789") == 0xE3069283
    rng = np.random.default_rng(0)
    for size in (0, 1, 8, 100):
        data = rng.bytes(size)
        assert masked_crc32c(data) == reference(data)


# ---------------------------------------------------------------- the real TRL fixtures


@pytest.mark.parametrize("path", TRL_EVENT_FILES, ids=lambda p: p.parts[-4])
def test_every_fixture_reads(path: Path) -> None:
    result = READER.read([path])
    assert result.ended is Ended.FINISHED
    assert result.steps_derived is False
    assert result.notes == []
    assert "train_runtime" in result.summary
    assert result.config["beta"] == result.beta
    for metric in ("loss", "margins", "accuracy", "chosen", "rejected"):
        assert len(_series(result, metric)) > 0, metric
        assert len(_series(result, metric, "eval")) > 0, metric
    # Summary keys must not leak into the step table.
    assert "train_runtime" not in set(result.frame["metric"].astype(str))


def test_healthy_fixture_content() -> None:
    path = _fixture_file("healthy")
    result = READER.read([path])
    loss = _series(result, "loss")
    assert sorted(loss) == list(range(5, 401, 5))
    eval_loss = _series(result, "loss", "eval")
    assert sorted(eval_loss) == list(range(20, 401, 20))
    assert result.beta == 0.1
    assert result.beta_source == f"runs/{path.parent.name}/{path.name}: args text summary"
    assert result.ended is Ended.FINISHED
    # DPO starts at ln 2 and the healthy run improves.
    assert loss[5] == pytest.approx(math.log(2), abs=0.01)
    assert loss[400] < loss[5]
    assert result.config["learning_rate"] == 3e-4


@pytest.mark.parametrize(("run", "beta"), [("beta_1.0", 1.0), ("beta_0.01", 0.01)])
def test_beta_from_args(run: str, beta: float) -> None:
    assert READER.read([_fixture_file(run)]).beta == beta


def test_fixture_values_match_independent_decode() -> None:
    """Every simple_value of train/loss in the file, decoded by a naive independent loop, is in the frame."""
    path = _fixture_file("healthy")
    data = path.read_bytes()
    offsets = _record_offsets(data)
    expected: dict[int, float] = {}
    for start in offsets[:-1]:
        (length,) = struct.unpack_from("<Q", data, start)
        event = event_pb2.Event.FromString(data[start + 12 : start + 12 + length])
        for value in event.summary.value:
            if value.tag == "train/loss":
                expected[event.step] = value.simple_value
    assert _series(READER.read([path]), "loss") == expected


# ---------------------------------------------------------------- encodings


def test_simple_value_and_tensor_encodings(tmp_path: Path) -> None:
    events = [
        _scalar_event("train/loss", 1, 0.5),
        # TF2 tf.summary.scalar: rank-0 float tensor, value in float_val.
        _tensor_event(
            "train/loss",
            2,
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_shape(), float_val=[0.25]),
        ),
        # Packed in tensor_content.
        _tensor_event(
            "train/loss",
            3,
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=_shape(),
                tensor_content=np.array([0.125], dtype="<f4").tobytes(),
            ),
        ),
        # DT_DOUBLE, both ways; a one-element shape [1] counts as a scalar.
        _tensor_event(
            "train/rewards/margins",
            1,
            tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=_shape(1), double_val=[0.1 + 0.2]),
        ),
        _tensor_event(
            "train/rewards/margins",
            2,
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_DOUBLE,
                tensor_shape=_shape(),
                tensor_content=np.array([1 / 3], dtype="<f8").tobytes(),
            ),
        ),
        # Integers.
        _tensor_event(
            "train/num_tokens",
            1,
            tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, tensor_shape=_shape(), int64_val=[2**40]),
        ),
        _tensor_event(
            "train/num_tokens",
            2,
            tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=_shape(), int_val=[-7]),
        ),
    ]
    result = READER.read([_write_events(tmp_path / "run", events)])
    assert _series(result, "loss") == {1: 0.5, 2: 0.25, 3: 0.125}
    assert _series(result, "margins") == {1: 0.1 + 0.2, 2: 1 / 3}  # doubles stay exact
    assert _series(result, "num_tokens") == {1: 2.0**40, 2: -7.0}
    assert result.beta is None
    assert result.ended is Ended.UNKNOWN
    assert result.notes == []


def test_non_scalars_are_skipped(tmp_path: Path) -> None:
    vector = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_shape(3), float_val=[1, 2, 3])
    scalar = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_shape(), float_val=[9.0])
    histo = summary_pb2.Summary.Value(tag="train/histo", histo=summary_pb2.HistogramProto(min=0, max=1, num=3))
    events = [
        _scalar_event("train/loss", 1, 0.7),
        _tensor_event("train/vector", 1, vector),  # not a scalar shape
        _tensor_event("train/other_plugin", 1, scalar, plugin="histograms"),  # a tensor of another plugin
        _tensor_event("train/no_plugin", 1, scalar, plugin=None),  # never declared a scalar
        _text_event("notes/text_summary", "hello"),
        event_pb2.Event(step=1, summary=summary_pb2.Summary(value=[histo])),
    ]
    result = READER.read([_write_events(tmp_path / "run", events)])
    pairs = set(zip(result.frame["split"].astype(str), result.frame["metric"].astype(str), strict=True))
    assert pairs == {("train", "loss")}


def test_tensor_metadata_only_on_first_value(tmp_path: Path) -> None:
    """TF1-style writers strip a tag's metadata after its first value; later values are still scalars."""
    first = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_shape(), float_val=[1.0])
    later = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_shape(), float_val=[2.0])
    events = [_tensor_event("train/loss", 1, first), _tensor_event("train/loss", 2, later, plugin=None)]
    result = READER.read([_write_events(tmp_path / "run", events)])
    assert _series(result, "loss") == {1: 1.0, 2: 2.0}


# ---------------------------------------------------------------- config and β


def test_args_text_summary_config(tmp_path: Path) -> None:
    events = [
        _text_event("args/text_summary", '{"beta": 0.5, "learning_rate": 1e-6}'),
        _scalar_event("train/loss", 1, 0.69),
        _scalar_event("train/train_runtime", 1, 12.0),
    ]
    path = _write_events(tmp_path / "out" / "runs" / "Jan01_host", events)
    result = READER.read([path])
    assert result.beta == 0.5
    assert result.beta_source == f"runs/Jan01_host/{path.name}: args text summary"
    assert result.config == {"beta": 0.5, "learning_rate": 1e-6}
    assert result.summary == {"train_runtime": 12.0}
    assert result.ended is Ended.FINISHED


@pytest.mark.parametrize(
    ("text", "expect_note"),
    [
        ("{'beta': 0.1}", "not valid JSON"),  # a Python repr is not JSON, and is never eval'd
        ("[1, 2]", "not an object"),
        ('{"beta": "0.1"}', "non-numeric beta"),
        ('{"beta": true}', "non-numeric beta"),
    ],
)
def test_bad_args_is_a_note(tmp_path: Path, text: str, expect_note: str) -> None:
    events = [_text_event("args/text_summary", text), _scalar_event("train/loss", 1, 0.69)]
    result = READER.read([_write_events(tmp_path / "run", events)])
    assert result.beta is None
    assert len(_series(result, "loss")) == 1
    assert any(expect_note in note for note in result.notes), result.notes


# ---------------------------------------------------------------- resumed runs


def test_resumed_run_later_file_wins(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    first = _write_events(
        folder,
        [
            _text_event("args/text_summary", '{"beta": 0.1}'),
            *(_scalar_event("train/loss", s, 1.0) for s in (1, 2, 3)),
        ],
        name="events.out.tfevents.1700000000.host.1.0",
    )
    second = _write_events(
        folder,
        [
            _text_event("args/text_summary", '{"beta": 0.2}'),
            *(_scalar_event("train/loss", s, 2.0) for s in (3, 4)),
            _scalar_event("train/train_runtime", 4, 5.0),
        ],
        name="events.out.tfevents.1700000100.host.2.0",
    )
    # The order of the arguments must not matter: the names decide.
    result = READER.read([second, first])
    assert _series(result, "loss") == {1: 1.0, 2: 1.0, 3: 2.0, 4: 2.0}
    assert result.beta == 0.2
    assert result.ended is Ended.FINISHED


def test_name_order_is_numeric(tmp_path: Path) -> None:
    """Same second, same process: the trailing counter 10 comes after 9, not before it."""
    folder = tmp_path / "run"
    a = _write_events(folder, [_scalar_event("train/loss", 1, 9.0)], name="events.out.tfevents.1700000000.h.1.9")
    b = _write_events(folder, [_scalar_event("train/loss", 1, 10.0)], name="events.out.tfevents.1700000000.h.1.10")
    assert _series(READER.read([b, a]), "loss") == {1: 10.0}


def test_empty_file_is_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    empty = folder / "events.out.tfevents.1600000000.host.1.0"
    folder.mkdir()
    empty.write_bytes(b"")
    good = _write_events(folder, [_scalar_event("train/loss", 1, 0.6)])
    result = READER.read([empty, good])
    assert _series(result, "loss") == {1: pytest.approx(0.6)}
    assert any("empty file" in note for note in result.notes)
    with pytest.raises(ReadError, match="no scalar summaries found"):
        READER.read([empty])


# ---------------------------------------------------------------- damaged files


def _cut_offsets(size: int) -> list[int]:
    return sorted({*range(0, min(size, 8192), 97), *(size - d for d in (1, 5, 17, 50, 51, 120, 300, 1000, 5000))})


def test_truncation(tmp_path: Path) -> None:
    source = _fixture_file("healthy")
    data = source.read_bytes()
    boundaries = set(_record_offsets(data))
    full_loss = len(_series(READER.read([source]), "loss"))
    previous = 0
    target = tmp_path / source.name
    saw_truncated = saw_error = 0
    for cut in _cut_offsets(len(data)):
        target.write_bytes(data[:cut])
        try:
            result = READER.read([target])
        except ReadError as exc:
            # The only error allowed: the cut came before the first scalar.
            assert exc.reason.startswith("no scalar summaries found"), (cut, exc)  # cut 0 adds "(empty file...)"
            assert exc.path == target
            n_loss = 0
            saw_error += 1
        else:
            n_loss = len(_series(result, "loss"))
            if cut in boundaries:
                assert not any("truncated" in note for note in result.notes), cut
            else:
                assert any(f"truncated at byte {cut}" in note for note in result.notes), (cut, result.notes)
                expected = Ended.FINISHED if "train_runtime" in result.summary else Ended.TRUNCATED
                assert result.ended is expected, cut
                saw_truncated += result.ended is Ended.TRUNCATED
        assert previous <= n_loss <= full_loss, cut
        previous = n_loss
    assert saw_error and saw_truncated  # both branches were exercised
    assert previous == full_loss  # the last cuts lose only the end-of-run summary


def test_truncated_note_counts_records(tmp_path: Path) -> None:
    source = _fixture_file("healthy")
    data = source.read_bytes()
    offsets = _record_offsets(data)
    k = 200
    target = tmp_path / source.name
    target.write_bytes(data[: offsets[k] + 5])
    result = READER.read([target])
    assert result.ended is Ended.TRUNCATED
    assert f"incomplete record at byte {offsets[k]}); read the {k} records before it" in result.notes[0]


def test_corrupt_header_mid_file_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    source = _fixture_file("healthy")
    data = bytearray(source.read_bytes())
    offsets = _record_offsets(bytes(data))
    data[offsets[300] + 2] ^= 0xFF  # breaks the length, so its CRC no longer matches
    target = tmp_path / source.name
    target.write_bytes(bytes(data))
    result = READER.read([target])
    assert result.ended is Ended.FINISHED  # the records after the bad one, up to train_runtime, are recovered
    skipped = offsets[301] - offsets[300]
    assert any(f"at byte {offsets[300]} ({skipped} bytes)" in note for note in result.notes), result.notes
    scan = scan_records(bytes(data), target)
    assert len(scan.records) == len(offsets) - 2 and scan.skipped == [(offsets[300], skipped)]


def test_random_bytes_raise(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.x"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ReadError, match="not a TensorBoard event file") as info:
        READER.read([path])
    assert "events.out.tfevents.x" in str(info.value)
    assert info.value.path == path


# ---------------------------------------------------------------- property test

TAGS = ("train/loss", "train/rewards/margins", "eval/loss", "train/grad_norm")
CANONICAL = {
    "train/loss": ("train", "loss"),
    "train/rewards/margins": ("train", "margins"),
    "eval/loss": ("eval", "loss"),
    "train/grad_norm": ("train", "grad_norm"),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    points=st.lists(
        st.tuples(
            st.sampled_from(TAGS),
            st.integers(min_value=0, max_value=1000),
            st.floats(allow_nan=False, allow_infinity=False, width=32),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_last_value_wins_property(tmp_path: Path, points: list[tuple[str, int, float]]) -> None:
    folder = tmp_path / f"prop_{time.monotonic_ns()}_{os.getpid()}"
    path = _write_events(folder, (_scalar_event(tag, step, value) for tag, step, value in points))
    result = READER.read([path])
    expected: dict[tuple[str, str, int], np.float32] = {}
    for tag, step, value in points:
        split, metric = CANONICAL[tag]
        expected[(split, metric, step)] = np.float32(value)
    got = {
        (str(split), str(metric), int(step)): np.float32(value)
        for split, metric, step, value in result.frame[["split", "metric", "step", "value"]].itertuples(index=False)
    }
    assert got == expected
