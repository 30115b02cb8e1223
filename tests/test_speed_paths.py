"""The speed paths say exactly what the slow ones say.

* The numpy fast path of the TensorBoard reader (:mod:`dpodoctor.readers.tensorboard.decode`) against protobuf parsing
  every record (:meth:`TensorBoardReader.read_reference` and a per-record walk written here): on every fixture event
  file and on generated files (simple_value and tensor-encoded scalars, text summaries, odd tags, truncated tails, bad
  headers, garbage records).
* The on-disk cache (:mod:`dpodoctor.cache`): hits, misses, invalidation on size and time, a grown file read from
  where the last read stopped, ``--no-cache``, the cache folder from ``DPODOCTOR_CACHE_DIR``; cached results equal
  fresh ones field by field.
* Parallel loading (:mod:`dpodoctor.sweep`) gives the same report as serial loading.
* The bounded Theil–Sen slope and the indexed ``Run.series`` equal what they replace.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from typer.testing import CliRunner

from dpodoctor import api, cache, sweep
from dpodoctor.cache import RunCache
from dpodoctor.cli import app
from dpodoctor.errors import ReadError
from dpodoctor.model import Ended, Run, frame_from_codes, make_frame
from dpodoctor.readers import ReadResult, get_reader, read_runs
from dpodoctor.readers.tensorboard import ARGS_TAG, SCALARS_PLUGIN, TensorBoardReader, masked_crc32c, tensor_scalar
from dpodoctor.readers.tensorboard import decode as tbfast
from dpodoctor.stats import theil_sen_slope

FIXTURES = Path(__file__).parent / "fixtures"
EVENT_FILES = sorted(FIXTURES.rglob("*tfevents*"))
READER = TensorBoardReader()
TB_RUNS = sorted({READER.run_root(p) for p in EVENT_FILES})


# ---------------------------------------------------------------------------------------------- helpers


def frame_record(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, payload, masked CRC of the payload."""
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


def assert_same_result(a: ReadResult, b: ReadResult) -> None:
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    assert a.frame["split"].cat.categories.tolist() == b.frame["split"].cat.categories.tolist()
    assert a.frame["metric"].cat.categories.tolist() == b.frame["metric"].cat.categories.tolist()
    assert a.notes == b.notes
    assert list(a.summary.items()) == list(b.summary.items()) or _nan_equal(a.summary, b.summary)
    assert a.config == b.config
    assert (a.beta, a.beta_source, a.ended, a.steps_derived, a.label) == (
        b.beta,
        b.beta_source,
        b.ended,
        b.steps_derived,
        b.label,
    )


def _nan_equal(a: dict[str, float], b: dict[str, float]) -> bool:
    return list(a) == list(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values(), b.values(), strict=True)
    )


def reference_points(data: bytes) -> dict[str, Any]:
    """What protobuf says, record by record: the points (tag, step, value, wall, cond) in order, the plugin events,
    the args texts and the undecodable records. Written independently of tbfast, from the reader's reference loop."""
    from dpodoctor.readers.tensorboard import scan_records

    scan = scan_records(data, Path("x"))
    points: list[tuple[str, int, float, float, bool]] = []
    events: list[tuple[int, str, str]] = []
    args: list[str | None] = []
    bad = 0
    conds = 0
    for record in scan.records:
        try:
            event = event_pb2.Event.FromString(record)
        except DecodeError:
            bad += 1
            continue
        if not event.HasField("summary"):
            continue
        for value in event.summary.value:
            own = value.metadata.plugin_data.plugin_name if value.HasField("metadata") else ""
            if own:
                events.append((conds, value.tag, own))
            if value.tag == ARGS_TAG:
                strings = value.tensor.string_val
                args.append(strings[0].decode("utf-8", errors="replace") if strings else None)
                continue
            if value.HasField("simple_value"):
                points.append((value.tag, event.step, float(value.simple_value), event.wall_time, False))
            elif value.HasField("tensor"):
                if own:
                    number = tensor_scalar(value.tensor) if own == SCALARS_PLUGIN else None
                    if number is not None:
                        points.append((value.tag, event.step, number, event.wall_time, False))
                else:
                    number = tensor_scalar(value.tensor)
                    if number is not None:
                        points.append((value.tag, event.step, number, event.wall_time, True))
                        conds += 1
    return {
        "points": points,
        "events": events,
        "args": args,
        "bad": bad,
        "records": len(scan.records),
        "stop_at": scan.stop_at,
        "stop_reason": scan.stop_reason,
        "skipped": scan.skipped,
    }


def decode_points(data: bytes) -> dict[str, Any]:
    d = tbfast.decode_event_bytes(data, Path("x"))
    points = [
        (d.tags[t], int(s), float(v), float(w), bool(c))
        for t, s, v, w, c in zip(d.tag, d.step, d.value, d.wall, d.cond, strict=True)
    ]
    return {
        "points": points,
        "events": d.plugin_events,
        "args": d.args,
        "bad": d.bad_records,
        "records": d.records,
        "stop_at": d.stop_at,
        "stop_reason": d.stop_reason,
    }


def same_points(a: dict[str, Any], b: dict[str, Any]) -> None:
    pa, pb = a.pop("points"), b.pop("points")
    assert a == b
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        assert x[0] == y[0] and x[1] == y[1] and x[4] == y[4]
        for u, v in ((x[2], y[2]), (x[3], y[3])):
            assert (math.isnan(u) and math.isnan(v)) or (u == v and math.copysign(1, u) == math.copysign(1, v))


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.parent.parent.parent.name)
def test_fast_path_equals_protobuf_on_fixture_files(path: Path) -> None:
    data = path.read_bytes()
    expected = reference_points(data)
    assert not expected.pop("skipped")
    same_points(decode_points(data), expected)
    assert_same_result(READER.read([path]), READER.read_reference([path]))


@pytest.mark.parametrize("root", TB_RUNS, ids=lambda p: p.name)
def test_fast_path_equals_protobuf_on_fixture_runs_cut_anywhere(root: Path, tmp_path: Path) -> None:
    # the run's main event file (a LLaMA-Factory run also leaves a small second one from its closing evaluation)
    path = max((p for p in EVENT_FILES if READER.run_root(p) == root), key=lambda p: p.stat().st_size)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) - 5, len(data) // 2, 40, 13):
        target = tmp_path / f"cut{cut}" / path.name
        target.parent.mkdir()
        target.write_bytes(data[:cut])
        expected = reference_points(data[:cut])
        assert not expected.pop("skipped")
        same_points(decode_points(data[:cut]), expected)
        try:
            expected = READER.read_reference([target])
        except ReadError as exc:
            with pytest.raises(ReadError, match=str(exc.reason)):
                READER.read([target])
            continue
        assert_same_result(READER.read([target]), expected)


# ---------------------------------------------------------------------------------------------- generated files

finite_or_odd = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-45, -3.4028234663852886e38, float("nan"), float("inf")]),
)
tags = st.one_of(
    st.sampled_from(
        [
            "train/loss",
            "train/rewards/margins",
            "eval/loss",
            "train/train_runtime",
            "train_runtime",
            "",
            "train/épsilon",
            "x" * 130,
            ARGS_TAG,
            "eval/rewards/accuracies",
        ]
    ),
    st.text(max_size=20),
)
steps = st.one_of(
    st.integers(0, 300), st.sampled_from([0, 127, 128, 2**31, 2**56 - 1, 2**56, 2**62, 2**63 - 1, -1, -(2**63)])
)
walls = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.79e9, -0.0]))


def _tensor(kind: str, x: float) -> tensor_pb2.TensorProto:
    scalar_shape = tensor_shape_pb2.TensorShapeProto()
    if kind == "content_f32":
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, tensor_shape=scalar_shape, tensor_content=np.float32(x).tobytes()
        )
    if kind == "double_val":
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=scalar_shape, double_val=[x])
    if kind == "half_val":
        with np.errstate(over="ignore"):
            bits = int(np.array([x], dtype=np.float16).view(np.uint16)[0])
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF, tensor_shape=scalar_shape, half_val=[bits])
    if kind == "vector":
        shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)])
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=[x, x])
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=scalar_shape, string_val=[b"text"])


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """One record's payload, of every kind an event file holds (and some it should not)."""
    kind = draw(
        st.sampled_from(["simple"] * 6 + ["tensor", "multi", "text", "args", "version", "garbage", "raw", "raw_bad"])
    )
    step, wall = draw(steps), draw(walls)
    if kind == "simple":
        event = event_pb2.Event(
            wall_time=wall,
            step=step,
            summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=draw(tags), simple_value=draw(finite_or_odd))]
            ),
        )
        return event.SerializeToString()
    if kind in ("tensor", "multi"):
        values = []
        for _ in range(1 if kind == "tensor" else draw(st.integers(2, 4))):
            value = summary_pb2.Summary.Value(
                tag=draw(tags),
                tensor=_tensor(
                    draw(st.sampled_from(["content_f32", "double_val", "half_val", "vector", "string"])),
                    draw(finite_or_odd),
                ),
            )
            plugin = draw(st.sampled_from([None, "", "scalars", "text", "histograms"]))
            if plugin is not None:
                value.metadata.plugin_data.plugin_name = plugin
            if draw(st.booleans()):
                value = summary_pb2.Summary.Value(tag=draw(tags), simple_value=draw(finite_or_odd))
            values.append(value)
        return event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=values)).SerializeToString()
    if kind in ("text", "args"):
        text = draw(st.sampled_from(['{"beta": 0.25, "lr": 1e-6}', '{"beta": "x"}', "[1, 2]", "not json", '{"a": 1}']))
        value = summary_pb2.Summary.Value(
            tag=ARGS_TAG if kind == "args" else "model_config/text_summary", tensor=_tensor("string", 0.0)
        )
        value.tensor.string_val[:] = [text.encode()] if draw(st.booleans()) else []
        value.metadata.plugin_data.plugin_name = "text"
        return event_pb2.Event(
            wall_time=wall, step=step, summary=summary_pb2.Summary(value=[value])
        ).SerializeToString()
    if kind == "version":
        return event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString()
    if kind == "garbage":
        return draw(st.binary(max_size=40))
    # Hand-made bytes in (or almost in) the simple layout: invalid UTF-8 tags, non-minimal varints, extra fields.
    tag = draw(st.binary(max_size=12))
    value = b"\x0a" + bytes([len(tag)]) + tag + b"\x15" + struct.pack("<f", draw(finite_or_odd))
    step_bytes = draw(st.sampled_from([b"", b"\x10\x05", b"\x10\x80\x00", b"\x10\xff\xff\xff\xff\x0f", b"\x10\x80"]))
    tail = draw(st.sampled_from([b"", b"", b"\x38\x01"])) if kind == "raw_bad" else b""
    summary = b"\x0a" + bytes([len(value) + len(tail)]) + value + tail
    return b"\x09" + struct.pack("<d", wall) + step_bytes + b"\x2a" + bytes([len(summary)]) + summary


@st.composite
def event_files(draw: st.DrawFn) -> bytes:
    payloads = draw(st.lists(records(), max_size=25))
    data = b"".join(frame_record(p) for p in payloads)
    mutation = draw(st.sampled_from(["none", "none", "cut", "bad_header", "short_tail"]))
    if mutation == "cut" and data:
        data = data[: draw(st.integers(0, len(data)))]
    elif mutation == "bad_header" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1 :]
    elif mutation == "short_tail":
        data += b"\x01\x02\x03"
    return data


def _scalar_events(tags: list[str]) -> bytes:
    """One simple-value record per tag, steps 1, 2, ...: the shape the fast path reads itself."""
    return b"".join(
        frame_record(
            event_pb2.Event(
                wall_time=1.7e9 + i,
                step=i + 1,
                summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=i * 0.5)]),
            ).SerializeToString()
        )
        for i, tag in enumerate(tags)
    )


def test_tags_first_seen_after_the_sampled_records_and_hash_collisions_decode_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tags are grouped by hash among the distinct hashes of a chunk's first records (decode._SAMPLE); a tag first
    # logged later sends the chunk to a full unique, and equal hashes of different tags to an exact one.
    names = ["train/loss", "train/rewards/margins", "eval/loss", "train/a-much-longer-tag/than-the-others/at-all"]
    tags = [names[i % 2] for i in range(tbfast._SAMPLE + 50)] + names[2:] + names[:2]
    data = _scalar_events(tags)
    expected = reference_points(data)
    expected.pop("skipped")
    same_points(decode_points(data), dict(expected))
    monkeypatch.setattr(tbfast, "_HASH_MULTIPLIERS", (np.uint64(0),) * len(tbfast._HASH_MULTIPLIERS))  # all collide
    same_points(decode_points(data), expected)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_files())
def test_fast_decode_equals_protobuf_record_by_record(data: bytes) -> None:
    try:
        expected = reference_points(data)
    except ReadError:
        with pytest.raises(ReadError):
            tbfast.decode_event_bytes(data, Path("x"))
        return
    got = decode_points(data)
    skipped = expected.pop("skipped")
    if got["bad"] or got["stop_reason"] == "bad record header":
        # A damaged file: read() hands it to read_reference, which resynchronises past corrupt headers and names
        # every bad record. Here: the fast path sees the same damage.
        assert expected["bad"] or skipped or expected["stop_reason"] == "bad record header"
        return
    assert not skipped
    same_points(got, expected)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(event_files(), min_size=1, max_size=3))
def test_fast_read_equals_reference_read(tmp_path_factory: pytest.TempPathFactory, files: list[bytes]) -> None:
    folder = tmp_path_factory.mktemp("run")
    paths = []
    for i, data in enumerate(files):
        path = folder / f"events.out.tfevents.{1000 + i}.host"
        path.write_bytes(data)
        paths.append(path)
    try:
        expected = READER.read_reference(paths)
    except ReadError as exc:
        with pytest.raises(ReadError) as got:
            READER.read(paths)
        assert (got.value.reason, got.value.path) == (exc.reason, exc.path)
        return
    assert_same_result(READER.read(paths), expected)


def test_tf2_tensor_scalars_take_their_plugin_from_an_earlier_file(tmp_path: Path) -> None:
    """TF1-style writers name a tag's plugin once: the value's meaning then depends on an earlier record or file."""

    def event(tag: str, step: int, plugin: str | None) -> bytes:
        value = summary_pb2.Summary.Value(tag=tag, tensor=_tensor("content_f32", step / 10))
        if plugin:
            value.metadata.plugin_data.plugin_name = plugin
        return event_pb2.Event(wall_time=1.0, step=step, summary=summary_pb2.Summary(value=[value])).SerializeToString()

    first = tmp_path / "events.out.tfevents.1.a"
    second = tmp_path / "events.out.tfevents.2.a"
    first.write_bytes(frame_record(event("train/loss", 1, "scalars")) + frame_record(event("x", 1, "histograms")))
    second.write_bytes(b"".join(frame_record(event(t, s, None)) for t, s in [("train/loss", 2), ("x", 2), ("y", 3)]))
    fast, slow = READER.read([first, second]), READER.read_reference([first, second])
    assert_same_result(fast, slow)
    assert fast.frame["step"].tolist() == [1, 2]


def test_file_decode_extend_equals_one_decode(tmp_path: Path) -> None:
    data = _fixture_bytes()
    whole = tbfast.decode_event_bytes(data, Path("x"))
    cut = len(data) // 3
    head = tbfast.decode_event_bytes(data[:cut], Path("x"))
    tail = tbfast.decode_event_bytes(data[head.consumed :], Path("x"), base=head.consumed)
    joined = head.extend(tail)
    for name in ("size", "consumed", "records", "bad_records", "stop_at", "stop_reason", "plugin_events", "args"):
        assert getattr(joined, name) == getattr(whole, name), name
    assert [joined.tags[i] for i in joined.tag] == [whole.tags[i] for i in whole.tag]
    for name in ("step", "value", "wall", "cond"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


@pytest.mark.parametrize("chunk", [1, 13, 257, 4096])
def test_decode_file_in_chunks_equals_one_decode(tmp_path: Path, chunk: int) -> None:
    """The file is decoded a few MiB at a time (bounded memory); a record cut by a chunk's end, or longer than a chunk
    (the args summary), is carried into the next read, so the chunks change nothing."""
    data = _fixture_bytes()
    path = tmp_path / "events.out.tfevents.1.host"
    for size in (len(data), len(data) - 7):  # whole, and cut inside the last record
        path.write_bytes(data[:size])
        whole = tbfast.decode_event_bytes(data[:size], path)
        chunked = tbfast.decode_file(path, chunk=chunk)
        for name in ("size", "consumed", "records", "bad_records", "stop_at", "stop_reason", "plugin_events", "args"):
            assert getattr(chunked, name) == getattr(whole, name), name
        assert [chunked.tags[i] for i in chunked.tag] == [whole.tags[i] for i in whole.tag]
        for name in ("step", "value", "wall", "cond"):
            np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))


def test_bytes_that_look_like_a_record_start_inside_a_record_change_nothing() -> None:
    """The framing finds record starts by a byte pattern (small length, then 0x09) and keeps only those that chain
    from byte 0; a tag holding that pattern must not be taken for a record."""
    fake = "\x05" + "\x00" * 7 + "abcd" + "\t" + "z"  # length 5, four CRC bytes, then the wall_time key
    records = [
        frame_record(
            event_pb2.Event(
                wall_time=1.0 + i, step=i, summary=summary_pb2.Summary(value=[_simple(tag, i / 10)])
            ).SerializeToString()
        )
        for i in range(1, 40)
        for tag in ("train/loss", fake, "x" + fake)
    ]
    data = b"".join(records)
    expected = reference_points(data)
    assert expected.pop("skipped") == []
    assert expected["records"] == len(records)
    same_points(decode_points(data), expected)


def _simple(tag: str, value: float) -> summary_pb2.Summary.Value:
    return summary_pb2.Summary.Value(tag=tag, simple_value=value)


def _fixture_bytes() -> bytes:
    return next(p for p in EVENT_FILES if "healthy" in p.parts).read_bytes()


# ---------------------------------------------------------------------------------------------- the cache


def _copy_run(tmp_path: Path, name: str = "healthy") -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / "trl" / name, target)
    return target


def _tb_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*tfevents*"))


def test_cache_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPODOCTOR_CACHE_DIR", str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    assert RunCache().root == (tmp_path / "here").resolve()


def test_cache_hit_miss_and_cached_equals_fresh(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    files = _tb_files(run)
    store = RunCache(tmp_path / "cache")
    (fresh,) = read_runs(READER, files)
    (first,) = store.read_runs(READER, files)
    assert (store.hits, store.misses) == (0, 1)
    (second,) = RunCache(tmp_path / "cache").read_runs(READER, files)
    assert_same_result(first, fresh)
    assert_same_result(second, fresh)
    again = RunCache(tmp_path / "cache")
    again.read_runs(READER, files)
    assert (again.hits, again.misses) == (1, 0)


def test_cache_keeps_notes_ended_beta_config_of_a_truncated_run(tmp_path: Path) -> None:
    run = _copy_run(tmp_path, "overfit")
    (path,) = _tb_files(run)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"train/train_runtime") - 3])  # cut inside the end-of-training record
    fresh = READER.read_reference([path])
    assert fresh.ended == Ended.TRUNCATED and fresh.notes and fresh.config and fresh.beta is not None
    RunCache(tmp_path / "cache").read_runs(READER, [path])
    store = RunCache(tmp_path / "cache")
    (cached,) = store.read_runs(READER, [path])
    assert store.hits == 1
    assert_same_result(cached, fresh)


@pytest.mark.parametrize("change", ["size", "mtime"])
def test_cache_is_invalidated_by_size_or_mtime(tmp_path: Path, change: str) -> None:
    run = _copy_run(tmp_path)
    (path,) = _tb_files(run)
    RunCache(tmp_path / "cache").read_runs(READER, [path])
    st_before = path.stat()
    if change == "size":
        data = path.read_bytes()
        path.write_bytes(data[:-3])
    else:
        os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns + 10**9))
    store = RunCache(tmp_path / "cache")
    (got,) = store.read_runs(READER, [path])
    assert store.misses == 1
    assert_same_result(got, READER.read_reference([path]))


def test_a_grown_event_file_is_read_from_the_last_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "live" / "runs" / "now"
    folder.mkdir(parents=True)
    path = folder / "events.out.tfevents.1.host"
    data = _fixture_bytes()
    records = _split_records(data)
    keep = [r for r in records if b"train_runtime" not in r and b"train_loss" not in r]  # still training
    half = len(keep) // 2
    path.write_bytes(b"".join(keep[:half]) + keep[half][:10])  # the writer is mid-record
    starts: list[int] = []
    real = tbfast.decode_file

    def spy(p: Path, start: int = 0) -> tbfast.FileDecode:
        starts.append(start)
        return real(p, start)

    monkeypatch.setattr(tbfast, "decode_file", spy)
    first = RunCache(tmp_path / "cache").read_runs(READER, [path])[0]
    assert first.ended == Ended.TRUNCATED
    consumed = sum(len(r) for r in keep[:half])
    path.write_bytes(b"".join(keep))
    (grown,) = RunCache(tmp_path / "cache").read_runs(READER, [path])
    assert starts == [0, consumed]
    assert_same_result(grown, READER.read_reference([path]))
    # Rewritten in place (a new run under the same name, not longer): read whole again.
    path.write_bytes(b"".join(keep[:3]) + b"".join(keep))
    (rewritten,) = RunCache(tmp_path / "cache").read_runs(READER, [path])
    assert starts[-1] == 0
    assert_same_result(rewritten, READER.read_reference([path]))


def _split_records(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append(data[pos : pos + 16 + length])
        pos += 16 + length
    return out


def test_a_new_version_or_format_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _copy_run(tmp_path)
    files = _tb_files(run)
    RunCache(tmp_path / "cache").read_runs(READER, files)
    assert cache.code_fingerprint().startswith(f"{__import__('dpodoctor').__version__}-{cache.CACHE_FORMAT}-")
    monkeypatch.setattr(cache, "_FINGERPRINT", "9.9.9-99-deadbeef")
    store = RunCache(tmp_path / "cache")
    store.read_runs(READER, files)
    assert store.misses == 1


def test_corrupt_or_pickled_entries_are_misses(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    files = _tb_files(run)
    RunCache(tmp_path / "cache").read_runs(READER, files)
    entries = sorted((tmp_path / "cache" / "runs").rglob("*.bin"))
    assert entries
    good = entries[0].read_bytes()
    header_len = int.from_bytes(good[16:24], "little")
    header = good[24 : 24 + header_len]
    object_array = header.replace(b'"<i8"', b'"|O8"', 1)  # an array of Python objects: a pickle, never loaded
    too_long = re.sub(rb'\["(\d+\.step)","<i8",(\d+)', lambda m: b'["%s","<i8",%d' % (m[1], 10**9), header, count=1)
    damaged = [
        b"",  # empty
        b"not an entry at all",
        good[:100],  # cut in the header
        good[: len(good) // 2],  # cut in the arrays: an array would end past the file
        good[:24] + object_array + good[24 + header_len :],
        good[:24] + too_long + good[24 + header_len :],
        good[:24] + b"[" * len(header) + good[24 + header_len :],  # JSON nested too deep
    ]
    assert object_array != header and too_long != header
    for bad in damaged:
        for entry in entries:
            entry.write_bytes(bad)
        store = RunCache(tmp_path / "cache")
        (got,) = store.read_runs(READER, files)
        assert store.misses == 1, bad[:40]
        assert_same_result(got, READER.read_reference(files))
    # An old-style .npz holding a pickle at an entry's place is no entry either (and is never unpickled).
    for entry in entries:
        with entry.open("wb") as handle:
            np.savez(handle, __meta__=np.array([{"x": 1}], dtype=object))
    store = RunCache(tmp_path / "cache")
    store.read_runs(READER, files)
    assert store.misses == 1


def test_other_readers_through_the_cache_and_their_side_files(tmp_path: Path) -> None:
    """SwanLab reads files/config.yaml beside its record file: a changed config is a miss, found by the audit hook."""
    src = FIXTURES / "swanlab" / "offline-0.10.3"
    shutil.copytree(src, tmp_path / "sw")
    sources = [s for s in __import__("dpodoctor.discovery", fromlist=["discover"]).discover([tmp_path / "sw"])]
    source = next(s for s in sources if s.reader.name == "swanlab")
    fresh = read_runs(source.reader, source.files)
    RunCache(tmp_path / "cache").read_runs(source.reader, source.files)
    store = RunCache(tmp_path / "cache")
    cached = store.read_runs(source.reader, source.files)
    assert store.hits == 1
    for a, b in zip(cached, fresh, strict=True):
        assert_same_result(a, b)
    config = source.files[0].parent / "files" / "config.yaml"
    config.write_text(config.read_text().replace("0.1", "0.3", 1) + "\n")
    store = RunCache(tmp_path / "cache")
    changed = store.read_runs(source.reader, source.files)
    assert store.misses == 1
    for a, b in zip(changed, read_runs(source.reader, source.files), strict=True):
        assert_same_result(a, b)


def test_stdout_through_the_cache(tmp_path: Path) -> None:
    logs = sorted(p for p in FIXTURES.rglob("*.log") if p.is_file() and get_reader("stdout").sniff(p))
    assert logs
    for log in logs[:3]:
        target = tmp_path / log.parent.name / log.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(log, target)
        reader = get_reader("stdout")
        try:
            fresh = read_runs(reader, [target])
        except ReadError:
            continue
        RunCache(tmp_path / "cache").read_runs(reader, [target])
        store = RunCache(tmp_path / "cache")
        for a, b in zip(store.read_runs(reader, [target]), fresh, strict=True):
            assert_same_result(a, b)
        assert store.hits == 1


def test_cli_no_cache_writes_nothing_and_cache_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPODOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    run = _copy_run(tmp_path)
    runner = CliRunner()
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["check", str(run), "--no-cache", "--format", "json", "-o", str(out), "--no-config"])
    assert result.exit_code in (0, 1), result.output
    assert not (tmp_path / "cache").exists()
    first = json.loads(out.read_text())
    result = runner.invoke(app, ["check", str(run), "--format", "json", "-o", str(out), "--no-config"])
    assert result.exit_code in (0, 1), result.output
    assert list((tmp_path / "cache" / "runs").rglob("*.bin"))
    assert list((tmp_path / "cache" / "diag").rglob("*.json"))
    again = runner.invoke(app, ["check", str(run), "--format", "json", "-o", str(out), "--no-config"])
    assert again.exit_code == result.exit_code
    assert json.loads(out.read_text()) == first


def test_cached_check_report_equals_fresh(tmp_path: Path) -> None:
    paths = [FIXTURES / "trl"]
    fresh = api.check(paths, use_config=False)
    for _ in range(2):  # fills the cache, then reads runs and diagnoses from it
        cached = api.check(paths, use_config=False, cache=tmp_path / "cache")
        assert cached.to_dict() == fresh.to_dict()
        assert [r.health for r in cached.runs] == [r.health for r in fresh.runs]
        assert [r.skipped for r in cached.runs] == [r.skipped for r in fresh.runs]
        assert [r.checked for r in cached.runs] == [r.checked for r in fresh.runs]
        for a, b in zip(cached.runs, fresh.runs, strict=True):
            pd.testing.assert_frame_equal(a.run.frame, b.run.frame)
    other = api.check(paths, use_config=False, cache=tmp_path / "cache", select=["DPO1"])
    assert other.to_dict() == api.check(paths, use_config=False, select=["DPO1"]).to_dict()


# ---------------------------------------------------------------------------------------------- parallel


def test_parallel_loading_gives_the_same_report_as_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "PARALLEL_MIN_BYTES", 0)  # use workers even for the small fixtures
    paths = [FIXTURES / "trl", FIXTURES / "swanlab" / "offline-0.10.3"]
    serial = api.check(paths, use_config=False, jobs=1)
    parallel = api.check(paths, use_config=False, jobs=2)
    assert parallel.to_dict() == serial.to_dict()
    assert parallel.problems == serial.problems and parallel.ignored == serial.ignored
    for a, b in zip(parallel.runs, serial.runs, strict=True):
        assert (a.run.name, a.run.notes, a.run.config, a.health) == (b.run.name, b.run.notes, b.run.config, b.health)
        pd.testing.assert_frame_equal(a.run.frame, b.run.frame)
    loaded = api.load_all(paths, jobs=2)
    assert [r.name for r in loaded.runs] == [r.run.name for r in serial.runs]


def test_parallel_loading_keeps_errors_with_their_reason_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "PARALLEL_MIN_BYTES", 0)
    shutil.copytree(FIXTURES / "trl" / "healthy", tmp_path / "good")
    bad = tmp_path / "bad" / "events.out.tfevents.1.x"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00" * 64)
    empty = tmp_path / "empty" / "train.log"
    empty.parent.mkdir()
    empty.write_text("nothing here\n")
    serial = api.load_all([tmp_path], jobs=1)
    parallel = api.load_all([tmp_path], jobs=2)
    assert [(type(e), e.reason, e.path) for e in parallel.problems] == [
        (type(e), e.reason, e.path) for e in serial.problems
    ]
    assert parallel.ignored == serial.ignored
    assert [r.name for r in parallel.runs] == [r.name for r in serial.runs]


def test_progress_only_for_a_terminal_outside_ci() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    assert sweep.progress_wanted(Tty(), {})
    assert not sweep.progress_wanted(Tty(), {"CI": "true"})
    assert not sweep.progress_wanted(Tty(), {"TERM": "dumb"})
    assert not sweep.progress_wanted(object(), {})


def test_cli_asks_for_no_progress_with_json(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = api.check

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "check", spy)
    monkeypatch.setattr(sweep, "progress_wanted", lambda *a, **k: True)
    monkeypatch.setattr("dpodoctor.cli.progress_wanted", lambda *a, **k: True)
    CliRunner().invoke(app, ["check", str(FIXTURES / "trl" / "healthy"), "--format", "json", "--no-cache"])
    assert seen["progress"] is False and seen["cache"] is False
    CliRunner().invoke(app, ["check", str(FIXTURES / "trl" / "healthy"), "--no-cache", "-j", "3"])
    assert seen["progress"] is True and seen["jobs"] == 3


# ---------------------------------------------------------------------------------------------- rules speed-ups


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 300), st.integers(0, 2**32 - 1), st.booleans())
def test_theil_sen_slope_is_scipys(n: int, seed: int, ties: bool) -> None:
    from scipy import stats as sp

    rng = np.random.default_rng(seed)
    x = np.sort(rng.integers(0, n // 2 if ties else 10 * n, n)).astype(float)
    y = rng.normal(size=n)
    if len(np.unique(x)) < 2:
        return
    assert theil_sen_slope(x, y) == float(sp.theilslopes(y, x).slope)


def test_theil_sen_slope_thins_long_series_to_a_bounded_size() -> None:
    x = np.arange(50_000, dtype=float)
    y = 0.001 * x + np.random.default_rng(0).normal(size=len(x))
    assert theil_sen_slope(x, y) == pytest.approx(0.001, rel=0.01)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["train", "eval"]), st.sampled_from(["loss", "margins", "b"]), st.integers(0, 20)),
        max_size=60,
    )
)
def test_indexed_series_equal_filtered_series(rows: list[tuple[str, str, int]]) -> None:
    values = [float(i) for i in range(len(rows))]
    frame = make_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], values)
    run = Run(name="r", path=Path("r"), source="t", frame=frame)
    shuffled = Run(name="r", path=Path("r"), source="t", frame=frame.iloc[::-1].reset_index(drop=True))
    assert shuffled._groups() is None or len(frame) <= 1
    for split in ("train", "eval"):
        for metric in ("loss", "margins", "b", "nope"):
            assert run.has(metric, split) == shuffled.has(metric, split)  # type: ignore[arg-type]
            pd.testing.assert_series_equal(run.series(metric, split), shuffled.series(metric, split))  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(-3, 30), st.floats()), max_size=80))
def test_frame_from_codes_equals_make_frame(rows: list[tuple[int, int, int, float]]) -> None:
    splits, metrics = ["train", "eval", "zz", "a"], ["loss", "m", "b", "a", "x"]
    codes = np.array(rows, dtype=object).reshape(-1, 4) if rows else np.zeros((0, 4), dtype=object)
    s, m = codes[:, 0].astype(int), codes[:, 1].astype(int)
    t, v = codes[:, 2].astype(np.int64), codes[:, 3].astype(float)
    w = np.arange(len(rows), dtype=float)
    expected = make_frame([splits[i] for i in s], [metrics[i] for i in m], t, v, w)
    got = frame_from_codes(s, splits, m, metrics, t, v, w)
    pd.testing.assert_frame_equal(got, expected)
