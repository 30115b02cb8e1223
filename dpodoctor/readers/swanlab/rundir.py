"""Reader for the run folders SwanLab writes on disk (``<logdir>/run-<YYYYMMDD_HHMMSS>-<id>/``), every version.

The layouts (see ``tests/fixtures/swanlab/README.md`` for the full description):

* **A**, swanlab 0.8–0.10: ``run-<id>.swanlab``, LevelDB-log framing around protobuf ``Record`` messages
  (:mod:`.framing`, :mod:`.wire`).
* **B**, swanlab 0.6–0.7: ``backup.swanlab``, the same framing around JSON objects ``{"model_type", "data"}``.
* **C**, swanlab 0.4–0.5 (local mode only): no record file; ``logs/<kid>/<n>.log`` JSON lines, whose folder numbers
  map to keys only through the ``runs.swanlab`` SQLite index in the log folder.
* Local mode of every version writes ``logs/`` and ``runs.swanlab`` next to the record file.

Why the record file is read first and ``logs/`` only after a crash: the record file holds every point, the finish
state and the column classes, while ``logs/`` holds bare numbered folders. But both are flushed at different times,
so after a kill either can be ahead; then the points only ``logs/`` has are added (the record file wins where both
have a point, so nothing it says is overwritten).

Why the SQLite index is copied before it is opened: SQLite creates or rewrites ``-wal``/``-shm`` files next to a
database even when it only reads it, and dpodoctor must never write into the user's folder. After a kill the
experiment and tag rows exist only in ``runs.swanlab-wal``, so the WAL is copied along with the database.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple

import numpy as np

from dpodoctor.errors import ReadError
from dpodoctor.metrics import canonical, is_summary_key
from dpodoctor.model import Ended, empty_frame, frame_from_codes
from dpodoctor.readers import ReadResult, register
from dpodoctor.readers.overlap import repeated_steps_notes
from dpodoctor.readers.swanlab import wire
from dpodoctor.readers.swanlab.config import parse_config_yaml, unwrap_config
from dpodoctor.readers.swanlab.framing import (
    OS_EXIT_HINT,
    VERSION_PROTOBUF,
    has_swanlab_header,
    scan_frames,
)

if TYPE_CHECKING:  # pandas is imported when a frame is built, not when this module is (sniffing a file)
    import pandas as pd

__all__ = ["SwanLabReader", "is_metric_slice", "json_number", "parse_time"]

RECORD_SUFFIX: Final = ".swanlab"
BACKUP_NAME: Final = "backup.swanlab"  # layout B
INDEX_NAME: Final = "runs.swanlab"  # the local-mode SQLite index, one per log folder (never a run's record file)
DEFAULT_LOGDIR: Final = "swanlog"
# Bounded (file names are short): an unbounded run would make a search over hostile text quadratic.
_RECORD_NAME_RE: Final = re.compile(r"run-[A-Za-z0-9_-]{1,200}\.swanlab")  # layout A
_SLICE_NAME_RE: Final = re.compile(r"[0-9]{1,12}\.log")  # logs/<kid>/<ceil(n/1000)*1000>.log
SYSTEM_PREFIX: Final = "__swanlab__"  # system metrics (CPU, memory, disk, network)
SUMMARY_PREFIX: Final = "single_value/"  # swanlab's transformers callback logs the end-of-run summary so
# Keys that only repeat the step axis: SwanLab's transformers callback logs the step as a metric too.
STEP_KEYS: Final = frozenset({"train/global_step", "global_step", "eval/global_step"})
_MAX_CONFIG_BYTES: Final = 16 * 1024 * 1024
_INT64_MAX: Final = 2**63 - 1

# runs.swanlab experiment.status (swanboard): 1 finished, 0 still running or killed, -1 finished with an error.
_STATUS_FINISHED: Final = 1
_STATUS_RUNNING: Final = 0
_STATUS_ERROR: Final = -1


def parse_time(text: Any) -> float | None:
    """An ISO-8601 timestamp (``2026-11-24T03:15:28.516418+00:00``) as unix seconds; None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def json_number(raw: Any) -> float | None:
    """A metric value as SwanLab versions spell it: a number, a bare ``NaN``/``Infinity`` token (already a float
    after ``json.loads``), the strings ``"NaN"``/``"INF"``/``"-INF"`` (0.4–0.7), or null, which means NaN in a value
    position. None for anything that is not a scalar (a media item, a bool)."""
    if raw is None:
        return math.nan
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            return float(raw)
        except OverflowError:  # a JSON integer beyond float range (1e309 written out) is no metric value
            return None
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            return None
    return None


def _as_step(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if -_INT64_MAX <= raw <= _INT64_MAX else None
    if isinstance(raw, float) and raw.is_integer() and abs(raw) <= _INT64_MAX:
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,18}", raw.strip()):
        return int(raw)
    return None


def _is_number(name: str) -> bool:
    """An ASCII number: SwanLab names its logs/ folders 0, 1, 2...; str.isdigit() also accepts "²", which int()
    refuses, so a stray folder of that name crashed the read."""
    return name.isascii() and name.isdigit()


def is_metric_slice(path: Path) -> bool:
    """``<run dir>/logs/<kid>/<n>.log``: a local-mode metric file (by name only)."""
    parents = path.parents
    return (
        len(parents) >= 3
        and _SLICE_NAME_RE.fullmatch(path.name) is not None
        and _is_number(parents[0].name)
        and parents[1].name == "logs"
        and parents[2].name.startswith("run-")
    )


def _is_run_dir(folder: Path) -> bool:
    return folder.name.startswith("run-")


def _unit_of(path: Path) -> Path:
    """The run folder a file belongs to; a record file outside any ``run-*`` folder is its own unit."""
    if is_metric_slice(path):
        return path.parents[2]
    return path.parent if _is_run_dir(path.parent) else path


def _count_run_dirs(logdir: Path) -> int:
    try:
        with os.scandir(logdir) as entries:
            return sum(1 for e in entries if e.name.startswith("run-") and e.is_dir())
    except OSError:
        return 0


def _first_last_lines(text: str) -> str:
    """The first line of an error text, and its last line when that differs (the traceback's exception line)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "(no error text)"
    return lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"


class _Point(NamedTuple):
    key: str
    step: int
    value: float
    wall: float | None


class _Columns:
    """The frame's columns and the summary, built from the points of a run, with each raw key mapped once.

    Why not :class:`FrameBuilder`: it maps the key of every point, and a SwanLab run is a few dozen keys repeated
    over millions of records. Here each distinct key is resolved once, the points become columns in one transpose,
    and the rows are placed by integer codes, never a Python call per point. The mapping rules are the same:
    summary keys go to ``summary`` (each name keeps the value of its last point), the rest through ``canonical``.
    """

    def __init__(self, system_keys: set[str]) -> None:
        self.summary: dict[str, float] = {}
        self._system = system_keys
        # raw key -> (split, metric) for a frame row, a summary name, or None to drop it
        self._map: dict[str, tuple[str, str] | str | None] = {}
        self._frame: pd.DataFrame | None = None
        self._rows = 0

    def _resolve(self, key: str) -> tuple[str, str] | str | None:
        """System metrics (``__swanlab__.*``, or a SYSTEM column) describe the machine; ``train/global_step`` only
        repeats the step; ``single_value/<k>`` is the end-of-run summary SwanLab's transformers callback logs, which
        goes to the summary like TensorBoard's ``train/train_runtime``."""
        if key.startswith(SYSTEM_PREFIX) or key in self._system or key in STEP_KEYS:
            return None
        if key.startswith(SUMMARY_PREFIX):
            return key[len(SUMMARY_PREFIX) :] or None
        if is_summary_key(key):
            return key.split("/", 1)[1] if key.startswith("train/") else key
        return canonical(key)

    def __len__(self) -> int:
        return self._rows

    def add_all(self, points: list[_Point]) -> None:
        """Map every point (in order; called once per run)."""
        if not points:
            return
        keys, steps, values, walls = zip(*points, strict=True)
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64, count=len(keys))
        targets = [self._map[k] if k in self._map else self._map.setdefault(k, self._resolve(k)) for k in index]
        value_col = np.array(values, dtype=np.float64)
        last_at: dict[str, int] = {}  # summary name -> position of its last point
        for code, target in enumerate(targets):
            if isinstance(target, str):
                last_at[target] = max(int(np.flatnonzero(codes == code)[-1]), last_at.get(target, -1))
        for name, at in sorted(last_at.items(), key=lambda item: item[1]):
            self.summary[name] = float(value_col[at])
        rows = [t for t in targets if isinstance(t, tuple)]
        keep = np.array([isinstance(t, tuple) for t in targets], dtype=bool)[codes]
        self._rows = int(keep.sum())
        if not self._rows:
            return
        split_labels = sorted({split for split, _ in rows})
        metric_labels = sorted({metric for _, metric in rows})
        split_of = np.array([split_labels.index(t[0]) if isinstance(t, tuple) else 0 for t in targets], np.int64)
        metric_of = np.array([metric_labels.index(t[1]) if isinstance(t, tuple) else 0 for t in targets], np.int64)
        kept = codes[keep]
        self._frame = frame_from_codes(
            split_of[kept],
            split_labels,
            metric_of[kept],
            metric_labels,
            np.array(steps, dtype=np.int64)[keep],
            value_col[keep],
            np.array(walls, dtype=np.float64)[keep],  # None (no time) becomes NaN
        )

    def build(self) -> pd.DataFrame:
        return self._frame if self._frame is not None else empty_frame()


@dataclass
class _RecordRead:
    """What one record file (layout A or B) said."""

    version: int
    points: list[_Point] = field(default_factory=list)
    # User keys in order of first appearance (0.9/0.10 number logs/ folders in this order, 1-based).
    key_order: list[str] = field(default_factory=list)
    system_keys: set[str] = field(default_factory=set)
    kid_map: dict[str, str] = field(default_factory=dict)  # layout B Column kid -> key
    finished: bool = False
    ended: Ended = Ended.TRUNCATED
    notes: list[str] = field(default_factory=list)


@dataclass
class _Index:
    """The rows of ``runs.swanlab`` for one run folder."""

    folders: dict[str, str]
    status: int | None


@register
class SwanLabReader:
    """Reads one SwanLab run folder (record file, local-mode ``logs/``, ``files/config.yaml``) into one run."""

    name: ClassVar[str] = "swanlab"
    # Below TensorBoard (100), above stdout (10): in a TRL output folder the event files carry the same scalars at
    # float32, SwanLab's at double precision but with more moving parts; the console capture has the least.
    priority: ClassVar[int] = 50
    # A run is its record file plus its logs/ slices; read() sorts out which of them to use.
    multi_file: ClassVar[bool] = True
    # SwanLab's log folder holds its copy of the console log: a train.log beside it is the primary one.
    tool_folders: ClassVar[tuple[str, ...]] = (DEFAULT_LOGDIR,)

    def sniff(self, path: Path) -> bool:
        """A ``*.swanlab`` file with SwanLab's header (or a 0-byte ``run-<id>.swanlab``/``backup.swanlab``: a
        run killed before its first flush), or a local-mode metric slice ``run-*/logs/<kid>/<n>.log``.

        ``runs.swanlab`` is the SQLite index of a log folder, not a run, and is never claimed.
        """
        name = path.name
        if name.endswith(RECORD_SUFFIX):
            if name == INDEX_NAME or not path.is_file():  # a FIFO or device would block the read below
                return False
            try:
                with path.open("rb") as fh:
                    head = fh.read(6)
            except OSError:
                return False
            if has_swanlab_header(head):
                return True
            return not head and (name == BACKUP_NAME or _RECORD_NAME_RE.fullmatch(name) is not None)
        return is_metric_slice(path) and path.is_file()

    def run_root(self, path: Path) -> Path:
        """The folder that stands for the run.

        A run folder is ``<logdir>/run-<id>/``. When the log folder is SwanLab's default ``swanlog/`` and holds
        exactly one run, the run is the folder around ``swanlog/``: that is where transformers writes the
        TensorBoard events and the user keeps train.log, so all of them are one run. With several runs in
        ``swanlog/`` each run folder is its own run. A record file outside any run folder stands for itself.
        """
        unit = _unit_of(path)
        if unit.is_file() or not _is_run_dir(unit):
            return path.parent
        logdir = unit.parent
        if logdir.name == DEFAULT_LOGDIR and _count_run_dirs(logdir) == 1:
            return logdir.parent
        return unit

    # ------------------------------------------------------------------ reading

    def read(self, paths: list[Path]) -> ReadResult:
        """Read the run the files belong to (the first one, if they belong to several: see :meth:`read_runs`)."""
        units = self._units(paths)
        result = self._read_unit(*units[0])
        if len(units) > 1:
            result.notes.append(f"{len(units) - 1} more SwanLab run(s) in these files were not read")
        return result

    def read_runs(self, paths: list[Path]) -> list[ReadResult]:
        """One result per run folder among the files, labelled with the folder's name when there are several."""
        units = self._units(paths)
        if len(units) == 1:
            return [self._read_unit(*units[0])]
        results: list[ReadResult] = []
        failed: list[ReadError] = []
        for unit, records in units:
            try:
                result = self._read_unit(unit, records)
            except ReadError as exc:
                failed.append(exc)
                continue
            result.label = unit.name
            results.append(result)
        if not results:
            raise failed[0]
        for error in failed:
            results[0].notes.append(f"another SwanLab run here could not be read: {error}")
        return results

    @staticmethod
    def _units(paths: Iterable[Path]) -> list[tuple[Path, list[Path]]]:
        units: dict[Path, list[Path]] = {}
        for path in map(Path, paths):
            records = units.setdefault(_unit_of(path), [])
            if path.name.endswith(RECORD_SUFFIX):
                records.append(path)
        if not units:
            raise ReadError("no SwanLab files given")
        return sorted(units.items(), key=lambda item: str(item[0]))

    def _read_unit(self, unit: Path, given: list[Path]) -> ReadResult:
        """Read one run folder (or one loose record file).

        The given record files are used, plus any other in the run folder (so naming one metric slice, or the
        record file alone, reads the whole run), and ``logs/`` is consulted when the record file did not finish.
        """
        run_dir = unit if unit.is_dir() else unit.parent
        in_run_dir = unit.is_dir() and _is_run_dir(unit)
        prefix = f"{run_dir.parent.name}/{run_dir.name}/" if in_run_dir else ""
        record_files = set(given)
        if in_run_dir:
            record_files.update(
                p
                for p in self._list(run_dir)
                if p.is_file() and (p.name == BACKUP_NAME or _RECORD_NAME_RE.fullmatch(p.name))
            )
        notes: list[str] = []
        reads: list[_RecordRead] = []
        read_paths: set[Path] = set()
        record_error: ReadError | None = None
        empty_record: Path | None = None
        for path in sorted(record_files, key=lambda p: p.name):
            try:
                reads.append(self._read_record_file(path, prefix + path.name))
                read_paths.add(path)
            except ReadError as exc:
                if exc.reason == OS_EXIT_HINT:
                    empty_record = path
                record_error = record_error or exc
                notes.append(f"{prefix}{path.name}: {exc.reason}")

        points: list[_Point] = [p for r in reads for p in r.points]
        if len(reads) > 1:  # two record files of one run (a resumed run): say which steps both logged
            labels = [prefix + path.name for path in sorted(record_files, key=lambda p: p.name) if path in read_paths]
            notes.extend(
                repeated_steps_notes(
                    [
                        (label, [p.key for p in r.points], [p.step for p in r.points])
                        for label, r in zip(labels, reads, strict=True)
                    ]
                )
            )
        system_keys: set[str] = set().union(*(r.system_keys for r in reads)) if reads else set()
        for r in reads:
            notes.extend(r.notes)
        finished = any(r.finished for r in reads)

        logs_dir = run_dir / "logs"
        index: _Index | None = None
        if in_run_dir and not finished and logs_dir.is_dir():
            index = self._read_index(run_dir, notes)
            self._merge_logs(logs_dir, reads, index, points, prefix, notes)

        if reads:
            ended = reads[-1].ended
        elif index is not None and index.status is not None:
            ended = self._ended_from_index(index.status, run_dir, prefix, notes)
        elif empty_record is not None:
            ended = Ended.TRUNCATED
        else:
            ended = Ended.UNKNOWN
            if in_run_dir and logs_dir.is_dir():
                notes.append(f"{prefix}: no record file and no runs.swanlab status: how the run ended is unknown")

        builder = _Columns(system_keys)
        builder.add_all(points)
        if len(builder) == 0:
            if record_error is not None and not reads:
                raise record_error
            where = "; ".join(notes) or "nothing was logged"
            raise ReadError(f"no scalar metrics in this SwanLab run ({where})", unit)

        config, beta, beta_source = self._read_config(run_dir, prefix, notes)
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

    @staticmethod
    def _list(folder: Path) -> list[Path]:
        try:
            return sorted(folder.iterdir())
        except OSError:
            return []

    # ------------------------------------------------------------------ record files (layouts A and B)

    def _read_record_file(self, path: Path, label: str) -> _RecordRead:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
        scan = scan_frames(data, path)
        read = _RecordRead(version=scan.version)
        if scan.version == VERSION_PROTOBUF:
            bad = self._decode_protobuf(scan.records, read, label)
        else:
            bad = self._decode_json(scan.records, read, label)
        if bad:
            read.notes.append(f"{label}: skipped {bad} record(s) that could not be decoded")
        if scan.dropped:
            read.notes.append(f"{label}: skipped {scan.dropped} record(s) whose chunks were out of order")
        for offset, skipped, why in scan.skipped[:5]:
            read.notes.append(
                f"{label}: corrupt data at byte {offset} ({why}): skipped {skipped} bytes to the next 32 KiB block "
                f"at byte {offset + skipped}; the records after it were read"
            )
        if len(scan.skipped) > 5:
            read.notes.append(f"{label}: {len(scan.skipped) - 5} more corrupt stretch(es) skipped the same way")
        if scan.stop_at is not None:
            read.notes.append(
                f"{label}: torn tail (truncated) at byte {scan.stop_at} of {scan.size}: {scan.stop_reason}; "
                f"read the {len(scan.records)} complete records before it"
            )
        if not read.finished and read.ended == Ended.TRUNCATED:
            what = "finish record" if scan.version == VERSION_PROTOBUF else "Footer record"
            read.notes.append(
                f"{label}: no {what}: the process died (killed, os._exit, node failure) or is still running"
            )
        return read

    @staticmethod
    def _decode_protobuf(records: list[bytes], read: _RecordRead, label: str) -> int:
        """Layout A: protobuf ``Record`` payloads (field numbers in :mod:`.wire`)."""
        bad = 0
        seen: set[str] = set()
        names: dict[bytes, str] = {}  # raw key -> str: a run has a few dozen keys and millions of records
        points = read.points
        fast_scalar = wire.fast_scalar
        for payload in records:
            fast = fast_scalar(payload)
            if fast is not None:  # the usual scalar record (see wire.fast_scalar); anything else is decoded below
                raw_key, step, value, wall = fast
                key = names.get(raw_key)
                if key is None:
                    key = names[raw_key] = raw_key.decode("utf-8", errors="replace")
                points.append(_Point(key, step, value, wall))
                if key not in seen:
                    seen.add(key)
                    if not key.startswith(SYSTEM_PREFIX) and key not in read.system_keys:
                        read.key_order.append(key)
                continue
            try:
                item = wire.decode_record(payload)
            except wire.WireError:
                bad += 1
                continue
            if isinstance(item, wire.ScalarPoint):
                read.points.append(_Point(item.key, item.step, item.value, item.wall_time))
                key = item.key
                if key not in seen:
                    seen.add(key)
                    if not key.startswith(SYSTEM_PREFIX) and key not in read.system_keys:
                        read.key_order.append(key)
            elif isinstance(item, wire.ColumnInfo):
                if item.column_class == wire.COLUMN_CLASS_SYSTEM:
                    read.system_keys.add(item.key)
            elif isinstance(item, wire.FinishInfo):
                read.finished = True
                if item.state == wire.RUN_STATE_FINISHED:
                    read.ended = Ended.FINISHED
                elif item.state == wire.RUN_STATE_CRASHED:
                    read.ended = Ended.CRASHED
                    read.notes.append(f"{label}: SwanLab finish record says CRASHED: {_first_last_lines(item.error)}")
                elif item.state == wire.RUN_STATE_ABORTED:
                    read.ended = Ended.CRASHED
                    read.notes.append(
                        f"{label}: SwanLab finish record says ABORTED (stopped before the end)"
                        + (f": {_first_last_lines(item.error)}" if item.error.strip() else "")
                    )
                else:
                    read.ended = Ended.UNKNOWN
                    read.notes.append(f"{label}: SwanLab finish record with state {item.state} (still RUNNING?)")
        return bad

    @staticmethod
    def _decode_json(records: list[bytes], read: _RecordRead, label: str) -> int:
        """Layout B: ``{"model_type": T, "data": {...}}`` JSON payloads, one per record."""
        bad = 0
        seen: set[str] = set()
        for payload in records:
            try:
                obj = json.loads(payload)
            except (ValueError, RecursionError):
                bad += 1
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict):
                bad += 1
                continue
            kind, data = obj.get("model_type"), obj["data"]
            if kind == "Scalar":
                metric = data.get("metric")
                key = data.get("key")
                if not isinstance(metric, dict) or not isinstance(key, str) or not key:
                    bad += 1
                    continue
                value = json_number(metric.get("data"))
                step = _as_step(data.get("step", metric.get("index")))
                if value is None or step is None:
                    bad += 1
                    continue
                read.points.append(_Point(key, step, value, parse_time(metric.get("create_time"))))
                if key not in seen:
                    seen.add(key)
                    if not key.startswith(SYSTEM_PREFIX):
                        read.key_order.append(key)
            elif kind == "Column":
                key, kid = data.get("key"), data.get("kid")
                if isinstance(key, str):
                    if isinstance(kid, str | int) and not isinstance(kid, bool):
                        read.kid_map[str(kid)] = key
                    if data.get("cls") == "SYSTEM":
                        read.system_keys.add(key)
            elif kind == "Footer":
                read.finished = True
                if data.get("success") is True:
                    read.ended = Ended.FINISHED
                else:
                    read.ended = Ended.CRASHED
                    read.notes.append(f"{label}: SwanLab Footer record says success=false: the run crashed")
        return bad

    # ------------------------------------------------------------------ local mode: logs/ and runs.swanlab

    @staticmethod
    def _read_index(run_dir: Path, notes: list[str]) -> _Index | None:
        """The tag folders and status of this run in ``<logdir>/runs.swanlab``, read from a private copy."""
        db = run_dir.parent / INDEX_NAME
        if not db.is_file():
            return None
        try:
            with tempfile.TemporaryDirectory(prefix="dpodoctor-swanlab-") as tmp:
                copy = Path(tmp) / INDEX_NAME
                shutil.copyfile(db, copy)
                wal = db.with_name(INDEX_NAME + "-wal")
                if wal.is_file():
                    shutil.copyfile(wal, copy.with_name(INDEX_NAME + "-wal"))
                conn = sqlite3.connect(copy.as_uri() + "?mode=ro", uri=True)
                try:
                    rows = conn.execute(
                        "SELECT id, status FROM experiment WHERE run_id = ? ORDER BY id", (run_dir.name,)
                    ).fetchall()
                    if not rows:
                        notes.append(f"{db.parent.name}/{INDEX_NAME}: has no experiment row for {run_dir.name}")
                        return None
                    exp_id, status = rows[-1]
                    tags = conn.execute(
                        "SELECT folder, name FROM tag WHERE experiment_id = ? ORDER BY id", (exp_id,)
                    ).fetchall()
                finally:
                    conn.close()
        except (OSError, sqlite3.Error) as exc:
            notes.append(f"{db.parent.name}/{INDEX_NAME}: could not be read ({exc}); logs/ folders not named by it")
            return None
        folders = {str(folder): str(name) for folder, name in tags if folder is not None and name is not None}
        return _Index(folders, int(status) if isinstance(status, int) else None)

    @staticmethod
    def _ended_from_index(status: int, run_dir: Path, prefix: str, notes: list[str]) -> Ended:
        """How the run ended by ``runs.swanlab`` (layout C, or a record file too broken to say)."""
        if status == _STATUS_FINISHED:
            return Ended.FINISHED
        if status == _STATUS_ERROR:
            detail = ""
            try:
                error_log = run_dir / "console" / "error.log"
                if not error_log.is_file():  # absent, or a FIFO/device that would block the read
                    raise FileNotFoundError(error_log)
                text = error_log.read_text(encoding="utf-8", errors="replace")
                detail = ": " + _first_last_lines("\n".join(text.splitlines()[1:]) or text)
            except OSError:
                pass
            notes.append(f"{prefix}: runs.swanlab status -1: the run crashed{detail}")
            return Ended.CRASHED
        if status == _STATUS_RUNNING:
            notes.append(f"{prefix}: runs.swanlab status 0: no finish recorded: the process died or is still running")
            return Ended.TRUNCATED
        return Ended.UNKNOWN

    @staticmethod
    def _read_slices(logs_dir: Path) -> tuple[dict[str, list[_Point]], int]:
        """Every ``logs/<kid>/<n>.log`` line as points keyed by kid (the key name is filled in later)."""
        by_kid: dict[str, list[_Point]] = {}
        bad = 0
        for kid_dir in SwanLabReader._list(logs_dir):
            if not _is_number(kid_dir.name) or not kid_dir.is_dir():
                continue
            slices = [p for p in SwanLabReader._list(kid_dir) if _SLICE_NAME_RE.fullmatch(p.name) and p.is_file()]
            points: list[_Point] = []
            for path in sorted(slices, key=lambda p: int(p.stem)):
                try:
                    data = path.read_bytes()
                except OSError:
                    bad += 1
                    continue
                for line in data.splitlines():
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except (ValueError, RecursionError):
                        bad += 1  # typically the last line, cut by a kill
                        continue
                    if not isinstance(obj, dict):
                        bad += 1
                        continue
                    step = _as_step(obj.get("index"))
                    value = json_number(obj.get("data")) if "data" in obj else None
                    if step is None or value is None:
                        continue  # a media entry, or no value at all
                    points.append(_Point("", step, value, parse_time(obj.get("create_time"))))
            by_kid[kid_dir.name] = points
        return by_kid, bad

    def _merge_logs(
        self,
        logs_dir: Path,
        reads: list[_RecordRead],
        index: _Index | None,
        points: list[_Point],
        prefix: str,
        notes: list[str],
    ) -> int | None:
        """Add the ``logs/`` points the record file lacks. Returns how many, or None when logs/ could not be used.

        The folder numbers are named, in order of preference, by ``runs.swanlab``, by layout B's Column ``kid``,
        or by swanlab 0.9/0.10's rule that folder n is the n-th key first logged (1-based). That rule is checked:
        where logs/ and the record file both have a point, the values must agree, else logs/ is not used.
        """
        by_kid, bad = self._read_slices(logs_dir)
        if not by_kid:
            return None
        label = f"{prefix}logs/"
        if bad:
            notes.append(f"{label}: skipped {bad} line(s) that are not complete JSON (cut by the kill?)")
        known = {(p.key, p.step): p.value for p in points}
        candidates: list[tuple[str, dict[str, str]]] = []
        if index is not None and index.folders:
            candidates.append(("runs.swanlab", index.folders))
        kid_map = {k: v for r in reads for k, v in r.kid_map.items()}
        if kid_map:
            candidates.append(("the backup.swanlab Column kids", kid_map))
        order = [k for r in reads if r.version == VERSION_PROTOBUF for k in r.key_order]
        if order and not candidates:
            for base in (1, 0):  # 1-based in 0.9/0.10; 0-based as 0.4-0.7 did, in case 0.8 kept it
                candidates.append(
                    (
                        f"swanlab 0.10's rule (folder n = the n-th key first logged, {base}-based), "
                        f"as there is no runs.swanlab",
                        {str(i + base): key for i, key in enumerate(order)},
                    )
                )
        for source, mapping in candidates:
            extra: list[_Point] = []
            agree = disagree = 0
            for kid, kid_points in by_kid.items():
                key = mapping.get(kid)
                if key is None:
                    continue
                for p in kid_points:
                    seen = known.get((key, p.step))
                    if seen is None:
                        extra.append(_Point(key, p.step, p.value, p.wall))
                    elif seen == p.value or (math.isnan(seen) and math.isnan(p.value)):
                        agree += 1
                    else:
                        disagree += 1
            if source.startswith("swanlab 0.10") and (disagree or (known and not agree)):
                continue
            unnamed = sorted((k for k in by_kid if k not in mapping), key=int)
            if source.startswith("swanlab 0.10"):
                notes.append(f"{label}: folders named by {source}")
            if unnamed:
                notes.append(f"{label}: folder(s) {', '.join(unnamed)} have no key name in {source}; not read")
            if extra:
                points.extend(extra)
                last = max(p.step for p in extra)
                if reads:
                    told = f"added {len(extra)} point(s) the record file lacks (up to step {last})"
                else:
                    told = f"no usable record file (swanlab 0.4/0.5 has none): read {len(extra)} point(s)"
                notes.append(f"{label}: {told}, keys named by {source}")
            return len(extra)
        if not candidates:
            notes.append(
                f"{label}: folders are numbered, and nothing names them (no runs.swanlab, no readable record "
                f"file); not read"
            )
        else:
            notes.append(f"{label}: folder numbers do not match the record file's keys; logs/ not read")
        return None

    # ------------------------------------------------------------------ files/config.yaml

    @staticmethod
    def _read_config(run_dir: Path, prefix: str, notes: list[str]) -> tuple[dict[str, Any], float | None, str | None]:
        """The run config and β from ``files/config.yaml``; problems are notes, never errors."""
        path = run_dir / "files" / "config.yaml"
        label = f"{prefix}files/config.yaml"
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block (or never end) the read below
                notes.append(f"{label}: not a regular file; config not read")
                return {}, None, None
            if info.st_size > _MAX_CONFIG_BYTES:
                notes.append(f"{label}: larger than {_MAX_CONFIG_BYTES // 2**20} MB; config not read")
                return {}, None, None
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {}, None, None
        except OSError as exc:
            notes.append(f"{label}: cannot read ({exc.strerror or exc}); config not read")
            return {}, None, None
        entries, failed = parse_config_yaml(text)
        if failed:
            shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
            notes.append(f"{label}: could not parse {shown}")
        config = unwrap_config(entries)
        raw = config.get("beta")
        if raw is None:
            return config, None, None
        number = json_number(raw) if isinstance(raw, int | float) else None  # None beyond float range, or a bool
        if number is not None and math.isfinite(number):
            return config, number, label
        notes.append(f"{label}: beta is not a finite number ({raw!r:.80}); ignored")
        return config, None, None
