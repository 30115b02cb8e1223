"""Reader for the run folders Weights & Biases keeps on disk: ``wandb/run-*/`` and ``wandb/offline-run-*/``.

What a run folder holds (wandb 0.31, written by its ``wandb-core`` service; ``WANDB_MODE=offline`` or online):

* ``run-<id>.wandb``: every record of the run, in LevelDB-log framing with W&B's own 7-byte file header
  ``b":W&B" | uint16 LE magic 0xBEE1 | uint8 version 0``, 32 KiB blocks, and chunks
  ``uint32 LE crc | uint16 LE length | uint8 type | payload`` whose CRC is plain zlib CRC-32 seeded with the type
  byte (``wandb/sdk/internal/datastore.py``: the same framing as SwanLab's, so :func:`.swanlab.framing.scan_chunks`
  reads both).
* Each record is a protobuf ``wandb_internal.Record`` (``wandb/proto/wandb_internal.proto``), decoded here with the
  project's own wire decoder (:mod:`.swanlab.wire`), never with wandb's classes. The fields used::

      Record         1 num, 2 history, 3 summary, 5 config, 17 run, 18 exit
      HistoryRecord  1 item (repeated HistoryItem), 2 step (HistoryStep: 1 num int64)
      HistoryItem    1 key, 2 nested_key (repeated), 16 value_json; or a typed value:
                     4 boolean, 5 integer (sint64), 6 number (double), 7 text
      ConfigRecord / SummaryRecord   1 update (repeated {1 key, 2 nested_key, 16 value_json})
      RunRecord      1 run_id, 3 project, 8 display_name
      RunExitRecord  1 exit_code (int32), 2 runtime

* ``files/wandb-summary.json``, ``files/config.yaml`` and ``files/output.log`` (the captured console): used when
  the record file is missing or holds no history (a folder copied without it); the console is then read by the
  stdout reader.

transformers' ``WandbCallback`` logs ``train/<key>`` and ``eval/<key>`` with ``train/global_step`` in every row:
that is the trainer's step, used as the step (W&B's own ``_step`` only counts ``log`` calls). The end-of-training
totals (``train_runtime``, ``train_loss``, ...) go to the run summary.

Why a killed run is still read: wandb-core appends records as they come, so a killed run leaves a file that ends
anywhere; every complete record before the torn chunk is kept, and the missing exit record says the run ended
early.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any, ClassVar, Final, cast

from dpodoctor.errors import NoMetricsError, ReadError
from dpodoctor.metrics import is_summary_key
from dpodoctor.model import Ended, FrameBuilder
from dpodoctor.readers import ReadResult, get_reader, register
from dpodoctor.readers.hparams import beta_in
from dpodoctor.readers.swanlab.config import parse_config_yaml
from dpodoctor.readers.swanlab.framing import FrameScan, scan_chunks
from dpodoctor.readers.swanlab.wire import FIXED64, LEN, VARINT, WireError, iter_fields

__all__ = [
    "HEADER_IDENT",
    "WandbReader",
    "WandbRecords",
    "console_root",
    "decode_records",
    "has_wandb_header",
    "is_wandb_internal_log",
    "scan_wandb",
]

HEADER_IDENT: Final = b":W&B"
FILE_MAGIC: Final = 0xBEE1
FILE_VERSION: Final = 0
_FILE_HEADER: Final = struct.Struct("<4sHB")
_DOUBLE: Final = struct.Struct("<d")

# Record oneof field numbers (wandb_internal.proto).
REC_HISTORY: Final = 2
REC_SUMMARY: Final = 3
REC_CONFIG: Final = 5
REC_RUN: Final = 17
REC_EXIT: Final = 18

RECORD_SUFFIX: Final = ".wandb"
_RUN_DIR_RE: Final = re.compile(r"(?:offline-)?run-[0-9]{8}_[0-9]{6}-[A-Za-z0-9]{1,64}")
_RECORD_NAME_RE: Final = re.compile(r"run-[A-Za-z0-9]{1,64}\.wandb")
# Keys that repeat the step axis or are W&B's bookkeeping, not metrics.
STEP_KEY: Final = "train/global_step"
_SKIP_KEYS: Final = frozenset({STEP_KEY, "_step", "_runtime", "_timestamp", "global_step", "eval/global_step"})
_MAX_JSON: Final = 1 << 20
_MAX_SIDE_FILE: Final = 16 * 1024 * 1024


def has_wandb_header(head: bytes) -> bool:
    """True when ``head`` (the first 6+ bytes of a file) starts with W&B's ident and magic."""
    return len(head) >= 6 and head[:4] == HEADER_IDENT and struct.unpack_from("<H", head, 4)[0] == FILE_MAGIC


def scan_wandb(data: bytes, path: Path) -> FrameScan:
    """The complete records of a ``.wandb`` file. Raises :class:`ReadError` only for a missing or foreign header."""
    size = len(data)
    if size == 0:
        raise ReadError("0 bytes: the run was killed before W&B wrote anything", path)
    if size < _FILE_HEADER.size:
        raise ReadError(f"only {size} bytes: the file header (7 bytes) was cut, no record was written", path)
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0)
    if ident != HEADER_IDENT or magic != FILE_MAGIC:
        raise ReadError("not a W&B run file (bad file header at byte 0)", path)
    if version != FILE_VERSION:
        raise ReadError(f"W&B run file version {version}: dpodoctor reads version 0 (wandb up to 0.31)", path)
    return scan_chunks(data, FrameScan(version=version, size=size), _FILE_HEADER.size)


def _text(raw: int | bytes) -> str:
    if not isinstance(raw, bytes):
        raise WireError("string field with a non-length wire type")
    return raw.decode("utf-8", errors="replace")


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _json(text: str) -> Any:
    """A ``value_json`` (W&B writes NaN and Infinity as JSON extensions, which json.loads accepts)."""
    if len(text) > _MAX_JSON:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"):
        return float(value.replace("Infinity", "inf"))
    return None


def _item(buf: bytes) -> tuple[str, Any]:
    """One HistoryItem / ConfigItem / SummaryItem: (key, value). The key is ``nested_key`` joined by ``/`` when
    the item has one (a nested dict logged as such), else ``key``."""
    key = ""
    nested: list[str] = []
    value: Any = None
    typed: Any = None
    for number, wire, raw in iter_fields(buf):
        if number == 1 and wire == LEN:
            key = _text(raw)
        elif number == 2 and wire == LEN:
            nested.append(_text(raw))
        elif number == 16 and wire == LEN:
            value = _json(_text(raw))
        elif number == 6 and wire == FIXED64:
            typed = _DOUBLE.unpack(cast(bytes, raw))[0]
        elif number == 5 and wire == VARINT:
            zigzag = cast(int, raw)
            typed = (zigzag >> 1) ^ -(zigzag & 1)
        elif number == 4 and wire == VARINT:
            typed = bool(raw)
        elif number == 7 and wire == LEN:
            typed = _text(raw)
    return ("/".join(nested) if nested else key), (value if value is not None else typed)


class WandbRecords:
    """What the records of one ``.wandb`` file say: history rows, config, summary, run identity and exit."""

    def __init__(self) -> None:
        self.rows: list[tuple[int | None, dict[str, Any]]] = []  # (HistoryStep.num, items)
        self.config: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.exit_code: int | None = None
        self.display_name: str = ""
        self.undecodable = 0


def decode_records(records: list[bytes]) -> WandbRecords:
    """Decode the records dpodoctor uses; a record that is not well-formed protobuf is counted and skipped."""
    out = WandbRecords()
    for buf in records:
        try:
            _decode_one(buf, out)
        except WireError:
            out.undecodable += 1
    return out


def _decode_one(buf: bytes, out: WandbRecords) -> None:
    for number, wire, raw in iter_fields(buf):
        if wire != LEN:
            continue
        body = cast(bytes, raw)
        if number == REC_HISTORY:
            items: dict[str, Any] = {}
            step: int | None = None
            for inner, inner_wire, value in iter_fields(body):
                if inner == 1 and inner_wire == LEN:
                    key, item = _item(cast(bytes, value))
                    items[key] = item
                elif inner == 2 and inner_wire == LEN:
                    step = 0  # HistoryStep with num absent is step 0 (proto3 default)
                    for n, w, v in iter_fields(cast(bytes, value)):
                        if n == 1 and w == VARINT:
                            step = _signed(cast(int, v))
            out.rows.append((step, items))
        elif number in (REC_CONFIG, REC_SUMMARY):
            target = out.config if number == REC_CONFIG else out.summary
            for inner, inner_wire, value in iter_fields(body):
                if inner == 1 and inner_wire == LEN:
                    key, item = _item(cast(bytes, value))
                    target[key] = item
                elif inner == 2 and inner_wire == LEN:  # remove
                    key, _ = _item(cast(bytes, value))
                    target.pop(key, None)
        elif number == REC_RUN:
            for inner, inner_wire, value in iter_fields(body):
                if inner == 8 and inner_wire == LEN:
                    out.display_name = _text(value)
        elif number == REC_EXIT:
            code = 0  # proto3: exit code 0 is absent on the wire
            for inner, inner_wire, value in iter_fields(body):
                if inner == 1 and inner_wire == VARINT:
                    code = _signed(cast(int, value))
            out.exit_code = code


def _unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """W&B stores each config entry as ``{"desc": ..., "value": ...}`` in config.yaml (and, in some releases, in
    the config record too); the plain value is what the rules read. ``_wandb`` is W&B's own bookkeeping."""
    plain: dict[str, Any] = {}
    for key, entry in config.items():
        if key == "_wandb":
            continue
        if isinstance(entry, dict) and "value" in entry and set(entry) <= {"desc", "value"}:
            entry = entry["value"]
        plain[key] = entry
    return plain


def _run_dir(path: Path) -> Path | None:
    """The ``run-*``/``offline-run-*`` folder a file belongs to (the record file sits in it, the rest one level
    down in ``files/`` or ``logs/``), or None."""
    for folder in (path.parent, path.parent.parent):
        if _RUN_DIR_RE.fullmatch(folder.name):
            return folder
        if folder.name == "latest-run" and folder.is_symlink():  # wandb/latest-run -> the newest run folder
            try:
                link = Path(os.readlink(folder))
            except OSError:
                return None
            # Spelled like the path given (relative stays relative), so it groups with the run's other files.
            target = Path(os.path.normpath(folder.parent / link))
            if _RUN_DIR_RE.fullmatch(target.name) and target.is_dir():
                return target
    return None


def _count_run_dirs(wandb_dir: Path) -> int:
    try:
        return sum(1 for p in wandb_dir.iterdir() if _RUN_DIR_RE.fullmatch(p.name) and not p.is_symlink())
    except OSError:
        return 0


def _root_of_run_dir(run_dir: Path) -> Path:
    """A run folder inside W&B's default ``wandb/`` folder that holds only this run stands for the folder around
    ``wandb/``: that is where the trainer's TensorBoard events and the user's train.log are, so they are one run
    (read from the richest source). With several runs in ``wandb/``, each run folder is its own run."""
    wandb_dir = run_dir.parent
    if wandb_dir.name == "wandb" and _count_run_dirs(wandb_dir) == 1:
        return wandb_dir.parent
    return run_dir


def console_root(path: Path) -> Path | None:
    """For ``<run dir>/files/output.log`` (W&B's capture of the console): the root of its run, so the stdout
    reader files it under the same run as the record file. None for any other path."""
    if path.name != "output.log" or path.parent.name != "files":
        return None
    run_dir = _run_dir(path)
    return None if run_dir is None else _root_of_run_dir(run_dir)


def is_wandb_internal_log(path: Path) -> bool:
    """W&B's own text files: ``debug*.log`` in ``wandb/`` and in each run's ``logs/``, and everything in a run's
    ``files/`` but the console capture (``requirements.txt``, ...). Never read as a training log."""
    if path.name.startswith("debug") and path.suffix == ".log" and path.parent.name == "wandb":
        return True
    if path.parent.name not in ("logs", "files") or _run_dir(path) is None:
        return False
    return not (path.parent.name == "files" and path.name == "output.log")


def _read_side(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_SIDE_FILE:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


@register
class WandbReader:
    """Reads a W&B run folder: the ``.wandb`` record file, else its ``files/`` (summary, config, console)."""

    name: ClassVar[str] = "wandb"
    # Below TensorBoard (100): in a TRL output folder both hold the same scalars and the event files stay the
    # reference. Above SwanLab (50) and the text formats: the record file keeps doubles, the exit code, the config.
    priority: ClassVar[int] = 60
    multi_file: ClassVar[bool] = True

    def sniff(self, path: Path) -> bool:
        """A ``*.wandb`` file with W&B's header (or a 0-byte ``run-<id>.wandb``: killed before its first write),
        or the ``files/wandb-summary.json`` of a run folder (a run whose record file is missing)."""
        name = path.name
        if name.endswith(RECORD_SUFFIX):
            if not path.is_file():
                return False
            try:
                with path.open("rb") as handle:
                    head = handle.read(6)
            except OSError:
                return False
            return has_wandb_header(head) or (not head and _RECORD_NAME_RE.fullmatch(name) is not None)
        return name == "wandb-summary.json" and path.parent.name == "files" and _run_dir(path) is not None

    def run_root(self, path: Path) -> Path:
        run_dir = _run_dir(path)
        return path.parent if run_dir is None else _root_of_run_dir(run_dir)

    def read(self, paths: list[Path]) -> ReadResult:
        if not paths:
            raise ReadError("no W&B files given")
        records = sorted((p for p in paths if p.name.endswith(RECORD_SUFFIX)), key=lambda p: p.name)
        run_dir = _run_dir(paths[0]) or paths[0].parent
        notes: list[str] = []
        failure: ReadError | None = None
        for path in records:
            try:
                return self._read_record_file(path, run_dir, notes)
            except ReadError as exc:
                failure = failure or exc
                notes.append(f"{path.name}: {exc.reason}")
        return self._read_files(run_dir, notes, failure)

    # ------------------------------------------------------------------ the record file

    def _read_record_file(self, path: Path, run_dir: Path, notes: list[str]) -> ReadResult:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
        scan = scan_wandb(data, path)
        decoded = decode_records(scan.records)
        label = path.name
        if decoded.undecodable:
            notes.append(f"{label}: skipped {decoded.undecodable} record(s) that could not be decoded")
        if scan.dropped:
            notes.append(f"{label}: skipped {scan.dropped} record(s) whose chunks were out of order")
        for offset, skipped, why in scan.skipped[:5]:
            notes.append(
                f"{label}: corrupt data at byte {offset} ({why}): skipped {skipped} bytes to the next 32 KiB block"
            )
        builder = FrameBuilder()
        for step, items in decoded.rows:
            _add_row(builder, step, items)
        if len(builder) == 0:
            raise NoMetricsError(
                f"no history rows with metrics in {len(scan.records)} records"
                + (f" (the file stops at byte {scan.stop_at}: {scan.stop_reason})" if scan.stop_at is not None else ""),
                path,
            )
        if scan.stop_at is not None:
            notes.append(
                f"{label}: torn tail (truncated) at byte {scan.stop_at} of {scan.size}: {scan.stop_reason}; "
                f"read the {len(scan.records)} complete records before it"
            )
        config = _unwrap(decoded.config)
        if not config:
            config = _config_yaml(run_dir, notes)
        summary = _numeric_summary(decoded.summary) or builder.summary
        summary = {**builder.summary, **summary}
        if decoded.exit_code is None:
            ended = Ended.TRUNCATED
            notes.append(f"{label}: no exit record: the process was killed (or died) mid-run, or is still running")
        elif decoded.exit_code == 0:
            ended = Ended.FINISHED
        else:
            ended = Ended.CRASHED
            notes.append(f"{label}: the run exited with code {decoded.exit_code}")
        beta = beta_in(config)
        return ReadResult(
            frame=builder.build(),
            beta=beta,
            beta_source=f"{label}: config record" if beta is not None and decoded.config else _yaml_source(beta),
            ended=ended,
            summary=summary,
            config=config,
            notes=notes,
        )

    # ------------------------------------------------------------------ files/ only

    def _read_files(self, run_dir: Path, notes: list[str], failure: ReadError | None) -> ReadResult:
        """No usable record file: the summary, config and captured console of ``files/``."""
        files = run_dir / "files"
        config = _config_yaml(run_dir, notes)
        summary_text = _read_side(files / "wandb-summary.json")
        summary = _numeric_summary(_json(summary_text) or {}) if summary_text else {}
        console = files / "output.log"
        if not console.is_file():
            if failure is not None:
                raise failure
            raise NoMetricsError(
                "no history: the run folder has no readable .wandb record file and no files/output.log", run_dir
            )
        # The registry's stdout reader, not an import of it: the stdout reader asks this module which files are W&B's
        # own, so importing it here would make the two modules import each other.
        result = get_reader("stdout").read([console])
        result.notes = [
            *notes,
            f"history read from {run_dir.name}/files/output.log (the captured console)",
            *result.notes,
        ]
        result.config = {**config, **result.config}
        result.summary = {**result.summary, **summary}  # W&B keeps the full-precision totals
        if result.beta is None and (beta := beta_in(config)) is not None:
            result.beta, result.beta_source = beta, "files/config.yaml"
        return result


def _add_row(builder: FrameBuilder, step: int | None, items: dict[str, Any]) -> None:
    trainer_step = _number(items.get(STEP_KEY))
    if trainer_step is not None and math.isfinite(trainer_step):
        at = int(trainer_step)
    elif step is not None:
        at = step
    else:
        at_value = _number(items.get("_step"))
        if at_value is None or not math.isfinite(at_value):
            return
        at = int(at_value)
    wall = _number(items.get("_timestamp"))
    for key, raw in items.items():
        if key in _SKIP_KEYS or key.startswith("_"):
            continue
        value = _number(raw)
        if value is None:
            continue
        builder.add(key, at, value, wall)


def _numeric_summary(summary: Any) -> dict[str, float]:
    """The end-of-training totals of a W&B summary (its other keys only repeat the last value of each metric)."""
    if not isinstance(summary, dict):
        return {}
    out: dict[str, float] = {}
    for key, raw in summary.items():
        if not isinstance(key, str) or not is_summary_key(key):
            continue
        value = _number(raw)
        if value is not None:
            out[key.split("/", 1)[1] if key.startswith("train/") else key] = value
    return out


def _config_yaml(run_dir: Path, notes: list[str]) -> dict[str, Any]:
    text = _read_side(run_dir / "files" / "config.yaml")
    if text is None:
        return {}
    entries, failed = parse_config_yaml(text)
    if failed:
        notes.append(f"files/config.yaml: {len(failed)} key(s) not read ({', '.join(failed[:3])})")
    return _unwrap(entries)


def _yaml_source(beta: float | None) -> str | None:
    return None if beta is None else "files/config.yaml"
