"""Small, exactly known log files in every format, for tests that cut or damage them at chosen bytes.

Why build them here instead of using only the fixtures: cutting a file at *every* offset needs a file of a few hundred
bytes, and checking what survives a cut needs to know where each record starts and ends. The framing is written by
hand (as TensorBoard and SwanLab write it), so the tests depend on the formats, not on the readers under test.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

from tensorboard.compat.proto import event_pb2, summary_pb2

from dpodoctor.readers.tensorboard import masked_crc32c


def tfrecord(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


def scalar_event(tag: str, step: int, value: float, wall: float = 1_700_000_000.0) -> bytes:
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(wall_time=wall + step, step=step, summary=summary).SerializeToString()


@dataclass
class EventFile:
    """An event file's bytes, where each record ends, and the (tag, step, value) each record holds (None: none)."""

    data: bytes
    ends: list[int]
    points: list[tuple[str, int, float] | None]

    def points_before(self, cut: int) -> list[tuple[str, int, float]]:
        """The points of the records that lie wholly before byte ``cut``."""
        return [p for end, p in zip(self.ends, self.points, strict=True) if end <= cut and p is not None]


def event_file(steps: int = 8, runtime: bool = True) -> EventFile:
    """A small TensorBoard event file as transformers' callback writes it: a file_version record, then loss and
    margins per step (values exact in float32), then the end-of-training ``train_runtime``."""
    records: list[tuple[bytes, tuple[str, int, float] | None]] = [
        (event_pb2.Event(wall_time=1_700_000_000.0, file_version="brain.Event:2").SerializeToString(), None)
    ]
    for step in range(1, steps + 1):
        for tag, value in (("train/loss", 0.5 + step / 64), ("train/rewards/margins", step / 8)):
            records.append((scalar_event(tag, step, value), (tag, step, value)))
    if runtime:
        records.append((scalar_event("train/train_runtime", steps, 12.5), ("train/train_runtime", steps, 12.5)))
    data = bytearray()
    ends = []
    for payload, _ in records:
        data += tfrecord(payload)
        ends.append(len(data))
    return EventFile(bytes(data), ends, [p for _, p in records])


def record_offsets(data: bytes) -> list[int]:
    """Start offsets of the records of a well-formed event file, plus its end."""
    offsets = [0]
    while offsets[-1] < len(data):
        (length,) = struct.unpack_from("<Q", data, offsets[-1])
        offsets.append(offsets[-1] + 12 + length + 4)
    return offsets


# ---------------------------------------------------------------- SwanLab (layout A: swanlab 0.8-0.10)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, value: int | bytes) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(value, int)
        return key + _varint(value)
    assert isinstance(value, bytes)
    return key + _varint(len(value)) + value


def swanlab_scalar(step: int, key: str, value: float) -> bytes:
    """A ``Record`` carrying one ``ScalarRecord`` (field numbers in dpodoctor.readers.swanlab.wire)."""
    body = _field(1, 2, key.encode()) + _field(2, 0, step) + _field(5, 2, b"\x09" + struct.pack("<d", value))
    return _field(1, 0, step) + _field(13, 2, body)


def swanlab_finish(state: int = 1) -> bytes:
    return _field(11, 2, _field(1, 0, state))


BLOCK = 32768


@dataclass
class SwanLabFile:
    """A record file's bytes, where each record's last chunk ends, and the (key, step, value) it holds."""

    data: bytes
    ends: list[int]
    points: list[tuple[str, int, float] | None]


def swanlab_file(payloads: list[tuple[bytes, tuple[str, int, float] | None]]) -> SwanLabFile:
    """swanlab's ``DataStoreWriter``: the 7-byte file header, then LevelDB-log chunks in 32 KiB blocks (zlib CRC of
    type byte + payload), a record too big for its block split FIRST / MIDDLE... / LAST."""
    out = bytearray(struct.pack("<4sHB", b":SWL", 0xE1D6, 2))
    ends = []

    def chunk(data: bytes, kind: int) -> None:
        out.extend(struct.pack("<IHB", zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF, len(data), kind))
        out.extend(data)

    for data, _ in payloads:
        first = True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < 7:
                out.extend(b"\x00" * left)
                left = BLOCK
            room = left - 7
            if len(data) <= room:
                chunk(data, 1 if first else 4)
                break
            chunk(data[:room], 2 if first else 3)
            data, first = data[room:], False
        ends.append(len(out))
    return SwanLabFile(bytes(out), ends, [p for _, p in payloads])


def swanlab_run(steps: int, finish: bool = True, pad: int = 0) -> SwanLabFile:
    """A run of ``steps`` loss points; ``pad`` adds a long string field to each record, so the file spans blocks."""
    payloads: list[tuple[bytes, tuple[str, int, float] | None]] = []
    for step in range(1, steps + 1):
        value = 0.7 - step / 100
        record = swanlab_scalar(step, "train/loss", value) + (_field(99, 2, b"p" * pad) if pad else b"")
        payloads.append((record, ("train/loss", step, value)))
    if finish:
        payloads.append((swanlab_finish(), None))
    return swanlab_file(payloads)


# ---------------------------------------------------------------- text logs


def stdout_log(steps: int = 6) -> bytes:
    """A transformers console capture: tqdm redraws (``\\r``), a metric dict per logging step, the summary dict."""
    lines = []
    for step in range(1, steps + 1):
        bar = f"\r {100 * step // steps:3d}%|#####     | {step}/{steps} [00:01<00:01,  1.00it/s]"
        lines.append(bar)
        lines.append(
            f"\n{{'loss': {0.69 - step / 100:.4f}, 'rewards/margins': {step / 10:.2f}, 'epoch': {step / steps}}}"
        )
    lines.append("\n{'train_runtime': 12.5, 'train_loss': 0.6, 'epoch': 1.0}\n")
    return "".join(lines).encode()


def jsonl_log(steps: int = 8) -> bytes:
    """A JSON-lines metric log (a custom callback's), one object per logging step."""
    return b"".join(
        json.dumps({"step": s, "loss": 0.69 - s / 100, "rewards/margins": s / 10}).encode() + b"\n"
        for s in range(1, steps + 1)
    )
