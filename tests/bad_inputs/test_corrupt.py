"""Corrupt files: bad CRCs and lengths, garbage in the middle, and files of 0 bytes, all NUL or random binary.

Each is reported with the file and the byte offset, and records after the damage are recovered where the format
allows it: TensorBoard resynchronises on the next valid record header, SwanLab's LevelDB framing on the next 32 KiB
block. Why recover instead of stopping: a bad sector or a torn write in the middle of a long run's log would
otherwise hide the rest of the run, including how it ended.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from dpodoctor.errors import DpoDoctorError
from dpodoctor.model import Ended
from dpodoctor.readers import get_reader
from dpodoctor.readers.tensorboard import TensorBoardReader, scan_records
from tests.bad_inputs.builders import record_offsets, swanlab_run, tfrecord
from tests.bad_inputs.targets import TARGETS, replay
from tests.conftest import TRL

TB = TensorBoardReader()
(HEALTHY_EVENTS,) = (TRL / "healthy" / "runs").glob("*/events.out.tfevents.*")
RUN_DIR = "swanlog/run-20260101_000000-abcdefgh"


def _tb_write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / HEALTHY_EVENTS.name
    path.write_bytes(data)
    return path


def _losses(result: object) -> int:
    f = result.frame  # type: ignore[attr-defined]
    return int(((f["split"] == "train") & (f["metric"] == "loss")).sum())


# ---------------------------------------------------------------- TensorBoard


def test_tensorboard_bad_length_crc_resyncs_on_the_next_header(tmp_path: Path) -> None:
    data = bytearray(HEALTHY_EVENTS.read_bytes())
    offsets = record_offsets(bytes(data))
    full = _losses(TB.read([HEALTHY_EVENTS]))
    for k in (100, 700, 1200):
        data[offsets[k] + 9] ^= 0x40  # the stored CRC of the length: no longer matches
    path = _tb_write(tmp_path, bytes(data))
    for read in (TB.read, TB.read_reference):
        result = read([path])
        assert result.ended is Ended.FINISHED  # everything after the damage, up to train_runtime, was read
        assert full - 3 <= _losses(result) <= full
        (note,) = [n for n in result.notes if "corrupt data" in n]
        for k in (100, 700, 1200):
            assert f"{offsets[k]} ({offsets[k + 1] - offsets[k]} bytes)" in note, note
        assert path.name in note


def test_tensorboard_bad_length_is_skipped(tmp_path: Path) -> None:
    """A length whose bits flipped: its CRC fails, and nothing after it is read as garbage records."""
    data = bytearray(HEALTHY_EVENTS.read_bytes())
    offsets = record_offsets(bytes(data))
    data[offsets[500] + 4] ^= 0x01  # length += 2**32: would swallow the rest of the file if it were believed
    scan = scan_records(bytes(data), Path("x"))
    assert scan.skipped == [(offsets[500], offsets[501] - offsets[500])]
    assert len(scan.records) == len(offsets) - 2 and scan.stop_at is None


def test_tensorboard_garbage_in_the_middle(tmp_path: Path) -> None:
    data = HEALTHY_EVENTS.read_bytes()
    offsets = record_offsets(data)
    junk = np.random.default_rng(7).bytes(5000)
    at = offsets[321]
    path = _tb_write(tmp_path, data[:at] + junk + data[at:])
    result = TB.read([path])
    assert _losses(result) == _losses(TB.read([HEALTHY_EVENTS]))  # nothing lost: the junk was between records
    assert any(
        f"skipped 5000 byte(s) to the next valid record header (at byte {at} (5000 bytes))" in n for n in result.notes
    )
    assert result.ended is Ended.FINISHED


def test_tensorboard_bad_record_data_is_reported_with_its_offset(tmp_path: Path) -> None:
    """A record whose framing is fine but whose data is not an Event (a truncated varint) is skipped by offset."""
    data = HEALTHY_EVENTS.read_bytes()
    offsets = record_offsets(data)
    bad = tfrecord(b"\x10\xff\xff")
    path = _tb_write(tmp_path, data[: offsets[50]] + bad + data[offsets[50] :])
    result = TB.read([path])
    assert any(f"not a valid Event protobuf (at byte {offsets[50]})" in n for n in result.notes), result.notes


def test_tensorboard_garbage_to_the_end_stops_there(tmp_path: Path) -> None:
    data = HEALTHY_EVENTS.read_bytes()
    offsets = record_offsets(data)
    path = _tb_write(tmp_path, data[: offsets[400]] + b"\xab" * 3000)
    result = TB.read([path])
    assert result.ended is Ended.TRUNCATED
    assert any(f"bad record header at byte {offsets[400]}" in n for n in result.notes)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "0 bytes"),
        (b"\x00" * 4096, "bad record header at byte 0"),
        (np.random.default_rng(3).bytes(4096), "bad record header at byte 0"),
    ],
    ids=["empty", "all-nul", "random"],
)
def test_tensorboard_no_event_file_is_named_with_the_offset(tmp_path: Path, content: bytes, expected: str) -> None:
    path = _tb_write(tmp_path, content)
    with pytest.raises(DpoDoctorError) as info:
        TB.read([path])
    assert info.value.path == path and expected in info.value.reason


# ---------------------------------------------------------------- SwanLab


def _swanlab(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / RUN_DIR / "run-abcdefgh.swanlab"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _swanlab_steps(result: object) -> list[int]:
    f = result.frame  # type: ignore[attr-defined]
    return sorted(f[(f["split"] == "train") & (f["metric"] == "loss")]["step"].tolist())


@pytest.mark.parametrize("damage", ["crc", "type", "length", "garbage"])
def test_swanlab_corrupt_chunk_recovers_at_the_next_block(tmp_path: Path, damage: str) -> None:
    run = swanlab_run(steps=60, pad=2000)  # about 4 records per 32 KiB block
    data = bytearray(run.data)
    hit = next(i for i, end in enumerate(run.ends) if end > 40_000)  # a record in the second block
    start = run.ends[hit - 1]
    if damage == "crc":
        data[start + 20] ^= 0xFF  # payload byte: the chunk CRC fails
    elif damage == "type":
        data[start + 6] = 9
    elif damage == "length":
        struct.pack_into("<H", data, start + 4, 60_000)
    else:
        data[start : start + 300] = b"\x5a" * 300
    result = get_reader("swanlab").read([_swanlab(tmp_path, bytes(data))])
    steps = _swanlab_steps(result)
    block = start // 32768
    resume = (block + 1) * 32768
    begins = [7, *run.ends[:-1]]
    # Lost: every record with a byte in the skipped stretch [start, resume), also one crossing into the next block.
    lost = {p[1] for b, e, p in zip(begins, run.ends, run.points, strict=True) if p and b < resume and e > start}
    assert steps == sorted({p[1] for p in run.points if p} - lost)  # everything outside the damaged block
    assert result.ended is Ended.FINISHED  # the finish record after the damage was read
    note = next(n for n in result.notes if "corrupt data" in n)
    assert f"at byte {start}" in note and f"next 32 KiB block at byte {resume}" in note


def test_swanlab_real_file_with_a_corrupt_first_block(tmp_path: Path) -> None:
    (source,) = (TRL / "healthy" / "swanlog").glob("run-*/run-*.swanlab")
    data = bytearray(source.read_bytes())
    full = len(get_reader("swanlab").read([_swanlab(tmp_path / "a", bytes(data))]).frame)
    data[5000:5100] = b"\xff" * 100
    result = get_reader("swanlab").read([_swanlab(tmp_path / "b", bytes(data))])
    assert full // 2 < len(result.frame) < full and result.ended is Ended.FINISHED
    assert any("corrupt data at byte" in n and "32768" in n for n in result.notes)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "0 bytes"), (b"\x00" * 4096, "at byte 0"), (np.random.default_rng(5).bytes(4096), "at byte 0")],
    ids=["empty", "all-nul", "random"],
)
def test_swanlab_no_record_file_is_named_with_the_offset(tmp_path: Path, content: bytes, expected: str) -> None:
    path = _swanlab(tmp_path, content)
    with pytest.raises(DpoDoctorError) as info:
        get_reader("swanlab").read([path])
    assert expected in str(info.value) and str(path) in str(info.value)


# ---------------------------------------------------------------- every reader: empty, all NUL, random binary

_WHAT = {"empty": b"", "all-nul": b"\x00" * 8192, "random": np.random.default_rng(11).bytes(8192)}
# Readers whose own error names the offset (the others are side files: a logs/ slice, a config, an export).
_OFFSET_NAMED = {
    "tensorboard",
    "stdout",
    "trainer_state",
    "jsonl",
    "llamafactory",
    "csv",
    "swanlab_record",
    "swanlab_backup",
}


@pytest.mark.parametrize("what", sorted(_WHAT))
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_reader_reports_empty_nul_and_random_files(name: str, what: str) -> None:
    outcome = replay(name, _WHAT[what])
    if name in ("swanlab_config", "mlflow_meta"):  # a broken side file beside good metrics: read, and noted
        assert isinstance(outcome, list)
        assert any("meta.yaml" in n or "config" in n for r in outcome for n in r.notes) or name == "swanlab_config"
        return
    assert isinstance(outcome, DpoDoctorError), outcome
    assert outcome.path is not None
    if name in _OFFSET_NAMED:
        text = str(outcome)
        assert "0 bytes" in text or "at byte " in text, text


def test_garbage_lines_between_records_cost_only_those_lines(tmp_path: Path) -> None:
    log = (TRL / "healthy" / "train.log").read_bytes()
    lines = log.split(b"\n")
    noisy = b"\n".join(
        line + (b"\n\x00\xff garbage {'loss': \n" if i % 7 == 0 else b"") for i, line in enumerate(lines)
    )
    path = tmp_path / "train.log"
    path.write_bytes(noisy)
    original = tmp_path / "orig" / "train.log"
    os.makedirs(original.parent)
    original.write_bytes(log)
    reader = get_reader("stdout")
    assert len(reader.read([path]).frame) == len(reader.read([original]).frame)
