"""Reader for TensorBoard event files (``events.out.tfevents.*``) as transformers' TensorBoardCallback writes.

Why decode the records ourselves: TensorFlow is far too heavy a dependency for reading a log, tbparse pulls in
more still, and TensorBoard's EventAccumulator samples (drops) points and hides truncation. The file format is
simple (TFRecord framing around ``Event`` protobufs), and the ``tensorboard`` package ships the protobuf
classes, so a small loop over the bytes with :mod:`struct` gives every point, in order, and tells us exactly
where a crashed run's file was cut.

Record framing (little endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

from dpodoctor.errors import ReadError
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, register
from dpodoctor.readers.overlap import repeated_steps_notes
from dpodoctor.readers.tbfast import FileDecode, decode_file, merge

__all__ = [
    "EventFileTail",
    "RecordScan",
    "TensorBoardReader",
    "crc32c",
    "masked_crc32c",
    "next_header",
    "scalar_value",
    "scan_records",
]

_HEADER: Final = struct.Struct("<QI")  # length, masked CRC of the 8 length bytes
_HEADER_SIZE: Final = _HEADER.size  # 12
_FOOTER_SIZE: Final = 4  # masked CRC of the data
_CRC_MASK_DELTA: Final = 0xA282EAD8

# The tag transformers (and torch's / tensorboardX's add_text) gives the TrainingArguments JSON.
ARGS_TAG: Final = "args/text_summary"
SCALARS_PLUGIN: Final = "scalars"


def _make_crc32c_table() -> tuple[int, ...]:
    """The 256-entry table of the reflected Castagnoli polynomial (0x82F63B78), built once at import."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE: Final = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``.

    Why our own: TFRecord uses CRC-32C, which :mod:`zlib` does not offer, and importing TensorBoard's stub for
    its copy pulls in the whole ``tensorflow_stub`` package (~0.1 s). Pure Python is slow per byte, which is
    why the reader only checks the 8-byte length headers with it.
    """
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores (rotated and offset so a CRC of CRC-bearing data is not degenerate)."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


@dataclass
class RecordScan:
    """The complete records of one file, and where (if anywhere) the framing stopped making sense.

    ``stop_at`` is the byte offset of the first record that could not be read; ``stop_reason`` says why
    (``"incomplete record"`` for a file cut short, ``"bad record header"`` for a corrupt length CRC with no valid
    header anywhere after it). ``skipped`` lists the corrupt stretches the scan resynchronised past: (offset of the
    bad header, bytes skipped to the next valid one). ``offsets`` holds the byte offset of each record.
    """

    records: list[bytes] = field(default_factory=list)
    size: int = 0
    stop_at: int | None = None
    stop_reason: str | None = None
    skipped: list[tuple[int, int]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def scan_records(data: bytes, path: Path) -> RecordScan:
    """Split the bytes of an event file into its record payloads.

    Why only the header CRC is verified: it is 8 bytes per record, so the pure-Python CRC costs nothing, and
    it is what tells an event file from any other file and catches a misaligned or corrupt length (which would
    otherwise make us read garbage as records). A corrupt payload behind a good header fails protobuf parsing,
    which the caller reports. Raises :class:`ReadError` only when the very first complete header is wrong:
    then this is not an event file at all, whatever its name says.
    """
    scan = RecordScan(size=len(data))
    offset = 0
    end = len(data)
    unpack_header = _HEADER.unpack_from
    while offset < end:
        if end - offset < _HEADER_SIZE:
            scan.stop_at, scan.stop_reason = offset, "incomplete record"
            break
        length, length_crc = unpack_header(data, offset)
        if masked_crc32c(data[offset : offset + 8]) != length_crc:
            if offset == 0:
                raise ReadError("not a TensorBoard event file (bad record header at byte 0)", path)
            # Garbage in the middle (a torn write, a bad sector): the records after it are still whole.
            resume = next_header(data, offset + 1)
            if resume is None:
                scan.stop_at, scan.stop_reason = offset, "bad record header"
                break
            scan.skipped.append((offset, resume - offset))
            offset = resume
            continue
        start = offset + _HEADER_SIZE
        stop = start + length
        if stop + _FOOTER_SIZE > end:
            scan.stop_at, scan.stop_reason = offset, "incomplete record"
            break
        scan.records.append(data[start:stop])
        scan.offsets.append(offset)
        offset = stop + _FOOTER_SIZE
    return scan


_CRC32C_NP: Final = np.array(_CRC32C_TABLE, dtype=np.uint32)
_RESYNC_WINDOW: Final = 1 << 20


def next_header(data: bytes, start: int) -> int | None:
    """The first offset at or after ``start`` where 12 bytes form a valid record header (8 length bytes, then the
    masked CRC-32C of them), or None.

    Why a header is a safe place to resume: a random 12-byte window passes the CRC with odds of 1 in 2**32, so a
    match is a real record boundary. Why numpy: garbage can be megabytes long, and the pure-Python CRC would take
    seconds per megabyte; here every candidate offset of a 1 MB window is checked at once.
    """
    last = len(data) - _HEADER_SIZE  # the last offset where a whole header fits
    pos = start
    while pos <= last:
        stop = min(last + 1, pos + _RESYNC_WINDOW)
        u8 = np.frombuffer(data, dtype=np.uint8, count=stop - pos + _HEADER_SIZE - 1, offset=pos)
        window = np.lib.stride_tricks.sliding_window_view(u8, _HEADER_SIZE)
        crc = np.full(len(window), 0xFFFFFFFF, dtype=np.uint32)
        for k in range(8):
            crc = _CRC32C_NP[(crc ^ window[:, k]) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
        crc ^= np.uint32(0xFFFFFFFF)
        masked = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_CRC_MASK_DELTA)
        stored = window[:, 8:12].astype(np.uint32) << np.array([0, 8, 16, 24], dtype=np.uint32)
        hits = np.flatnonzero(masked == np.bitwise_or.reduce(stored, axis=1))
        if len(hits):
            return pos + int(hits[0])
        pos = stop
    return None


# dtype -> numpy dtype of its packed ``tensor_content`` bytes (always little endian in event files).
_CONTENT_DTYPES: Final[dict[int, str]] = {
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

# dtype -> the repeated field that holds its values when they are not packed.
_VAL_FIELDS: Final[dict[int, str]] = {
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


def _bits_to_float(bits: int, dtype: int) -> float:
    """float16 / bfloat16 values arrive as their bit patterns; turn them into a float."""
    if dtype == types_pb2.DT_HALF:
        return float(np.array([bits & 0xFFFF], dtype=np.uint16).view(np.float16)[0])
    return float((np.array([bits & 0xFFFF], dtype=np.uint32) << 16).view(np.float32)[0])


def _tensor_scalar(tensor: tensor_pb2.TensorProto) -> float | None:
    """The number in a scalar (rank 0, or a single element) numeric tensor; None for anything else."""
    dims = tensor.tensor_shape.dim
    if dims:
        count = 1
        for dim in dims:
            count *= dim.size
        if count != 1:
            return None
    dtype = tensor.dtype
    if tensor.tensor_content:
        np_dtype = _CONTENT_DTYPES.get(dtype)
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
    field_name = _VAL_FIELDS.get(dtype)
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
        return _tensor_scalar(value.tensor)
    return None


def _finite(number: float) -> bool:
    """math.isfinite, false for a JSON integer beyond float range (for which math.isfinite raises OverflowError)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


_EMPTY: Final = "no scalar summaries found (empty file: 0 bytes, the writer never flushed a record)"


def _places(offsets: list[int], sizes: list[int] | None = None, shown: int = 5) -> str:
    """``at byte 120, 4400 and 3 more`` (with ``(n bytes)`` after each when sizes are given): where damage is."""
    parts = [f"{o}" + (f" ({sizes[i]} bytes)" if sizes else "") for i, o in enumerate(offsets[:shown])]
    more = f" and {len(offsets) - shown} more" if len(offsets) > shown else ""
    return "at byte " + ", ".join(parts) + more


def _natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Digits compare as numbers: ``...0.9`` sorts before ``...0.10``, timestamps of any width order right."""
    # isdecimal, not isdigit: "²" is a digit that int() refuses (a file name is whatever the disk holds).
    return tuple(
        (0, int(chunk), "") if chunk.isdecimal() else (1, 0, chunk) for chunk in re.split(r"(\d+)", name) if chunk
    )


def _order_key(path: Path) -> tuple[tuple[tuple[int, int, str], ...], str]:
    """Files of a resumed run are read in name order: the name starts with the creation timestamp."""
    return _natural_key(path.name), str(path)


@register
class TensorBoardReader:
    """Reads the event files of one run folder into one frame (a resumed run writes several files)."""

    name: ClassVar[str] = "tensorboard"
    priority: ClassVar[int] = 100
    # Every event file in a run folder belongs to the run (a resumed run writes a new file).
    multi_file: ClassVar[bool] = True

    def sniff(self, path: Path) -> bool:
        """Only the name: every TensorBoard writer names its files ``events.out.tfevents.*``."""
        return "tfevents" in path.name and path.is_file()

    def run_root(self, path: Path) -> Path:
        """``output_dir`` for the HF layout ``output_dir/runs/<date_host>/events...``, else the file's folder.

        Why go up past ``runs/``: a resumed transformers run logs to a new ``runs/<date_host>`` folder, and
        the output_dir is also where its train.log and trainer_state.json live, so it names the run.
        """
        folder = path.parent
        if folder.parent.name == "runs":
            return folder.parent.parent
        return folder

    def _label(self, path: Path) -> str:
        """The file's name relative to its run root, for notes and ``beta_source``."""
        try:
            return path.relative_to(self.run_root(path)).as_posix()
        except ValueError:  # pragma: no cover - run_root is always an ancestor
            return path.name

    def read(self, paths: list[Path], decoded: Callable[[Path], FileDecode] | None = None) -> ReadResult:
        """Read all event files of one run, oldest name first, into one frame.

        A (metric, step) logged again by a later file keeps the later value: the last point in arrival order is
        kept, and arrival order is file order. The records are decoded by :mod:`.tbfast` (numpy for the usual
        scalar record, protobuf for the rest); the result is exactly :meth:`read_reference`'s. ``decoded`` maps a
        file to its :class:`~.tbfast.FileDecode` (the cache passes one that reuses earlier reads).
        """
        if not paths:
            raise ReadError("no event files given")
        files = sorted(paths, key=_order_key)
        decode = decoded or decode_file
        decodes = [decode(path) for path in files]
        if any(d.bad_records or d.stop_reason == "bad record header" for d in decodes):
            # A damaged file: the reference scan resynchronises past corrupt headers and names the byte offset of
            # every bad record. Damage is rare, so its speed does not matter.
            return self.read_reference(files)
        if all(d.size == 0 for d in decodes):
            raise ReadError(_EMPTY, files[0] if len(files) == 1 else files[0].parent)
        return merge(self, files, decodes)

    def read_reference(self, paths: list[Path]) -> ReadResult:
        """:meth:`read` with protobuf parsing every record, point by point: the definition the fast path is tested
        against (``tests/test_speed_paths.py``)."""
        if not paths:
            raise ReadError("no event files given")
        files = sorted(paths, key=_order_key)
        builder = FrameBuilder()
        notes: list[str] = []
        config: dict[str, Any] = {}
        beta: float | None = None
        beta_source: str | None = None
        cut = False
        # tag -> plugin name, remembered across files: TF1-style writers send a tag's metadata only once.
        plugins: dict[str, str] = {}

        per_file: list[tuple[str, list[str], list[int]]] = []
        for path in files:
            label = self._label(path)
            start = len(builder)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
            if not data:
                notes.append(f"{label}: empty file (0 bytes), no records")
                continue
            scan = scan_records(data, path)
            bad_at: list[int] = []
            bad_records, parsed, found = self._decode(scan.records, builder, plugins, label, notes, bad_at)
            if parsed is not None:
                config = parsed
            if found is not None:
                beta, beta_source = found, f"{label}: args text summary"
            if bad_records:
                where = _places([scan.offsets[i] for i in bad_at])
                notes.append(
                    f"{label}: skipped {bad_records} record(s) whose data is not a valid Event protobuf ({where})"
                )
            if scan.skipped:
                where = _places([offset for offset, _ in scan.skipped], [n for _, n in scan.skipped])
                notes.append(
                    f"{label}: corrupt data: skipped {sum(n for _, n in scan.skipped)} byte(s) to the next valid "
                    f"record header ({where}); the records after it were read"
                )
            if scan.stop_at is not None:
                cut = True
                notes.append(
                    f"{label}: truncated at byte {scan.size} ({scan.stop_reason} at byte {scan.stop_at}); "
                    f"read the {len(scan.records)} records before it"
                )
            per_file.append((label, *builder.series_since(start)))
        notes.extend(repeated_steps_notes(per_file))

        if len(builder) == 0:
            where = files[0] if len(files) == 1 else files[0].parent
            if all(note.endswith(": empty file (0 bytes), no records") for note in notes) and notes:
                raise ReadError(_EMPTY, where)
            raise ReadError("no scalar summaries found", where)

        if "train_runtime" in builder.summary:
            # Written only once training is over, so the run finished even if the file was cut after it.
            ended = Ended.FINISHED
        elif cut:
            ended = Ended.TRUNCATED
        else:
            ended = Ended.UNKNOWN
        return ReadResult(
            frame=builder.build(),
            beta=beta,
            beta_source=beta_source,
            ended=ended,
            steps_derived=False,
            summary=dict(builder.summary),
            config=config,
            notes=notes,
        )

    def _decode(
        self,
        records: list[bytes],
        builder: FrameBuilder,
        plugins: dict[str, str],
        label: str,
        notes: list[str],
        bad_at: list[int] | None = None,
    ) -> tuple[int, dict[str, Any] | None, float | None]:
        """Add the scalars of some records to ``builder``: (records that are not Events, the last args config, the
        last β found in one). ``bad_at`` collects the indices of the records that are not Events.

        Why a method of its own: the whole-file read and the live tail (:class:`EventFileTail`) decode records
        the same way, so a live view and a later ``check`` see the same points.
        """
        bad_records = 0
        config: dict[str, Any] | None = None
        beta: float | None = None
        for index, record in enumerate(records):
            try:
                event = event_pb2.Event.FromString(record)
            except DecodeError:
                bad_records += 1
                if bad_at is not None:
                    bad_at.append(index)
                continue
            if not event.HasField("summary"):
                continue
            step = event.step
            wall_time = event.wall_time
            for value in event.summary.value:
                tag = value.tag
                if value.HasField("metadata"):
                    plugin = value.metadata.plugin_data.plugin_name
                    if plugin:
                        plugins[tag] = plugin
                if tag == ARGS_TAG:
                    parsed = self._parse_args(value, label, notes)
                    if parsed is not None:
                        config = parsed
                        found = self._beta_from(parsed, label, notes)
                        if found is not None:
                            beta = found
                    continue
                number = scalar_value(value, plugins.get(tag, ""))
                if number is not None:
                    builder.add(tag, step, number, wall_time)
        return bad_records, config, beta

    @staticmethod
    def _parse_args(value: summary_pb2.Summary.Value, label: str, notes: list[str]) -> dict[str, Any] | None:
        """The DPOConfig JSON of the ``args`` text summary; bad text is a note, not an error.

        Why json.loads and nothing smarter: the log is untrusted input, and transformers writes strict JSON.
        """
        strings = value.tensor.string_val
        text = strings[0].decode("utf-8", errors="replace") if strings else None
        return TensorBoardReader._parse_args_text(text, label, notes)

    @staticmethod
    def _parse_args_text(text: str | None, label: str, notes: list[str]) -> dict[str, Any] | None:
        """:meth:`_parse_args` once the text is out of the summary (None: the summary holds no text)."""
        if text is None:
            notes.append(f"{label}: args text summary holds no text")
            return None
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError) as exc:
            notes.append(f"{label}: args text summary is not valid JSON ({exc}); config not read")
            return None
        if not isinstance(parsed, dict):
            notes.append(f"{label}: args text summary is JSON but not an object; config not read")
            return None
        return parsed

    @staticmethod
    def _beta_from(config: dict[str, Any], label: str, notes: list[str]) -> float | None:
        """β when the config holds a finite number for it (bool is an int in Python, so it is excluded)."""
        if "beta" not in config:
            return None
        raw = config["beta"]
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and _finite(raw):
            return float(raw)
        notes.append(f"{label}: args text summary has a non-numeric beta ({raw!r:.80}); ignored")
        return None


def read_args_config(path: Path, max_bytes: int = 4 * 1024 * 1024) -> dict[str, Any] | None:
    """The config JSON of a file's ``args`` text summary, reading at most ``max_bytes`` from the start.

    Why a separate, bounded read: transformers writes the args summary right after the file header, so when
    another source of the same run (its stdout log) lacks β, the first records of the event file are enough.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes)
    except OSError:
        return None
    try:
        scan = scan_records(data, path)
    except ReadError:
        return None
    for record in scan.records:
        try:
            event = event_pb2.Event.FromString(record)
        except DecodeError:
            continue
        for value in event.summary.value:
            if value.tag == ARGS_TAG:
                return TensorBoardReader._parse_args(value, path.name, [])
    return None


class EventFileTail:
    """Follows one event file that a running trainer is still writing: each :meth:`poll` decodes only the records
    appended since the last one.

    Why offsets and not a re-read: a live view polls every few seconds, and re-reading a long run's file each time
    would cost more as the run grows. TFRecord framing makes the boundary exact: ``offset`` is the end of the last
    complete record, so a record the writer has only half flushed is simply read again, whole, next time. A cut
    record is therefore no sign of a crash here (the writer is still busy), so nothing marks the run truncated.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.builder = FrameBuilder()
        self.plugins: dict[str, str] = {}
        self.config: dict[str, Any] = {}
        self.beta: float | None = None
        self.notes: list[str] = []
        self._reader = TensorBoardReader()
        self._label = self._reader._label(self.path)
        self._bad_records = 0
        self._stuck_at: int | None = None  # a corrupt header the writer will never rewrite

    def poll(self) -> int:
        """Decode the complete records appended since the last poll; returns how many there were.

        A file that became shorter than what was read (rewritten, or replaced by a new run) is read again from the
        start. Raises :class:`ReadError` when the file cannot be read or is not an event file.
        """
        try:
            size = self.path.stat().st_size
            if size < self.offset:
                self._reset()  # the file was replaced: start over
            if size == self.offset:
                return 0
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError as exc:
            raise ReadError(f"cannot read file ({exc.strerror or exc})", self.path) from exc
        try:
            scan = scan_records(data, self.path)
        except ReadError:
            if self.offset == 0:
                raise
            # A corrupt length header right where the last poll stopped: nothing after it can be framed.
            if self._stuck_at != self.offset:
                self._stuck_at = self.offset
                self.notes.append(f"{self._label}: bad record header at byte {self.offset}; later records not read")
            return 0
        bad, parsed, found = self._reader._decode(scan.records, self.builder, self.plugins, self._label, self.notes)
        if parsed is not None:
            self.config = parsed
        if found is not None:
            self.beta = found
        if bad:
            self._bad_records += bad
        self.offset += scan.stop_at if scan.stop_at is not None else len(data)
        return len(scan.records)

    def result(self) -> ReadResult:
        """What the records read so far say, as :meth:`TensorBoardReader.read` would put it for this one file."""
        notes = list(self.notes)
        if self._bad_records:
            notes.append(
                f"{self._label}: skipped {self._bad_records} record(s) whose data is not a valid Event protobuf"
            )
        if len(self.builder) == 0:
            raise ReadError("no scalar summaries found (yet)", self.path)
        return ReadResult(
            frame=self.builder.build(),
            beta=self.beta,
            beta_source=f"{self._label}: args text summary" if self.beta is not None else None,
            ended=Ended.FINISHED if "train_runtime" in self.builder.summary else Ended.UNKNOWN,
            summary=dict(self.builder.summary),
            config=self.config,
            notes=notes,
        )
